//! Golden files: `.llif` files written by earlier versions must decode, forever, to the pixels
//! stored beside them. `tests/golden/README.md` says how each was made. To add files for a new
//! format version or model, run `cargo test --test golden -- --ignored write_golden_files` and
//! commit the new files; never regenerate existing ones.

use std::path::{Path, PathBuf};

use llif::format::archive::{entry_file_name, ArchiveBuilder};
use llif::testing::{
    encode_with_model, random_flow_mixture, random_joint_flow, random_pixelcnn, random_pixelcnn8,
    synthetic_image, tiny_arch, with_adaptive_stage8,
};
use llif::{decode_archive, decode_image, ChannelLayout, Image, Limits, Model, ModelSet};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Built-in models plus the model files kept with the golden files.
fn models() -> ModelSet {
    let mut set = ModelSet::builtin();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "llifm") {
            set.add(&p.display().to_string(), Model::from_file(&p).unwrap());
        }
    }
    set
}

#[test]
fn golden_files_decode_to_their_pixels() {
    let models = models();
    let mut count = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "llif") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let decoded = decode_image(&bytes, &models, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let expected = llif::corpus::read_image_file(&p.with_extension("png")).unwrap();
        assert_eq!(decoded, expected, "{}", p.display());
        count += 1;
    }
    // As many as were committed (never fewer: a golden file is never removed).
    assert!(count >= 20, "golden files missing: found {count}");
}

#[test]
fn golden_model_files_are_unchanged() {
    // The model file format is part of the promise too: each kept model must parse to the id
    // its files name.
    for name in ["tiny-v1", "tiny8a-v1", "tinyflow-v1", "tinyjoint-v1"] {
        let bytes = std::fs::read(dir().join(format!("{name}.llifm"))).unwrap();
        let model = Model::from_bytes(&bytes).unwrap();
        let id = std::fs::read_to_string(dir().join(format!("{name}.id"))).unwrap();
        assert_eq!(
            llif::ModelId::of_bytes(&bytes).to_string(),
            id.trim(),
            "{name}"
        );
        assert_eq!(model.id().unwrap().to_string(), id.trim(), "{name}");
    }
}

#[test]
#[ignore = "writes golden files; run by hand when adding a format version or model"]
fn write_golden_files() {
    let d = dir();
    let model_path = d.join("tiny-v1.llifm");
    if !model_path.exists() {
        let m = random_pixelcnn(tiny_arch(), 2025);
        std::fs::write(&model_path, m.to_bytes()).unwrap();
        std::fs::write(d.join("tiny-v1.id"), format!("{}\n", m.id)).unwrap();
    }
    let tiny = Model::from_file(&model_path).unwrap();
    // The 8-bit engine with the adaptive stage (both in use since the first such built-in
    // model): 8-bit hidden weights, a 16-bit output layer.
    let model8_path = d.join("tiny8a-v1.llifm");
    if !model8_path.exists() {
        let m = with_adaptive_stage8(random_pixelcnn8(tiny_arch(), 2026));
        std::fs::write(&model8_path, m.to_bytes()).unwrap();
        std::fs::write(d.join("tiny8a-v1.id"), format!("{}\n", m.id)).unwrap();
    }
    let tiny8a = Model::from_file(&model8_path).unwrap();
    // The flow family (`plane-idf-1`): 2 levels of 2 couplings, 8 hidden units, 3-component
    // priors; couplings that translate by about 40, so some latents take the escape path.
    let flow_path = d.join("tinyflow-v1.llifm");
    if !flow_path.exists() {
        let m = random_flow_mixture(2, 2, 8, 3, 40.0, 2027);
        std::fs::write(&flow_path, m.to_bytes()).unwrap();
        std::fs::write(d.join("tinyflow-v1.id"), format!("{}\n", m.id)).unwrap();
    }
    let tinyflow = Model::from_file(&flow_path).unwrap();
    // Joint flows (`joint-idf-2`): a joint flow of 2 levels of 2 couplings, 8 hidden units,
    // 2-component priors, and a plane flow of 3 levels (so images extend to multiples of 8),
    // 9 hidden units, 1 component; translations of about 40, so some latents escape.
    let joint_path = d.join("tinyjoint-v1.llifm");
    if !joint_path.exists() {
        let m = random_joint_flow(2, 2, 8, 3, 40.0, 2028);
        std::fs::write(&joint_path, m.to_bytes()).unwrap();
        std::fs::write(d.join("tinyjoint-v1.id"), format!("{}\n", m.id)).unwrap();
    }
    let tinyjoint = Model::from_file(&joint_path).unwrap();
    let mut cases: Vec<(String, Image, Model)> = vec![
        (
            "v1-pixelcnn-rgb-1x1".into(),
            synthetic_image(1, 1, ChannelLayout::Rgb, 0, 1),
            tiny.clone(),
        ),
        (
            "v1-pixelcnn-gray-5x3".into(),
            synthetic_image(5, 3, ChannelLayout::Gray, 30, 2),
            tiny.clone(),
        ),
        (
            "v1-pixelcnn-rgba-7x4".into(),
            synthetic_image(7, 4, ChannelLayout::Rgba, 30, 3),
            tiny.clone(),
        ),
        (
            "v1-pixelcnn-grayalpha-8x8".into(),
            synthetic_image(8, 8, ChannelLayout::GrayAlpha, 30, 4),
            tiny.clone(),
        ),
        (
            "v1-pixelcnn-rgb-32x32".into(),
            synthetic_image(32, 32, ChannelLayout::Rgb, 12, 5),
            tiny.clone(),
        ),
        // Large enough that buckets of the adaptive stage halve their costs (256 samples).
        (
            "v1-pixelcnn8a-rgb-48x40".into(),
            synthetic_image(48, 40, ChannelLayout::Rgb, 40, 100),
            tiny8a.clone(),
        ),
        (
            "v1-pixelcnn8a-grayalpha-9x8".into(),
            synthetic_image(9, 8, ChannelLayout::GrayAlpha, 30, 101),
            tiny8a,
        ),
        (
            "v1-flow-rgb-1x1".into(),
            synthetic_image(1, 1, ChannelLayout::Rgb, 0, 200),
            tinyflow.clone(),
        ),
        (
            "v1-flow-gray-5x3".into(),
            synthetic_image(5, 3, ChannelLayout::Gray, 30, 201),
            tinyflow.clone(),
        ),
        (
            "v1-flow-grayalpha-8x8".into(),
            synthetic_image(8, 8, ChannelLayout::GrayAlpha, 30, 202),
            tinyflow.clone(),
        ),
        (
            "v1-flow-rgba-7x4".into(),
            synthetic_image(7, 4, ChannelLayout::Rgba, 30, 203),
            tinyflow.clone(),
        ),
        (
            "v1-flow-rgb-33x20".into(),
            synthetic_image(33, 20, ChannelLayout::Rgb, 12, 204),
            tinyflow,
        ),
        (
            "v1-jointflow-rgb-1x1".into(),
            synthetic_image(1, 1, ChannelLayout::Rgb, 0, 300),
            tinyjoint.clone(),
        ),
        (
            "v1-jointflow-gray-5x3".into(),
            synthetic_image(5, 3, ChannelLayout::Gray, 30, 301),
            tinyjoint.clone(),
        ),
        (
            "v1-jointflow-rgba-7x4".into(),
            synthetic_image(7, 4, ChannelLayout::Rgba, 30, 302),
            tinyjoint.clone(),
        ),
        (
            "v1-jointflow-rgb-33x20".into(),
            synthetic_image(33, 20, ChannelLayout::Rgb, 12, 303),
            tinyjoint,
        ),
        (
            "v1-stored-rgb-3x2".into(),
            synthetic_image(3, 2, ChannelLayout::Rgb, 50, 6),
            Model::stored(),
        ),
    ];
    // Every model that has shipped in the binary gets files of its own, written once (existing
    // files are never regenerated, so a model's seeds only matter when its files are first
    // written): seeds 7, 8, 9 for the last model of BUILTIN_MODELS, continuing towards the first.
    let builtin = ModelSet::builtin();
    for (k, name) in llif::codec::BUILTIN_MODELS
        .iter()
        .rev()
        .map(|b| b.name)
        .enumerate()
    {
        let model = builtin
            .find(name)
            .unwrap_or_else(|| panic!("shipped model {name} is built in"));
        let seed = 7 + 3 * k as u64;
        cases.push((
            format!("v1-{name}-rgb-32x32"),
            synthetic_image(32, 32, ChannelLayout::Rgb, 12, seed),
            model.clone(),
        ));
        cases.push((
            format!("v1-{name}-gray-9x7"),
            synthetic_image(9, 7, ChannelLayout::Gray, 25, seed + 1),
            model.clone(),
        ));
        cases.push((
            format!("v1-{name}-rgba-6x5"),
            synthetic_image(6, 5, ChannelLayout::Rgba, 25, seed + 2),
            model,
        ));
    }
    for (name, img, model) in cases {
        let llif_path = d.join(format!("{name}.llif"));
        if llif_path.exists() {
            continue; // never regenerate
        }
        std::fs::write(&llif_path, encode_with_model(&img, &model).unwrap()).unwrap();
        llif::corpus::write_image_file(&img, &d.join(format!("{name}.png"))).unwrap();
    }
    write_golden_archives(&d, &models());
}

/// Archives (SPEC.md "Archives"): `archives/NAME.llif`, its images in `archives/NAME/` under
/// the entries' file names.
fn write_golden_archives(d: &Path, models: &ModelSet) {
    let find = |key: &str| models.find(key).unwrap_or_else(|| panic!("model {key}"));
    let tiny = find(&d.join("tiny-v1.llifm").display().to_string());
    let tiny8a = find(&d.join("tiny8a-v1.llifm").display().to_string());
    let tinyflow = find(&d.join("tinyflow-v1.llifm").display().to_string());
    // Named, mixed families, layouts and sizes, sub-folders, a PGM name.
    let named: Vec<(&str, Image, Model)> = vec![
        (
            "a.png",
            synthetic_image(6, 4, ChannelLayout::Rgb, 20, 300),
            tiny.clone(),
        ),
        (
            "set/b.pgm",
            synthetic_image(5, 7, ChannelLayout::Gray, 20, 301),
            tinyflow.clone(),
        ),
        (
            "set/deeper/c.png",
            synthetic_image(3, 3, ChannelLayout::Rgba, 20, 302),
            tiny8a,
        ),
        (
            "d.png",
            synthetic_image(1, 1, ChannelLayout::GrayAlpha, 0, 303),
            Model::stored(),
        ),
        (
            "set/e.png",
            synthetic_image(9, 5, ChannelLayout::Rgb, 20, 304),
            tinyflow,
        ),
    ];
    // Unnamed: small RGB images with the default built-in model, as a CIFAR batch would be.
    let default = models.find("pixelcnn-r3h192-v3-int8-adapt").unwrap();
    let unnamed: Vec<(Option<&str>, Image, Model)> = (0..3)
        .map(|i| {
            (
                None,
                synthetic_image(8, 8, ChannelLayout::Rgb, 12, 310 + i),
                default.clone(),
            )
        })
        .collect();
    let named: Vec<(Option<&str>, Image, Model)> =
        named.into_iter().map(|(n, i, m)| (Some(n), i, m)).collect();
    for (name, entries) in [
        ("v1-archive-named-mixed", named),
        ("v1-archive-unnamed", unnamed),
    ] {
        let path = d.join("archives").join(format!("{name}.llif"));
        if path.exists() {
            continue; // never regenerate
        }
        let folder = d.join("archives").join(name);
        let mut builder = ArchiveBuilder::new(entries[0].0.is_some());
        for (i, (entry_name, image, model)) in entries.iter().enumerate() {
            builder
                .push(*entry_name, &encode_with_model(image, model).unwrap())
                .unwrap();
            let file = folder.join(entry_file_name(*entry_name, i));
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            llif::corpus::write_image_file(image, &file).unwrap();
        }
        std::fs::write(&path, builder.finish().unwrap()).unwrap();
    }
}

#[test]
fn golden_archives_decode_to_their_images() {
    let models = models();
    let mut count = 0;
    for entry in std::fs::read_dir(dir().join("archives")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "llif") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let decoded = decode_archive(&bytes, &models, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let folder = p.with_extension("");
        let mut expected_files = 0;
        for f in walk(&folder) {
            expected_files += 1;
            let name = f
                .strip_prefix(&folder)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let (_, image) = decoded
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{}: no entry {name}", p.display()));
            assert_eq!(image, &llif::corpus::read_image_file(&f).unwrap(), "{name}");
        }
        assert_eq!(decoded.len(), expected_files, "{}", p.display());
        count += 1;
    }
    assert!(count >= 2, "golden archives missing: found {count}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
