//! The round-trip law, for every codec and layout, from 1×1 images upward: decode(encode(x)) == x,
//! with the file's check verified, and encoder/decoder running with different thread counts.

use llif::testing::{encode_with_model, noise_image, random_pixelcnn, synthetic_image, tiny_arch};
use llif::{
    decode_image, encode_image, encode_image_with_stats, ChannelLayout, CodecFamily, Image, Limits,
    Model, ModelSet,
};

const LAYOUTS: [ChannelLayout; 4] = [
    ChannelLayout::Gray,
    ChannelLayout::GrayAlpha,
    ChannelLayout::Rgb,
    ChannelLayout::Rgba,
];
const SIZES: [(u32, u32); 8] = [
    (1, 1),
    (1, 2),
    (2, 1),
    (1, 9),
    (9, 1),
    (3, 3),
    (7, 5),
    (17, 12),
];

fn images() -> Vec<Image> {
    let mut v = Vec::new();
    for (i, layout) in LAYOUTS.into_iter().enumerate() {
        for (j, (w, h)) in SIZES.into_iter().enumerate() {
            let seed = (i * 100 + j) as u64;
            v.push(synthetic_image(w, h, layout, 6, seed));
            v.push(noise_image(w, h, layout, seed));
            v.push(Image::filled(w, h, layout, [0u8, 255, 128][j % 3]).unwrap());
        }
    }
    v
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn stored_round_trips() {
    let models = ModelSet::empty();
    for img in images() {
        let bytes = encode_image(&img, &Model::stored()).unwrap();
        assert_eq!(
            decode_image(&bytes, &models, &Limits::default()).unwrap(),
            img
        );
    }
}

#[test]
fn pixelcnn_round_trips_every_layout_and_size_across_thread_counts() {
    let model = Model::new(random_pixelcnn(tiny_arch(), 3));
    let mut models = ModelSet::empty();
    models.add("tiny", model.clone());
    for img in images() {
        let bytes = in_pool(1, || encode_with_model(&img, &model)).unwrap();
        let again = in_pool(2, || encode_with_model(&img, &model)).unwrap();
        assert_eq!(
            bytes, again,
            "encoding depends on the thread count for {img:?}"
        );
        let decoded = in_pool(2, || decode_image(&bytes, &models, &Limits::default())).unwrap();
        assert_eq!(decoded, img);
    }
}

#[test]
fn unknown_model_is_a_typed_error() {
    let model = Model::new(random_pixelcnn(tiny_arch(), 4));
    let bytes =
        encode_with_model(&synthetic_image(4, 4, ChannelLayout::Rgb, 3, 1), &model).unwrap();
    let err = decode_image(&bytes, &ModelSet::empty(), &Limits::default()).unwrap_err();
    assert!(matches!(err, llif::Error::UnknownModel(_)), "{err}");
}

#[test]
fn every_builtin_model_is_valid_and_round_trips() {
    let models = ModelSet::builtin();
    assert_eq!(models.iter().count(), llif::codec::BUILTIN_MODELS.len());
    assert!(models.find("default").is_some());
    // Files name their model by id, so two built-in models must never share one.
    let mut ids: Vec<_> = models.iter().map(|(_, m)| m.id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), llif::codec::BUILTIN_MODELS.len());
    let img = synthetic_image(6, 5, ChannelLayout::Rgba, 9, 77);
    for (name, model) in models.iter() {
        let bytes = encode_with_model(&img, model).unwrap();
        assert_eq!(
            decode_image(&bytes, &models, &Limits::default()).unwrap(),
            img,
            "{name}"
        );
    }
}

#[cfg(feature = "torch")]
#[test]
fn tch_encoder_writes_the_same_bytes_as_the_engine() {
    let m = random_pixelcnn(tiny_arch(), 8);
    for img in images().into_iter().step_by(3) {
        let (engine, _) = llif::pixelcnn::encode_payload(&m, &img).unwrap();
        let (torch, _) = llif::pixelcnn::encode_payload_tch(&m, &img, tch::Device::Cpu).unwrap();
        assert_eq!(engine, torch, "{img:?}");
    }
}

/// Never worse than stored: whatever the model, a file is at most the `stored` file's size
/// (8 bits a sample plus a header without model id), and it still round-trips. On uniform noise
/// a random model loses to 8 bits, so the encoder must have written `stored`.
#[test]
fn no_file_is_larger_than_the_stored_file() {
    let model = Model::new(random_pixelcnn(tiny_arch(), 5));
    let mut models = ModelSet::empty();
    models.add("tiny", model.clone());
    for img in images() {
        let stored = encode_image(&img, &Model::stored()).unwrap();
        let enc = encode_image_with_stats(&img, &model).unwrap();
        assert!(enc.bytes.len() <= stored.len(), "{img:?}");
        if enc.family == CodecFamily::Stored {
            assert_eq!(enc.bytes, stored);
            assert!(enc.model_bytes_refused.unwrap() > stored.len());
        }
        assert_eq!(
            decode_image(&enc.bytes, &models, &Limits::default()).unwrap(),
            img
        );
    }
    let noise = noise_image(16, 16, ChannelLayout::Rgb, 9);
    let enc = encode_image_with_stats(&noise, &model).unwrap();
    assert_eq!(enc.family, CodecFamily::Stored);
}

/// A file of a family this build does not implement is "unsupported", not "corrupt", and so is
/// a newer format version.
#[test]
fn unknown_family_and_newer_version_are_unsupported() {
    let img = synthetic_image(3, 2, ChannelLayout::Rgb, 4, 1);
    let stored = encode_image(&img, &Model::stored()).unwrap();
    for family_code in [2u8, 3, 9, 15] {
        let mut b = stored[..4].to_vec();
        b[3] = (b[3] & 3) | (family_code << 2);
        b.extend_from_slice(&[1, 2, 3, 4]); // model id
        b.extend_from_slice(&stored[4..]);
        let err = decode_image(&b, &ModelSet::builtin(), &Limits::default()).unwrap_err();
        assert_eq!(
            err.kind(),
            llif::ErrorKind::Unsupported,
            "family {family_code}: {err}"
        );
        assert!(!err.is_corrupt_input());
    }
    let mut newer = stored.clone();
    newer[2] = llif::format::FORMAT_VERSION + 1;
    let err = decode_image(&newer, &ModelSet::builtin(), &Limits::default()).unwrap_err();
    assert!(matches!(err, llif::Error::UnsupportedVersion(_)), "{err}");
    assert_eq!(err.kind(), llif::ErrorKind::Unsupported);
}

/// `--model pixelcnn` and friends: a family name finds the best built-in model of the family.
#[test]
fn family_names_find_the_best_builtin_model() {
    let models = ModelSet::builtin();
    let best = models.find("pixelcnn").unwrap();
    assert_eq!(best.family(), CodecFamily::PixelCnn);
    assert_eq!(best.name(), llif::codec::BUILTIN_MODELS[0].name);
    assert_eq!(best.id(), models.find("default").unwrap().id());
    assert!(models.find("flow").is_none(), "no flow model ships yet");
    assert_eq!(models.find("stored").unwrap().family(), CodecFamily::Stored);
}
