//! The integer PixelCNN computes bit-identical parameters in all its engines — the plain-Rust
//! reference (straight i64 loops), the incremental engine the codec uses, and libtorch in f64 —
//! for any batch size and thread count. This is what makes a file decode on another machine.
//! Without the `torch` feature the libtorch engine is left out and the other two are compared.

#[cfg(feature = "torch")]
use llif::pixelcnn::float_model::{images_to_tensor, PixelCnnTch};
use llif::pixelcnn::{Arch, PixelCnnInt};
use llif::testing::{noise_image, random_pixelcnn, synthetic_image, tiny_arch};
use llif::{ChannelLayout, Image};
#[cfg(feature = "torch")]
use tch::Device;

/// Parameters of every pixel and channel from the reference: `[pixel][channel · 3K]`.
fn reference_all(model: &PixelCnnInt, img: &Image) -> Vec<Vec<i32>> {
    let (w, h) = (img.width(), img.height());
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            (0..3)
                .flat_map(|c| model.reference_params(img.data(), w, h, x, y, c))
                .collect()
        })
        .collect()
}

/// The incremental engine, channel by channel as the decoder runs it.
fn engine_all(model: &PixelCnnInt, img: &Image) -> Vec<Vec<i32>> {
    let (w, h) = (img.width(), img.height());
    let p = model.arch().params_per_channel();
    let mut st = model.new_state();
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            model.begin_pixel(&mut st, img.data(), w, h, x, y);
            let mut all = vec![0; 3 * p];
            for c in 0..3 {
                model.channel_params(&mut st, c, &mut all[c * p..(c + 1) * p]);
                model.set_channel(&mut st, c, img.sample(x, y, c));
            }
            out.push(all);
        }
    }
    out
}

#[cfg(feature = "torch")]
fn tch_all(model: &PixelCnnInt, imgs: &[&Image], device: Device) -> Vec<Vec<i32>> {
    let refs: Vec<&[u8]> = imgs.iter().map(|i| i.data()).collect();
    let t = images_to_tensor(&refs, imgs[0].height(), imgs[0].width());
    let out = PixelCnnTch::new(model, device)
        .params(&t)
        .to_device(Device::Cpu);
    let flat = Vec::<f64>::try_from(out.flatten(0, 1)).unwrap();
    flat.chunks(model.arch().outputs())
        .map(|r| r.iter().map(|&v| v as i32).collect())
        .collect()
}

fn check_all_engines(model: &PixelCnnInt, imgs: &[Image]) {
    let reference: Vec<Vec<Vec<i32>>> = imgs.iter().map(|i| reference_all(model, i)).collect();
    for (img, r) in imgs.iter().zip(&reference) {
        assert_eq!(&engine_all(model, img), r, "engine vs reference on {img:?}");
    }
    #[cfg(feature = "torch")]
    check_tch_engine(model, imgs, &reference);
}

#[cfg(feature = "torch")]
fn check_tch_engine(model: &PixelCnnInt, imgs: &[Image], reference: &[Vec<Vec<i32>>]) {
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        // Batch of 1: each image alone.
        for (img, r) in imgs.iter().zip(reference) {
            assert_eq!(
                &tch_all(model, &[img], Device::Cpu),
                r,
                "tch batch 1 ({threads} threads) vs reference on {img:?}"
            );
        }
        // All images (same size) in one batch.
        let refs: Vec<&Image> = imgs.iter().collect();
        let expected: Vec<Vec<i32>> = reference.iter().flatten().cloned().collect();
        assert_eq!(
            tch_all(model, &refs, Device::Cpu),
            expected,
            "tch batch {} ({threads} threads)",
            imgs.len()
        );
    }
}

#[test]
fn engines_agree_on_random_images_batch_1_and_7_threads_1_and_2() {
    let model = random_pixelcnn(tiny_arch(), 11);
    for (w, h) in [(1, 1), (1, 6), (6, 1), (5, 4), (13, 9)] {
        let imgs: Vec<Image> = (0..7)
            .map(|s| {
                if s % 2 == 0 {
                    noise_image(w, h, ChannelLayout::Rgb, s)
                } else {
                    synthetic_image(w, h, ChannelLayout::Rgb, 9, s)
                }
            })
            .collect();
        check_all_engines(&model, &imgs);
    }
}

#[test]
fn engines_agree_for_a_wider_radius_and_one_component() {
    let arch = Arch {
        radius: 4,
        channels: 3,
        hidden: 9,
        hidden_layers: 0,
        components: 1,
    };
    let model = random_pixelcnn(arch, 5);
    let imgs: Vec<Image> = (0..7)
        .map(|s| noise_image(11, 7, ChannelLayout::Rgb, 100 + s))
        .collect();
    check_all_engines(&model, &imgs);
}

/// The shipped 32-bit models' engines on real images (the default runs on the 8-bit engine:
/// `tests/int8_engine.rs` checks it the same way).
#[test]
fn shipped_32_bit_model_engines_agree_on_real_cifar_images() {
    let Some(dir) = llif::corpus::data_dir() else {
        eprintln!("skipping: no data folder (set LLIF_DATA or provide ../shared/data)");
        return;
    };
    let path = dir.join("cifar10/test_batch.bin");
    if !path.exists() {
        eprintln!("skipping: {} not found", path.display());
        return;
    }
    let shipped = llif::codec::BUILTIN_MODELS
        .iter()
        .find(|b| b.name == "pixelcnn-r3h192-v3")
        .expect("v3 stays built in");
    let model = PixelCnnInt::from_bytes(shipped.file).expect("v3 parses");
    // Evaluating is fine on the test set (training on it is not).
    let imgs: Vec<Image> = llif::corpus::read_cifar(&path, Some(3))
        .unwrap()
        .into_iter()
        .map(|c| c.image)
        .collect();
    check_all_engines(&model, &imgs);
}

/// On a machine with CUDA: the integer network's parameters computed on the GPU (batch of 7)
/// equal the CPU's and the plain-Rust reference's, bit for bit. Since the codec's distributions
/// are a function of these parameters alone, a GPU encoder and a CPU decoder agree. Skips (with
/// a message) without CUDA.
#[cfg(feature = "torch")]
#[test]
fn cuda_matches_cpu_when_available() {
    if !llif::runtime::cuda_available() {
        eprintln!("skipping: no CUDA device (libtorch_cuda.so not loadable or no GPU)");
        return;
    }
    let model = random_pixelcnn(tiny_arch(), 17);
    let imgs: Vec<Image> = (0..7)
        .map(|s| noise_image(9, 8, ChannelLayout::Rgb, 300 + s))
        .collect();
    let refs: Vec<&Image> = imgs.iter().collect();
    let cpu = tch_all(&model, &refs, Device::Cpu);
    let gpu = tch_all(&model, &refs, Device::Cuda(0));
    assert_eq!(cpu, gpu, "CUDA f64 path differs from the CPU");
    let expected: Vec<Vec<i32>> = imgs.iter().flat_map(|i| reference_all(&model, i)).collect();
    assert_eq!(gpu, expected, "CUDA f64 path differs from the reference");
    // Compress on CUDA, decompress on CPU with the Rust engine; and the reverse direction is the
    // engine-encoded file, which is byte-identical.
    for layout in [ChannelLayout::Rgb, ChannelLayout::Gray, ChannelLayout::Rgba] {
        let img = noise_image(13, 11, layout, 9);
        let (gpu_payload, _) =
            llif::pixelcnn::encode_payload_tch(&model, &img, Device::Cuda(0)).unwrap();
        let (cpu_payload, _) = llif::pixelcnn::encode_payload(&model, &img).unwrap();
        assert_eq!(
            gpu_payload, cpu_payload,
            "CUDA-encoded payload differs from the CPU's ({layout})"
        );
        let decoded = llif::pixelcnn::decode_payload(&model, 13, 11, layout, &gpu_payload).unwrap();
        assert_eq!(
            decoded,
            img.data(),
            "CUDA-encoded payload does not decode on the CPU ({layout})"
        );
    }
}
