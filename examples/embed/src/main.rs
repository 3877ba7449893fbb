//! Embedding llif without libtorch: encode an image with the default built-in model, decode it
//! back under the default limits, and check every sample. Exits non-zero on any mismatch.

use llif::{decode_image, encode_image_with_stats, ChannelLayout, Image, Limits, ModelSet};

fn main() -> Result<(), llif::Error> {
    // A 24x16 RGB gradient with a little texture.
    let (w, h) = (24u32, 16u32);
    let pixels: Vec<u8> = (0..w * h * 3)
        .map(|i| {
            let (px, c) = (i / 3, i % 3);
            let (x, y) = (px % w, px / w);
            ((x * 9 + y * 5 + c * 40 + (x * y) % 7) % 256) as u8
        })
        .collect();
    let image = Image::new(w, h, ChannelLayout::Rgb, pixels)?;

    let models = ModelSet::builtin();
    let model = models.default_model().expect("llif ships a default model");
    let encoded = encode_image_with_stats(&image, model)?;
    let decoded = decode_image(&encoded.bytes, &models, &Limits::default())?;
    assert_eq!(decoded, image, "round trip changed the image");
    println!(
        "embedded llif: {}x{} RGB, {} bytes ({:.3} bits/sub-pixel, {} family, model {}), decoded exactly",
        w,
        h,
        encoded.bytes.len(),
        8.0 * encoded.bytes.len() as f64 / image.samples() as f64,
        encoded.family,
        model.name()
    );
    Ok(())
}
