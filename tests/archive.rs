//! Archives (SPEC.md "Archives"): the round-trip law for every family and layout, mixed sizes,
//! named and unnamed; every entry is the file `encode_image` writes alone; damaged archives give
//! typed errors, never images.

use llif::format::archive::{Archive, ArchiveBuilder};
use llif::testing::{
    in_pool, noise_image, random_flow, random_pixelcnn, synthetic_image, tiny_arch,
};
use llif::{
    decode_archive, encode_archive, encode_image_with, ArchiveInput, ChannelLayout, EncodeOptions,
    ErrorKind, Image, Limits, Model, ModelSet,
};

/// Gray, gray+alpha, RGB and RGBA images of mixed sizes, smooth and noisy.
fn mixed_images() -> Vec<Image> {
    let layouts = [
        ChannelLayout::Gray,
        ChannelLayout::GrayAlpha,
        ChannelLayout::Rgb,
        ChannelLayout::Rgba,
    ];
    let sizes = [(1, 1), (5, 3), (9, 1), (12, 7)];
    let mut v = Vec::new();
    for (i, layout) in layouts.into_iter().enumerate() {
        for (j, (w, h)) in sizes.into_iter().enumerate() {
            let seed = (i * 10 + j) as u64;
            v.push(if j % 2 == 0 {
                synthetic_image(w, h, layout, 6, seed)
            } else {
                noise_image(w, h, layout, seed)
            });
        }
    }
    v
}

fn models() -> Vec<(&'static str, Model)> {
    vec![
        ("stored", Model::stored()),
        ("pixelcnn", Model::new(random_pixelcnn(tiny_arch(), 5))),
        ("flow", Model::new(random_flow(2, 2, 4, 20.0, 9))),
    ]
}

fn model_set(models: &[(&'static str, Model)]) -> ModelSet {
    let mut set = ModelSet::empty();
    for (name, m) in models {
        set.add(name, m.clone());
    }
    set
}

#[test]
fn archives_round_trip_every_family_layout_and_size_named_and_unnamed() {
    let images = mixed_images();
    let names: Vec<String> = (0..images.len())
        .map(|i| format!("set{}/image-{i}.png", i % 3))
        .collect();
    let all = models();
    let set = model_set(&all);
    for (family, model) in &all {
        for named in [false, true] {
            let inputs: Vec<ArchiveInput> = images
                .iter()
                .zip(&names)
                .map(|(image, n)| ArchiveInput {
                    name: named.then_some(n.as_str()),
                    image,
                })
                .collect();
            let options = EncodeOptions::default().with_stored_fallback(false);
            let one = in_pool(1, || {
                encode_archive(&inputs, &model.clone().into(), &options)
            })
            .unwrap();
            let two = in_pool(2, || {
                encode_archive(&inputs, &model.clone().into(), &options)
            })
            .unwrap();
            assert_eq!(
                one, two,
                "{family}: the archive depends on the thread count"
            );
            let decoded = decode_archive(&one, &set, &Limits::default()).unwrap();
            assert_eq!(decoded.len(), images.len());
            for (i, ((name, image), original)) in decoded.iter().zip(&images).enumerate() {
                assert_eq!(image, original, "{family}, entry {i}");
                let expected = if named {
                    names[i].clone()
                } else {
                    format!("{i:05}.png")
                };
                assert_eq!(name, &expected);
            }
        }
    }
}

#[test]
fn an_entry_is_the_file_the_image_would_be_alone() {
    let images = mixed_images();
    let model = Model::new(random_pixelcnn(tiny_arch(), 5));
    let inputs: Vec<ArchiveInput> = images
        .iter()
        .map(|image| ArchiveInput { name: None, image })
        .collect();
    let options = EncodeOptions::default();
    let bytes = encode_archive(&inputs, &model.clone().into(), &options).unwrap();
    let archive = Archive::parse(&bytes, &Limits::default()).unwrap();
    let mut files_total = 0;
    for (entry, image) in archive.entries.iter().zip(&images) {
        let alone = encode_image_with(image, &model, &options).unwrap().bytes;
        assert_eq!(entry.image_file(), alone);
        files_total += alone.len();
    }
    // What an archive of unnamed entries adds or saves: 3 bytes less per entry (magic,
    // version), the payload length in its index record, and its own 8 to 10 bytes of fields
    // and index check.
    assert!(
        bytes.len() < files_total,
        "{} vs {files_total}",
        bytes.len()
    );
}

#[test]
fn damaged_archives_are_typed_errors_never_images() {
    let images = mixed_images();
    let model = Model::new(random_pixelcnn(tiny_arch(), 5));
    let set = model_set(&[("pixelcnn", model.clone())]);
    let names: Vec<String> = (0..images.len())
        .map(|i| format!("d{}/n{i}.png", i % 2))
        .collect();
    let inputs: Vec<ArchiveInput> = images
        .iter()
        .zip(&names)
        .map(|(image, name)| ArchiveInput {
            name: Some(name),
            image,
        })
        .collect();
    let bytes = encode_archive(&inputs, &model.clone().into(), &EncodeOptions::default()).unwrap();
    // Every truncation.
    for len in 0..bytes.len() {
        let err = decode_archive(&bytes[..len], &set, &Limits::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptInput, "length {len}: {err}");
    }
    // Every single flipped bit in the first 64 bytes and every 7th after (index and payloads).
    for pos in (0..bytes.len()).filter(|p| *p < 64 || p % 7 == 0) {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[pos] ^= bit;
            match decode_archive(&b, &set, &Limits::default()) {
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::CorruptInput | ErrorKind::Unsupported | ErrorKind::LimitExceeded
                    ),
                    "byte {pos}: {e}"
                ),
                Ok(decoded) => {
                    // A flip the format cannot see would have to give the same images back.
                    let same = decoded.iter().map(|(_, i)| i).eq(images.iter());
                    assert!(same, "byte {pos} bit {bit:#x}: a wrong picture decoded");
                }
            }
        }
    }
}

#[test]
fn an_archive_without_its_model_is_unsupported_and_limits_hold() {
    let images = mixed_images();
    let model = Model::new(random_flow(2, 2, 4, 20.0, 9));
    let inputs: Vec<ArchiveInput> = images
        .iter()
        .map(|image| ArchiveInput { name: None, image })
        .collect();
    let options = EncodeOptions::default().with_stored_fallback(false);
    let bytes = encode_archive(&inputs, &model.clone().into(), &options).unwrap();
    let err = decode_archive(&bytes, &ModelSet::empty(), &Limits::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let set = model_set(&[("flow", model)]);
    let few = Limits::default().with_max_images(images.len() as u64 - 1);
    let err = decode_archive(&bytes, &set, &few).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    let pixels: u64 = images
        .iter()
        .map(|i| i.width() as u64 * i.height() as u64)
        .sum();
    let small = Limits::default().with_max_archive_pixels(pixels - 1);
    let err = decode_archive(&bytes, &set, &small).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    let exact = Limits::default().with_max_archive_pixels(pixels);
    assert_eq!(
        decode_archive(&bytes, &set, &exact).unwrap().len(),
        images.len()
    );
}

#[test]
fn a_builder_refuses_what_a_reader_would_refuse() {
    let image = synthetic_image(3, 3, ChannelLayout::Rgb, 4, 1);
    let file = encode_image_with(&image, &Model::stored(), &EncodeOptions::default())
        .unwrap()
        .bytes;
    let mut b = ArchiveBuilder::new(true);
    assert!(b.push(None, &file).is_err());
    assert!(b.push(Some("../up.png"), &file).is_err());
    assert!(b.push(Some("ok.png"), &file).is_ok());
    assert!(b.push(Some("bad.png"), &file[3..]).is_err());
    assert!(ArchiveBuilder::new(false).finish().is_err());
    // Names that clash with each other are found when the archive is finished.
    let mut twice = b.clone();
    twice.push(Some("ok.png"), &file).unwrap();
    assert!(twice.finish().is_err());
    assert!(b.finish().is_ok());
}
