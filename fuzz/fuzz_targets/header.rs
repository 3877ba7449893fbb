//! Header parsing of arbitrary bytes under the default limits: a typed result, never a panic,
//! and a parsed header whose sample count fits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = llif::format::Header::parse(data, &llif::Limits::default()) {
        let h = file.header;
        assert!(h.width >= 1 && h.height >= 1);
        assert_eq!(h.samples(), h.width as u64 * h.height as u64 * h.layout.channels() as u64);
        assert!(file.payload.len() <= data.len());
    }
});
