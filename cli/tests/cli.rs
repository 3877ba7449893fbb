//! The `llif` program, run as a user runs it: happy paths, usage errors, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn llif(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llif"))
        .args(args)
        .output()
        .expect("llif runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A 32x32 RGB test picture: smooth with some texture, so a model does better than 8 bits.
fn rgb32() -> image::RgbImage {
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([
            (x * 6 + y) as u8,
            (y * 5 + (x * y) % 9) as u8,
            (100 + x + y) as u8,
        ])
    })
}

fn write_png(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    rgb32().save(&p).unwrap();
    p
}

/// Compresses `input`, decompresses it to PNG, and checks every sample against `expected`.
fn round_trip(dir: &Path, input: &Path, expected: &image::RgbaImage, extra: &[&str]) -> usize {
    let llif_file = dir.join("rt.llif");
    let back = dir.join("rt.png");
    let mut args = vec!["compress", path(input), "-o", path(&llif_file), "-f"];
    args.extend_from_slice(extra);
    let o = llif(&args);
    assert!(o.status.success(), "compress: {}", stderr(&o));
    let o = llif(&["decompress", path(&llif_file), "-o", path(&back), "-f"]);
    assert!(o.status.success(), "decompress: {}", stderr(&o));
    let decoded = image::open(&back).unwrap().to_rgba8();
    assert_eq!(
        &decoded,
        expected,
        "{} changed in the round trip",
        input.display()
    );
    std::fs::metadata(&llif_file).unwrap().len() as usize
}

#[test]
fn version_and_help_succeed() {
    for args in [&["--version"][..], &["--help"], &["compress", "--help"]] {
        let o = llif(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn model_by_family_name_codes_with_the_default_pixelcnn() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_png(dir.path(), "a.png");
    let expected = image::open(&input).unwrap().to_rgba8();
    let by_family = round_trip(dir.path(), &input, &expected, &["--model", "pixelcnn"]);
    let info = llif(&["info", path(&dir.path().join("rt.llif"))]);
    let text = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(text.contains("pixelcnn codec"), "{text}");
    let by_default = round_trip(dir.path(), &input, &expected, &["--model", "default"]);
    assert_eq!(by_family, by_default);
    assert!(by_family < 32 * 32 * 3, "a smooth picture should compress");
}

#[test]
fn a_family_without_a_shipped_model_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_png(dir.path(), "a.png");
    let o = llif(&["compress", path(&input), "--model", "flow"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("ships no flow model"), "{}", stderr(&o));
}

/// The palette picture that used to cost 8.2 bits a sample now costs at most the stored size
/// plus the header.
#[test]
fn a_palette_png_costs_at_most_stored_plus_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("palette.png");
    {
        let file = std::fs::File::create(&p).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 32, 32);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        // 16 saturated colours that a photo-trained model finds surprising, in a noisy layout.
        let palette: Vec<u8> = (0..16u32)
            .flat_map(|i| {
                [
                    (i * 97 % 256) as u8,
                    (i * 53 % 256) as u8,
                    (i * 211 % 256) as u8,
                ]
            })
            .collect();
        enc.set_palette(palette);
        let mut w = enc.write_header().unwrap();
        let idx: Vec<u8> = (0..32 * 32u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 28) as u8)
            .collect();
        w.write_image_data(&idx).unwrap();
    }
    let expected = image::open(&p).unwrap().to_rgba8();
    let size = round_trip(dir.path(), &p, &expected, &[]);
    let header = 10; // stored header of a 32x32 image: magic, version, codec, 1+1 LEB128, check
    assert!(
        size <= 32 * 32 * 3 + header,
        "{size} bytes is more than stored ({})",
        32 * 32 * 3 + header
    );
}

#[test]
fn webp_lossless_and_gif_inputs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = rgb32();
    let webp = dir.path().join("a.webp");
    rgb.save(&webp).unwrap(); // the image crate writes lossless WebP
    round_trip(
        dir.path(),
        &webp,
        &image::DynamicImage::ImageRgb8(rgb.clone()).to_rgba8(),
        &[],
    );
    let gif = dir.path().join("a.gif");
    // GIF holds at most 256 colours: quantize the picture to a 4x4x4 cube first.
    let coarse = image::RgbImage::from_fn(32, 32, |x, y| {
        let p = rgb.get_pixel(x, y).0;
        image::Rgb(p.map(|v| v & 0xC0))
    });
    coarse.save(&gif).unwrap();
    let expected = image::open(&gif).unwrap().to_rgba8();
    round_trip(dir.path(), &gif, &expected, &[]);
}

#[test]
fn jpeg_input_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("photo.jpg");
    std::fs::write(
        &p,
        [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0],
    )
    .unwrap();
    let o = llif(&["compress", path(&p)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("JPEG input is refused"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("photo.llif").exists());
}

#[test]
fn a_folder_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = llif(&["compress", path(dir.path())]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("is a folder"), "{err}");
}

/// A file of a family this build lacks (flow, code 2) exits with the "unsupported" code.
#[test]
fn an_unknown_family_exits_unsupported_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_png(dir.path(), "a.png");
    let stored = dir.path().join("s.llif");
    let o = llif(&[
        "compress",
        path(&input),
        "-m",
        "stored",
        "-o",
        path(&stored),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut b = std::fs::read(&stored).unwrap();
    b[3] = (b[3] & 3) | (2 << 2);
    b.splice(4..4, [1, 2, 3, 4]);
    let flow = dir.path().join("flow.llif");
    std::fs::write(&flow, &b).unwrap();
    let o = llif(&[
        "decompress",
        path(&flow),
        "-o",
        path(&dir.path().join("f.png")),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unsupported codec family flow"),
        "{}",
        stderr(&o)
    );
    b[2] = 9; // a newer format version
    std::fs::write(&flow, &b).unwrap();
    let o = llif(&["info", path(&flow)]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "info reports per file, then fails the batch"
    );
    assert!(
        stderr(&o).contains("unsupported llif format version 9"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn models_and_info_list_what_is_built_in() {
    for args in [&["models"][..], &["info"]] {
        let o = llif(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(text.contains("pixelcnn-r3h192-v3"), "{text}");
        assert!(text.contains("5faaa029"), "{text}");
        assert!(text.contains("(default)"), "{text}");
    }
}
