//! The 8-bit engine: every kernel this CPU has computes the plain-Rust reference's parameters
//! bit for bit, so a file coded with one kernel decodes with any other (and on any machine);
//! the quantizer keeps the 32-bit model's predictions; 8-bit model files name their engine.
//!
//! Which kernels run depends on the machine (`Kernel::available()`, printed with
//! `--nocapture`): the portable one always, AVX2 and AVX-512 VNNI where the CPU has them.

use llif::intnet::int8::Kernel;
use llif::pixelcnn::{PixelCnn8, PixelNet};
use llif::testing::{
    encode_with_model, noise_image, random_pixelcnn, random_pixelcnn8, synthetic_image, tiny_arch,
};
use llif::{decode_image, ChannelLayout, Image, Limits, Model, ModelSet};

fn images() -> Vec<Image> {
    let mut v = Vec::new();
    for (i, (w, h)) in [(1, 1), (2, 3), (7, 5), (17, 12)].into_iter().enumerate() {
        v.push(synthetic_image(w, h, ChannelLayout::Rgb, 9, i as u64));
        v.push(noise_image(w, h, ChannelLayout::Rgb, i as u64));
    }
    v
}

fn reference_all(model: &PixelCnn8, img: &Image) -> Vec<i32> {
    let (w, h) = (img.width(), img.height());
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out.extend(model.reference_params(img.data(), w, h, x, y, c));
            }
        }
    }
    out
}

/// The incremental engine, channel by channel as the decoder runs it.
fn engine_all(model: &PixelCnn8, img: &Image) -> Vec<i32> {
    let (w, h) = (img.width(), img.height());
    let p = model.arch().params_per_channel();
    let mut st = model.new_state();
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            model.begin_pixel(&mut st, img.data(), w, h, x, y);
            for c in 0..3 {
                let mut params = vec![0; p];
                model.channel_params(&mut st, c, &mut params);
                out.extend(params);
                model.set_channel(&mut st, c, img.sample(x, y, c));
            }
        }
    }
    out
}

#[test]
fn every_kernel_computes_the_reference_parameters() {
    let kernels = Kernel::available();
    eprintln!("kernels on this machine: {kernels:?}");
    assert_eq!(kernels[0], Kernel::Portable);
    let mut arch = tiny_arch();
    for hidden in [24, 66] {
        arch.hidden = hidden;
        let model = random_pixelcnn8(arch, hidden as u64);
        for img in images() {
            let want = reference_all(&model, &img);
            for &k in &kernels {
                let m = model.clone().with_kernel(k);
                assert_eq!(
                    engine_all(&m, &img),
                    want,
                    "{k:?}, hidden {hidden}, {img:?}"
                );
            }
        }
    }
}

#[test]
fn a_file_coded_with_one_kernel_decodes_with_every_kernel() {
    let model = random_pixelcnn8(tiny_arch(), 11);
    let img = synthetic_image(23, 19, ChannelLayout::Rgba, 7, 3);
    let files: Vec<Vec<u8>> = Kernel::available()
        .into_iter()
        .map(|k| encode_with_model(&img, &Model::new(model.clone().with_kernel(k))).unwrap())
        .collect();
    assert!(
        files.windows(2).all(|f| f[0] == f[1]),
        "kernels wrote different files"
    );
    for k in Kernel::available() {
        let mut models = ModelSet::empty();
        models.add("m", Model::new(model.clone().with_kernel(k)));
        assert_eq!(
            decode_image(&files[0], &models, &Limits::default()).unwrap(),
            img
        );
    }
}

#[test]
fn model_files_name_their_engine_and_round_trip() {
    let model = random_pixelcnn8(tiny_arch(), 12);
    let bytes = model.to_bytes();
    let parsed = llif::family::parse_model(&bytes).unwrap();
    assert_eq!(parsed.id(), Some(model.id));
    let summary = parsed.family_model().summary();
    assert!(summary.contains("8-bit"), "{summary}");
    // The same file with an engine this build does not know is unsupported, not invalid.
    let mut other = bytes.clone();
    let at = other.windows(6).position(|w| w == b"\"int8\"").unwrap();
    other[at + 4] = b'4'; // "int4": same length, so the container still fits
    let err = llif::family::parse_model(&other).unwrap_err();
    assert_eq!(err.kind(), llif::ErrorKind::Unsupported, "{err}");
    // A 32-bit model stays a 32-bit model: no engine field, the same id as before.
    let m32 = random_pixelcnn(tiny_arch(), 12);
    assert!(!String::from_utf8_lossy(&m32.to_bytes()).contains("engine"));
}

/// The quantizer keeps the 32-bit model's predictions: on smooth images, where a random model
/// predicts well, the 8-bit model's ideal bits stay within a few percent of the 32-bit one's.
/// (The cost on real images with trained models is measured on the model cards.)
#[test]
fn quantizing_to_8_bits_keeps_the_predictions() {
    for seed in [21, 22] {
        let m32 = Model::new(random_pixelcnn(tiny_arch(), seed));
        let m8 = Model::new(random_pixelcnn8(tiny_arch(), seed));
        let img = synthetic_image(32, 32, ChannelLayout::Rgb, 4, seed);
        let bits = |m: &Model| m.family_model().encode(&img).unwrap().ideal_bits.unwrap();
        let (b32, b8) = (bits(&m32), bits(&m8));
        assert!(
            (b8 / b32 - 1.0).abs() < 0.05,
            "seed {seed}: 32-bit {b32:.0} bits, 8-bit {b8:.0}"
        );
    }
}

/// The default model, on real images: every kernel of this machine computes the reference's
/// parameters (evaluating on the test set is fine; choosing anything by it is not).
#[test]
fn default_model_kernels_agree_on_real_cifar_images() {
    let Some(dir) = llif::corpus::data_dir() else {
        eprintln!("skipping: no data folder (set LLIF_DATA or provide ../shared/data)");
        return;
    };
    let path = dir.join("cifar10/test_batch.bin");
    if !path.exists() {
        eprintln!("skipping: {} not found", path.display());
        return;
    }
    let model = PixelCnn8::from_bytes(llif::codec::DEFAULT_PIXELCNN)
        .expect("the default model is an 8-bit model");
    for c in llif::corpus::read_cifar(&path, Some(2)).unwrap() {
        let want = reference_all(&model, &c.image);
        for k in Kernel::available() {
            let m = model.clone().with_kernel(k);
            assert_eq!(
                engine_all(&m, &c.image),
                want,
                "{k:?}, test image {}",
                c.index
            );
        }
    }
}

/// Wavefronts wide enough to be shared between threads (a network near the shipped models'
/// size on a 128×32 image: up to 32 pixels a wavefront, past the 8-bit engine's threshold of
/// 24): the same file with 1 and 2 threads, for both engines, and it decodes. The small test
/// models never reach the threshold.
#[test]
fn wide_wavefronts_give_the_same_file_with_any_thread_count() {
    use llif::testing::random_pixelcnn;
    let arch = llif::pixelcnn::Arch {
        radius: 3,
        channels: 3,
        hidden: 192,
        hidden_layers: 2,
        components: 3,
    };
    let img = synthetic_image(128, 32, ChannelLayout::Rgb, 9, 41);
    for model in [
        Model::new(random_pixelcnn8(arch, 42)),
        Model::new(random_pixelcnn(arch, 43)),
    ] {
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let one = pool(1).install(|| encode_with_model(&img, &model)).unwrap();
        let two = pool(2).install(|| encode_with_model(&img, &model)).unwrap();
        assert_eq!(one, two, "{}", model.name());
        let mut models = ModelSet::empty();
        models.add("m", model);
        let decoded = pool(2).install(|| decode_image(&one, &models, &Limits::default()));
        assert_eq!(decoded.unwrap(), img);
    }
}
