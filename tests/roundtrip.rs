//! The round-trip law, for every codec and layout, from 1×1 images upward: decode(encode(x)) == x,
//! with the file's check verified, and encoder/decoder running with different thread counts.

use llif::testing::{noise_image, random_pixelcnn, synthetic_image, tiny_arch};
use llif::{decode_image, encode_image, ChannelLayout, Image, Limits, Model, ModelSet};
use std::sync::Arc;

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
        let bytes = encode_image(&img, &Model::Stored).unwrap();
        assert_eq!(
            decode_image(&bytes, &models, &Limits::default()).unwrap(),
            img
        );
    }
}

#[test]
fn pixelcnn_round_trips_every_layout_and_size_across_thread_counts() {
    let model = Model::PixelCnn(Arc::new(random_pixelcnn(tiny_arch(), 3)));
    let mut models = ModelSet::empty();
    models.add("tiny", model.clone());
    for img in images() {
        let bytes = in_pool(1, || encode_image(&img, &model)).unwrap();
        let again = in_pool(2, || encode_image(&img, &model)).unwrap();
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
    let model = Model::PixelCnn(Arc::new(random_pixelcnn(tiny_arch(), 4)));
    let bytes = encode_image(&synthetic_image(4, 4, ChannelLayout::Rgb, 3, 1), &model).unwrap();
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
        let bytes = encode_image(&img, model).unwrap();
        assert_eq!(
            decode_image(&bytes, &models, &Limits::default()).unwrap(),
            img,
            "{name}"
        );
    }
}

#[test]
fn tch_encoder_writes_the_same_bytes_as_the_engine() {
    let Model::PixelCnn(m) = Model::PixelCnn(Arc::new(random_pixelcnn(tiny_arch(), 8))) else {
        unreachable!()
    };
    for img in images().into_iter().step_by(3) {
        let (engine, _) = llif::pixelcnn::encode_payload(&m, &img).unwrap();
        let (torch, _) = llif::pixelcnn::encode_payload_tch(&m, &img, tch::Device::Cpu).unwrap();
        assert_eq!(engine, torch, "{img:?}");
    }
}
