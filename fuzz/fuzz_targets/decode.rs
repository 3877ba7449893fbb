//! Full decoding of arbitrary bytes, image files and archives: a typed error or the images the
//! file describes, never a panic, an abort or a hang.
//!
//! Models: the small models of the golden files (`tiny-v1`, a PixelCNN on the 32-bit engine,
//! `tiny8a-v1` on the 8-bit engine with the adaptive stage, `tinyflow-v1` a flow,
//! `tinyjoint-v1` a joint flow), whose files decode through the same family code, engines,
//! coder and checks as the shipped models' but fast enough for millions of
//! inputs (a shipped model costs ~50x more per pixel). Limits: the defaults, with the pixel
//! budget lowered to 16x16, so that a 20-byte input cannot ask for minutes of decoding; the
//! code paths are the same at every size (the time bound of the default limits is stated in
//! the README).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llif::{decode_image, Limits, Model, ModelSet};

fn models() -> &'static ModelSet {
    static SET: OnceLock<ModelSet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut set = ModelSet::empty();
        let tiny = include_bytes!("../../tests/golden/tiny-v1.llifm");
        set.add("tiny-v1", Model::from_bytes(tiny).expect("golden model"));
        let tiny8a = include_bytes!("../../tests/golden/tiny8a-v1.llifm");
        set.add("tiny8a-v1", Model::from_bytes(tiny8a).expect("golden model"));
        let tinyflow = include_bytes!("../../tests/golden/tinyflow-v1.llifm");
        set.add("tinyflow-v1", Model::from_bytes(tinyflow).expect("golden model"));
        let tinyjoint = include_bytes!("../../tests/golden/tinyjoint-v1.llifm");
        set.add("tinyjoint-v1", Model::from_bytes(tinyjoint).expect("golden model"));
        set
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default()
        .with_max_pixels(16 * 16)
        .with_max_images(64)
        .with_max_archive_pixels(16 * 16 * 8);
    if llif::format::archive::is_archive(data) {
        // Archives: the same entries' decoding behind an index of their own.
        if let Ok(images) = llif::decode_archive(data, models(), &limits) {
            assert!(!images.is_empty() && images.len() <= 64);
        }
        return;
    }
    if let Ok(img) = decode_image(data, models(), &limits) {
        let h = llif::read_header(data, &limits).expect("a decoded file has a header");
        assert_eq!((img.width(), img.height(), img.layout()), (h.width, h.height, h.layout));
        assert_eq!(img.data().len() as u64, h.samples());
    }
});
