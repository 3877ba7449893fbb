//! The `llif` program, run as a user runs it: happy paths, usage errors, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The program under test: this package's `llif`, or `LLIF_TEST_BIN` (to run these tests
/// against another build, e.g. an older release, and see which faults it still has).
fn exe() -> String {
    std::env::var("LLIF_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_llif").to_string())
}

fn llif(args: &[&str]) -> Output {
    Command::new(exe()).args(args).output().expect("llif runs")
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

/// `a.png` and its `a.llif` in `dir`.
fn compressed_png(dir: &Path) -> (PathBuf, PathBuf) {
    let input = write_png(dir, "a.png");
    let f = dir.join("a.llif");
    let o = llif(&["compress", path(&input), "-o", path(&f)]);
    assert!(o.status.success(), "{}", stderr(&o));
    (input, f)
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
    let o = llif(&["compress", path(&input), "--model", "vae"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("ships no vae model"), "{}", stderr(&o));
}

/// `--model flow` picks the shipped flow, and its file round-trips through the program.
#[test]
fn the_flow_family_round_trips_with_its_shipped_model() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_png(dir.path(), "a.png");
    let expected = image::open(&input).unwrap().to_rgba8();
    let size = round_trip(dir.path(), &input, &expected, &["--model", "flow"]);
    let info = llif(&["info", path(&dir.path().join("rt.llif"))]);
    let text = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(text.contains("flow codec"), "{text}");
    assert!(size < 32 * 32 * 3, "a smooth picture should compress");
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

/// The pixels of an image file as RGBA, for comparing whatever the formats.
fn rgba_of(p: &Path) -> image::RgbaImage {
    image::open(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .to_rgba8()
}

/// A folder with sub-folders, gray, RGB and RGBA images in PNG, PGM and BMP, and a text file.
fn image_folder(root: &Path) -> PathBuf {
    let dir = root.join("set");
    std::fs::create_dir_all(dir.join("cats/small")).unwrap();
    rgb32().save(dir.join("a.png")).unwrap();
    let gray = image::GrayImage::from_fn(7, 5, |x, y| image::Luma([(x * 30 + y * 7) as u8]));
    gray.save(dir.join("cats/g.pgm")).unwrap();
    let rgba = image::RgbaImage::from_fn(3, 9, |x, y| {
        image::Rgba([x as u8 * 80, y as u8 * 20, 9, (x * y * 20) as u8])
    });
    rgba.save(dir.join("cats/small/t.png")).unwrap();
    image::RgbImage::from_fn(4, 4, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .save(dir.join("b.bmp"))
        .unwrap();
    std::fs::write(dir.join("notes.txt"), b"not an image").unwrap();
    dir
}

#[test]
fn a_folder_round_trips_as_one_archive_of_the_same_names() {
    let root = tempfile::tempdir().unwrap();
    let dir = image_folder(root.path());
    let o = llif(&["compress", path(&dir)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("4 images"), "{}", stderr(&o));
    let archive = root.path().join("set.llif");
    let o = llif(&["info", "--verify", path(&archive)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 images (named)"));
    let out = root.path().join("back");
    let o = llif(&["decompress", path(&archive), "-o", path(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (original, back) in [
        ("a.png", "a.png"),
        ("cats/g.pgm", "cats/g.pgm"),
        ("cats/small/t.png", "cats/small/t.png"),
        ("b.bmp", "b.png"),
    ] {
        assert_eq!(
            rgba_of(&dir.join(original)),
            rgba_of(&out.join(back)),
            "{original}"
        );
    }
    assert!(!out.join("notes.txt").exists());
    // Again: every target exists, so nothing is written without --force; with it, all is.
    let o = llif(&["decompress", path(&archive), "-o", path(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = llif(&["decompress", path(&archive), "-o", path(&out), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Over the image-count limit: refused as such, before decoding.
    let o = llif(&[
        "decompress",
        path(&archive),
        "-o",
        path(&out),
        "-f",
        "--max-images",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
}

#[test]
fn an_archive_writes_into_no_symlinked_folder() {
    let root = tempfile::tempdir().unwrap();
    let dir = image_folder(root.path());
    let archive = root.path().join("set.llif");
    assert!(llif(&["compress", path(&dir), "-o", path(&archive)])
        .status
        .success());
    let out = root.path().join("out");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("cats")).unwrap();
    let o = llif(&["decompress", path(&archive), "-o", path(&out), "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("symlink"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(
        !out.join("a.png").exists(),
        "nothing is written when a target is refused"
    );
}

#[test]
fn an_archive_with_a_damaged_entry_extracts_nothing() {
    // Regression (review of session 7): entries decoded and written batch by batch left the
    // batches before a damaged entry on disk. 260 entries make two batches (256 + 4).
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("many");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..260u32 {
        image::GrayImage::from_fn(2, 2, |x, y| image::Luma([(i + 3 * x + 5 * y) as u8]))
            .save(dir.join(format!("sub/{i:03}.png")))
            .unwrap();
    }
    let archive = root.path().join("many.llif");
    let o = llif(&["compress", path(&dir), "-o", path(&archive)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&archive, &bytes).unwrap();
    let out = root.path().join("out");
    let o = llif(&["decompress", path(&archive), "-o", path(&out)]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("sub/259.png"), "{}", stderr(&o));
    assert!(
        !out.exists(),
        "the folders and files of the first batch are removed again"
    );
    // A folder that existed stays, and only what this run created goes.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("mine.txt"), b"keep").unwrap();
    let o = llif(&["decompress", path(&archive), "-o", path(&out)]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["mine.txt"]);
}

#[test]
fn archives_need_a_folder_or_file_name_they_can_have() {
    let root = tempfile::tempdir().unwrap();
    let dir = image_folder(root.path());
    // `-o -` writes the archive to stdout.
    let o = llif(&["compress", path(&dir), "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout[..3], [0x4C, 0xF1, 0x41]);
    let no_ext = root.path().join("set-archive");
    std::fs::write(&no_ext, &o.stdout).unwrap();
    // Its folder would be its own path.
    let o = llif(&["decompress", path(&no_ext)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("-o FOLDER"), "{}", stderr(&o));
    // Images of an archive do not go to stdout.
    let o = llif(&["decompress", path(&no_ext), "-o", "-"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // `.` has no name to give its archive.
    let o = Command::new(exe())
        .args(["compress", "."])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!dir.join("..llif").exists() && !root.path().join("..llif").exists());
    // `info` reads the index alone, and still notices a file cut short.
    let o = llif(&["info", path(&no_ext)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 images (named)"));
    let bytes = std::fs::read(&no_ext).unwrap();
    std::fs::write(&no_ext, &bytes[..bytes.len() - 1]).unwrap();
    let o = llif(&["info", path(&no_ext)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
}

#[test]
fn a_cifar_batch_comes_back_as_png_files_named_by_index() {
    let root = tempfile::tempdir().unwrap();
    let batch = root.path().join("mini.bin");
    let mut bytes = Vec::new();
    for r in 0..3u32 {
        bytes.push(r as u8); // the label, which an archive does not keep
        bytes.extend((0..3072u32).map(|i| ((i * (r + 3)) % 251) as u8));
    }
    std::fs::write(&batch, &bytes).unwrap();
    let o = llif(&["compress", path(&batch)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = llif(&["decompress", path(&root.path().join("mini.llif"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    for r in 0..3usize {
        let png = root.path().join("mini").join(format!("{r:05}.png"));
        let img = image::open(&png).unwrap().to_rgb8();
        let record = &bytes[r * 3073 + 1..(r + 1) * 3073];
        for (i, p) in img.pixels().enumerate() {
            assert_eq!(
                p.0,
                [record[i], record[1024 + i], record[2048 + i]],
                "image {r} pixel {i}"
            );
        }
    }
}

#[test]
fn an_empty_folder_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = llif(&[
        "compress",
        path(dir.path()),
        "-o",
        path(&dir.path().join("x.llif")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("no image files"), "{err}");
}

/// A file of a family this build lacks (vae, code 3) exits with the "unsupported" code.
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
    // Family 3 (vae): not implemented by this build.
    b[3] = (b[3] & 3) | (3 << 2);
    b.splice(4..4, [1, 2, 3, 4]);
    let vae = dir.path().join("vae.llif");
    std::fs::write(&vae, &b).unwrap();
    let o = llif(&[
        "decompress",
        path(&vae),
        "-o",
        path(&dir.path().join("f.png")),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unsupported codec family vae"),
        "{}",
        stderr(&o)
    );
    b[2] = 9; // a newer format version
    std::fs::write(&vae, &b).unwrap();
    let o = llif(&["info", path(&vae)]);
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

// ---- faults an outside probe found (issue 9): each fails on the code before the fix --------

/// A stored `.llif` header (no payload) for a `w`×`h` image of layout code `layout`.
fn stored_header(w: u32, h: u32, layout: u8) -> Vec<u8> {
    fn leb(mut v: u32, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut b = vec![0x4C, 0xF1, 1, layout];
    leb(w, &mut b);
    leb(h, &mut b);
    b.extend_from_slice(&[0, 0, 0, 0]);
    b
}

fn no_panic(o: &Output) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(o.status.code(), Some(101), "{err}");
}

#[test]
fn info_verify_applies_the_limits_to_huge_headers() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("huge.llif");
    // 4294967295 x 4294967295 RGB: used to panic with "capacity overflow".
    std::fs::write(&f, stored_header(u32::MAX, u32::MAX, 2)).unwrap();
    let o = llif(&["info", "--verify", path(&f)]);
    no_panic(&o);
    assert!(stderr(&o).contains("limit exceeded"), "{}", stderr(&o));
    // 100000 x 100000: used to abort on a 30 GB allocation.
    std::fs::write(&f, stored_header(100_000, 100_000, 2)).unwrap();
    let o = llif(&["info", "--verify", path(&f)]);
    no_panic(&o);
    assert!(stderr(&o).contains("limit exceeded"), "{}", stderr(&o));
}

/// 2^31 x 2^31 RGBA has 2^64 samples: the product used to wrap to 0, and the file was
/// "verified" and written out as an invalid PNG with exit 0.
#[test]
fn a_sample_count_that_overflows_is_refused_even_with_limits_raised() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("wrap.llif");
    std::fs::write(&f, stored_header(1 << 31, 1 << 31, 3)).unwrap();
    let raise = [
        "--max-side",
        "4294967295",
        "--max-pixels",
        "18446744073709551615",
    ];
    let mut args = vec!["info", "--verify", path(&f)];
    args.extend_from_slice(&raise);
    let o = llif(&args);
    no_panic(&o);
    assert_ne!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let out = dir.path().join("wrap.png");
    let mut args = vec!["decompress", path(&f), "-o", path(&out)];
    args.extend_from_slice(&raise);
    let o = llif(&args);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(!out.exists());
}

/// A 16-byte header-only pixelcnn file of 65535x1024 used to be decoded for minutes; the default
/// limits now refuse it at once.
#[test]
fn a_tiny_file_claiming_a_huge_image_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tiny.llif");
    let mut b = stored_header(65_535, 1024, 2);
    b[3] |= 1 << 2; // pixelcnn
    b.splice(4..4, 0x29aaaf5fu32.to_le_bytes()); // the default model's id, 5faaa029
    std::fs::write(&f, &b).unwrap();
    let t = std::time::Instant::now();
    let o = llif(&[
        "decompress",
        path(&f),
        "-o",
        path(&dir.path().join("t.png")),
    ]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
}

/// The magic and header are read first: a gigabyte of zeros on stdin fails after a few bytes.
#[test]
fn garbage_on_stdin_is_refused_after_the_magic() {
    use std::io::Write;
    let mut child = Command::new(exe())
        .args(["decompress", "-", "-o", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0usize;
    // Up to 1 GiB; the reader stops reading long before, which ends this loop with EPIPE.
    while written < 1 << 30 {
        if stdin.write_all(&zeros).is_err() {
            break;
        }
        written += zeros.len();
    }
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(written < 1 << 30, "the whole input was read");
    let o = llif(&["info", "/dev/zero"]);
    assert!(stderr(&o).contains("not an llif file"), "{}", stderr(&o));
}

/// `decompress` writes only beside its output: a missing $TMPDIR does not matter.
#[test]
fn decompress_does_not_need_tmpdir() {
    let dir = tempfile::tempdir().unwrap();
    let (_, f) = compressed_png(dir.path());
    for out in ["b.png", "b.ppm"] {
        let o = Command::new(exe())
            .args(["decompress", path(&f), "-o", path(&dir.path().join(out))])
            .env("TMPDIR", dir.path().join("no-such-folder"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{out}: {}", stderr(&o));
    }
}

/// `compress` refuses what `decompress` would refuse with the same (default) limits.
#[test]
fn compress_applies_the_decoder_limits() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wide.png");
    image::GrayImage::from_pixel(66_000, 1, image::Luma([7]))
        .save(&p)
        .unwrap();
    let o = llif(&["compress", path(&p)]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(!dir.path().join("wide.llif").exists());
    // Raised on both sides, it round-trips.
    let f = dir.path().join("w.llif");
    let o = llif(&[
        "compress",
        path(&p),
        "-o",
        path(&f),
        "--max-side",
        "70000",
        "-m",
        "stored",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = llif(&[
        "decompress",
        path(&f),
        "-o",
        path(&dir.path().join("w.png")),
    ]);
    assert_eq!(o.status.code(), Some(5), "default limits refuse it again");
    let o = llif(&[
        "decompress",
        path(&f),
        "-o",
        path(&dir.path().join("w.png")),
        "--max-side",
        "70000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `--force` replaces regular files only: never a symlink (nor what it points to) or a device.
#[test]
fn force_never_replaces_a_symlink_or_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_png(dir.path(), "a.png");
    let target = dir.path().join("precious.txt");
    std::fs::write(&target, b"keep me").unwrap();
    let link = dir.path().join("link.llif");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = llif(&["compress", path(&input), "-o", path(&link), "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    let o = llif(&["compress", path(&input), "-o", "/dev/null", "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device_like());
    // A regular file is replaced with --force.
    let out = dir.path().join("a.llif");
    std::fs::write(&out, b"old").unwrap();
    let o = llif(&["compress", path(&input), "-o", path(&out), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

trait CharDevice {
    fn is_char_device_like(&self) -> bool;
}

impl CharDevice for std::fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

/// A closed stdout ends each command quietly: no panic, no backtrace.
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (input, f) = compressed_png(dir.path());
    let runs: Vec<Vec<&str>> = vec![
        vec!["info", path(&f), path(&f)],
        vec!["info", "--verify", path(&f)],
        vec!["models"],
        vec!["info"],
        vec!["decompress", path(&f), "-o", "-"],
        vec!["compress", path(&input), "-o", "-"],
        vec!["bench", "--image", path(&input), "--codecs", "png"],
        vec!["--help"],
    ];
    for args in runs {
        let mut child = Command::new(exe())
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // closed before the program writes
        let o = child.wait_with_output().unwrap();
        no_panic(&o);
        assert!(stderr(&o).trim().is_empty(), "{args:?}: {}", stderr(&o));
    }
}

/// SIGTERM or SIGINT while the output is being written leaves no `.llif-tmp-*` file beside it.
/// The program is held (`LLIF_TEST_WRITE_PAUSE_MS`) with its temporary file written, and
/// signalled at that moment.
#[test]
fn a_signal_during_the_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_png(dir.path(), "a.png");
    let temps = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".llif-tmp-"))
            .collect()
    };
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let out = dir.path().join(format!("o{sig}.llif"));
        let mut child = Command::new(exe())
            .args(["compress", path(&input), "-o", path(&out)])
            .env("LLIF_TEST_WRITE_PAUSE_MS", "20000")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while temps(dir.path()).is_empty() {
            assert!(start.elapsed().as_secs() < 20, "no temporary file appeared");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(sig), "dies of the signal it got");
        assert!(
            temps(dir.path()).is_empty(),
            "signal {sig}: {:?}",
            temps(dir.path())
        );
        assert!(!out.exists());
    }
}

#[test]
fn an_archive_needing_a_model_this_build_lacks_is_refused_from_its_index() {
    // The golden archive's entries use test models that are not built in.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden/archives/v1-archive-named-mixed.llif");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("x");
    let o = llif(&["decompress", path(&golden), "-o", path(&target)]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown model"), "{}", stderr(&o));
    assert!(stderr(&o).contains("entry a.png"), "{}", stderr(&o));
    assert!(!target.exists());
}
