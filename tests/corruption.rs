//! Damaged files give typed errors: never a panic, never silently wrong pixels.
//! Every truncation of valid files, and thousands of seeded random byte flips.

use llif::testing::{encode_with_model, random_pixelcnn, synthetic_image, tiny_arch};
use llif::{decode_image, encode_image, ChannelLayout, Image, Limits, Model, ModelSet};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn setup() -> (Vec<(Image, Vec<u8>)>, ModelSet) {
    let model = Model::new(random_pixelcnn(tiny_arch(), 21));
    let mut models = ModelSet::empty();
    models.add("tiny", model.clone());
    let mut files = Vec::new();
    for (i, (layout, w, h)) in [
        (ChannelLayout::Rgb, 8, 6),
        (ChannelLayout::Gray, 5, 5),
        (ChannelLayout::Rgba, 3, 4),
        (ChannelLayout::GrayAlpha, 1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let img = synthetic_image(w, h, layout, 20, i as u64);
        files.push((img.clone(), encode_with_model(&img, &model).unwrap()));
        files.push((img.clone(), encode_image(&img, &Model::stored()).unwrap()));
    }
    (files, models)
}

/// Decoding must either fail with a typed error or return exactly the original image.
fn assert_never_wrong(bytes: &[u8], original: &Image, models: &ModelSet, what: &str) -> bool {
    let result = std::panic::catch_unwind(|| decode_image(bytes, models, &Limits::default()));
    match result {
        Err(_) => panic!("{what}: decoder panicked"),
        Ok(Ok(img)) => {
            assert_eq!(
                &img, original,
                "{what}: decoded to wrong pixels without an error"
            );
            false
        }
        Ok(Err(_)) => true,
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    let (files, models) = setup();
    for (img, bytes) in &files {
        for cut in 0..bytes.len() {
            let failed = assert_never_wrong(
                &bytes[..cut],
                img,
                &models,
                &format!("{img:?} cut at {cut}/{}", bytes.len()),
            );
            assert!(
                failed,
                "{img:?}: truncation to {cut} of {} bytes decoded without error",
                bytes.len()
            );
        }
    }
}

#[test]
fn random_byte_flips_are_typed_errors() {
    let (files, models) = setup();
    let mut rng = StdRng::seed_from_u64(2024);
    let mut errors = 0;
    let mut trials = 0;
    for (img, bytes) in &files {
        for _ in 0..500 {
            let mut b = bytes.clone();
            let flips = rng.gen_range(1..=3);
            for _ in 0..flips {
                let i = rng.gen_range(0..b.len());
                b[i] ^= rng.gen_range(1..=255u8);
            }
            trials += 1;
            if assert_never_wrong(&b, img, &models, "byte flip") {
                errors += 1;
            }
        }
    }
    // A flip may only go unnoticed if it leaves the decoded pixels and the check intact, which
    // the CRC over header, pixels and payload length makes (nearly) impossible.
    assert_eq!(
        errors,
        trials,
        "{} of {trials} damaged files decoded (to the right pixels)",
        trials - errors
    );
}

#[test]
fn appended_bytes_are_typed_errors() {
    let (files, models) = setup();
    for (img, bytes) in &files {
        for extra in [&[0u8][..], &[1], &[0, 0, 0, 0, 0], &[0xFF; 9]] {
            let mut b = bytes.clone();
            b.extend_from_slice(extra);
            assert!(
                assert_never_wrong(&b, img, &models, "appended"),
                "{img:?} + {extra:?} decoded without error"
            );
        }
    }
}

#[test]
fn random_garbage_never_panics() {
    let (_, models) = setup();
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..2000 {
        let len = rng.gen_range(0..40);
        let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if rng.gen_bool(0.5) && b.len() >= 3 {
            b[0] = 0x4C;
            b[1] = 0xF1;
            b[2] = 1;
        }
        let r = std::panic::catch_unwind(|| decode_image(&b, &models, &Limits::default()));
        assert!(r.is_ok(), "panic on {b:?}");
    }
}

/// A payload longer than any valid file of its header's image is refused before the decoder
/// copies it (a 1x1 pixelcnn header followed by a megabyte).
#[test]
fn an_overlong_payload_is_refused_before_decoding() {
    let model = Model::new(random_pixelcnn(tiny_arch(), 21));
    let img = synthetic_image(1, 1, ChannelLayout::Rgb, 0, 1);
    let mut bytes = encode_with_model(&img, &model).unwrap();
    bytes.resize(bytes.len() + (1 << 20), 0xA5);
    let mut models = ModelSet::empty();
    models.add("tiny", model);
    let err = decode_image(&bytes, &models, &Limits::default()).unwrap_err();
    assert!(matches!(err, llif::Error::CorruptPayload(_)), "{err}");
    assert!(
        err.to_string().contains("longer than any valid file"),
        "{err}"
    );
}
