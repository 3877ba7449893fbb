//! The encoder on arbitrary small images: decode(encode(x)) == x with the golden files' small
//! PixelCNN (its own payload, and the stored fallback) and `stored`.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llif::{decode_image, encode_image, ChannelLayout, EncodeOptions, Image, Limits, Model, ModelSet};

fn tiny() -> &'static (Model, ModelSet) {
    static SET: OnceLock<(Model, ModelSet)> = OnceLock::new();
    SET.get_or_init(|| {
        let m = Model::from_bytes(include_bytes!("../../tests/golden/tiny-v1.llifm")).expect("model");
        let mut set = ModelSet::empty();
        set.add("tiny", m.clone());
        (m, set)
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let layout = [ChannelLayout::Gray, ChannelLayout::GrayAlpha, ChannelLayout::Rgb, ChannelLayout::Rgba]
        [(data[0] & 3) as usize];
    let w = 1 + (data[1] % 24) as u32;
    let samples = &data[3..];
    let per_row = w as usize * layout.channels();
    let h = (samples.len() / per_row).min(24) as u32;
    if h == 0 {
        return;
    }
    let img = Image::new(w, h, layout, samples[..h as usize * per_row].to_vec()).expect("sizes");
    let (model, set) = tiny();
    let forced = EncodeOptions::default().with_stored_fallback(data[2] & 1 == 0);
    let bytes = llif::encode_image_with(&img, model, &forced).expect("encode").bytes;
    assert_eq!(decode_image(&bytes, set, &Limits::default()).expect("decode"), img);
    let stored = encode_image(&img, &Model::stored()).expect("stored");
    assert_eq!(decode_image(&stored, set, &Limits::default()).expect("decode"), img);
});
