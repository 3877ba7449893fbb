//! The round-trip law, for every codec and layout, from 1×1 images upward: decode(encode(x)) == x,
//! with the file's check verified, and encoder/decoder running with different thread counts.

use llif::testing::{
    encode_with_model, in_pool, noise_image, random_pixelcnn, synthetic_image, tiny_arch,
};
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

/// The same law for models with the adaptive stage (both engines): its state is rebuilt by
/// the decoder from the samples it decodes, and reset for the alpha plane.
#[test]
fn adaptive_models_round_trip_every_layout_and_size() {
    use llif::testing::{random_pixelcnn8, with_adaptive_stage, with_adaptive_stage8};
    for model in [
        Model::new(with_adaptive_stage(random_pixelcnn(tiny_arch(), 31))),
        Model::new(with_adaptive_stage8(random_pixelcnn8(tiny_arch(), 32))),
    ] {
        let mut models = ModelSet::empty();
        models.add("adaptive", model.clone());
        for img in images() {
            let bytes = in_pool(1, || encode_with_model(&img, &model)).unwrap();
            let again = in_pool(2, || encode_with_model(&img, &model)).unwrap();
            assert_eq!(bytes, again, "thread count changed the file for {img:?}");
            let decoded = in_pool(2, || decode_image(&bytes, &models, &Limits::default()));
            assert_eq!(decoded.unwrap(), img);
        }
    }
}

/// The adaptive stage learns: on an image much noisier than a model expects, the adaptive
/// model's file is smaller than the same model's without it.
#[test]
fn the_adaptive_stage_saves_bits_where_the_model_is_miscalibrated() {
    use llif::testing::with_adaptive_stage;
    let plain = random_pixelcnn(tiny_arch(), 33);
    let adaptive = Model::new(with_adaptive_stage(plain.clone()));
    let plain = Model::new(plain);
    let img = synthetic_image(48, 40, ChannelLayout::Rgb, 40, 5);
    let size = |m: &Model| encode_with_model(&img, m).unwrap().len();
    let (p, a) = (size(&plain), size(&adaptive));
    assert!(a < p, "adaptive {a} bytes, plain {p}");
}

#[test]
fn unknown_model_is_a_typed_error() {
    let model = Model::new(random_pixelcnn(tiny_arch(), 4));
    let bytes =
        encode_with_model(&synthetic_image(4, 4, ChannelLayout::Rgb, 3, 1), &model).unwrap();
    let err = decode_image(&bytes, &ModelSet::empty(), &Limits::default()).unwrap_err();
    assert!(matches!(err, llif::Error::UnknownModel(_)), "{err}");
}

/// The ids written beside the built-in models (so a decoder finds its model without hashing)
/// are the ids of their files.
#[test]
fn builtin_model_ids_are_their_files_hashes() {
    for b in llif::codec::BUILTIN_MODELS {
        assert_eq!(b.id, llif::ModelId::of_bytes(b.file), "{}", b.name);
    }
    for (name, model) in ModelSet::builtin().iter() {
        let b = llif::codec::BUILTIN_MODELS.iter().find(|b| b.name == name);
        assert_eq!(model.id(), b.map(|b| b.id), "{name}");
    }
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
    let flow = models.find("flow").unwrap();
    assert_eq!(flow.family(), CodecFamily::Flow);
    assert_eq!(flow.name(), "flow-joint-l3k8h64c3-v1");
    assert!(models.find("vae").is_none(), "no VAE model ships yet");
    assert_eq!(models.find("stored").unwrap().family(), CodecFamily::Stored);
}

/// A library caller can follow a decode and cancel it: progress runs up to its total, and a
/// decode whose flag is raised (here by its own progress callback, halfway) ends with
/// `Error::Cancelled`, not a picture.
#[test]
fn a_decode_reports_progress_and_can_be_cancelled() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let model = Model::new(random_pixelcnn(tiny_arch(), 6));
    let img = synthetic_image(40, 30, ChannelLayout::Rgba, 5, 1);
    let bytes = encode_with_model(&img, &model).unwrap();
    let mut models = ModelSet::empty();
    models.add("tiny", model);

    let seen = Mutex::new(Vec::new());
    let record = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    let control = llif::DecodeControl::default().with_progress(&record);
    let decoded = llif::decode_image_with(&bytes, &models, &Limits::default(), &control).unwrap();
    assert_eq!(decoded, img);
    let seen = seen.into_inner().unwrap();
    let (_, total) = seen[0];
    assert!(total > 1);
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0 && w[1].1 == total));
    assert_eq!(*seen.last().unwrap(), (total, total));

    let stop = AtomicBool::new(false);
    let halfway = |done: u64, total: u64| {
        if 2 * done >= total {
            stop.store(true, Ordering::Relaxed);
        }
    };
    let control = llif::DecodeControl::default()
        .with_cancel(&stop)
        .with_progress(&halfway);
    let err = llif::decode_image_with(&bytes, &models, &Limits::default(), &control).unwrap_err();
    assert!(matches!(err, llif::Error::Cancelled), "{err}");
    assert_eq!(err.kind(), llif::ErrorKind::Cancelled);
}

/// Sizes are multiplied with checks: an image can never disagree with its dimensions.
#[test]
fn size_products_never_wrap() {
    let err = Image::new(u32::MAX, u32::MAX, ChannelLayout::Rgba, Vec::new()).unwrap_err();
    assert_eq!(err.kind(), llif::ErrorKind::LimitExceeded, "{err}");
    assert!(Image::filled(1 << 31, 1 << 31, ChannelLayout::Rgba, 0).is_err());
    // 2^31 x 2^31 RGBA is 2^64 samples: refused even with no limits.
    let mut b = vec![0x4C, 0xF1, 1, 3];
    b.extend_from_slice(&[
        0x80, 0x80, 0x80, 0x80, 0x08, 0x80, 0x80, 0x80, 0x80, 0x08, 0, 0, 0, 0,
    ]);
    let err = llif::read_header(&b, &Limits::none()).unwrap_err();
    assert_eq!(err.kind(), llif::ErrorKind::LimitExceeded, "{err}");
    let err = decode_image(&b, &ModelSet::empty(), &Limits::none()).unwrap_err();
    assert_eq!(err.kind(), llif::ErrorKind::LimitExceeded, "{err}");
}

/// The PixelCNN schedule on the ANS stack (what a bits-back likelihood needs): pushed last to
/// first, popped in the schedule; the ideal bits equal the range coder's, and a stack with
/// bits already on it ends exactly as it was.
#[test]
fn the_pixelcnn_schedule_round_trips_on_the_ans_stack() {
    use llif::coding::autoregressive::{
        encode_autoregressive, pop_autoregressive, push_autoregressive,
    };
    use llif::coding::{AnsStack, Categorical};
    use llif::pixelcnn::PixelCnnSession;
    let model = random_pixelcnn(tiny_arch(), 3);
    let seed_dist = Categorical::from_weights(&[3, 1, 4, 1, 5]).unwrap();
    for img in images().into_iter().step_by(5) {
        let (w, h, layout) = (img.width(), img.height(), img.layout());
        let mut session = PixelCnnSession::new(&model, w, h, layout).unwrap();
        let (_, stats) = encode_autoregressive(&mut session, img.data()).unwrap();
        let seeded = || {
            let mut s = AnsStack::new();
            for v in [4, 0, 2, 2, 1, 3] {
                s.push(v, &seed_dist).unwrap();
            }
            s
        };
        let mut stack = seeded();
        let mut session = PixelCnnSession::new(&model, w, h, layout).unwrap();
        let ideal = push_autoregressive(&mut session, &mut stack, img.data()).unwrap();
        assert!(
            (ideal - stats.ideal_bits).abs() < 1e-6 * ideal.max(1.0),
            "{ideal} vs {}",
            stats.ideal_bits
        );
        let mut stack = AnsStack::from_bytes(&stack.into_bytes()).unwrap();
        let mut session = PixelCnnSession::new(&model, w, h, layout).unwrap();
        assert_eq!(
            pop_autoregressive(&mut session, &mut stack).unwrap(),
            img.data()
        );
        assert_eq!(stack.into_bytes(), seeded().into_bytes(), "{img:?}");
    }
}
