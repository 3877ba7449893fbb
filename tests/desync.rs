//! The desync trace of DESYNC.md. Its own test binary: it sets `LLIF_TRACE`, which every coder
//! loop of the process reads.

use llif::testing::{random_pixelcnn, synthetic_image, tiny_arch};
use llif::ChannelLayout;

/// The desync trace (DESYNC.md): encoder and decoder write the same lines for a good file, and
/// the traces part at the first symbol whose distribution differs when the decoder uses
/// another model.
#[test]
fn desync_traces_agree_and_find_the_first_difference() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("t");
    std::env::set_var("LLIF_TRACE", &prefix);
    let img = synthetic_image(6, 5, ChannelLayout::Rgb, 8, 3);
    let payload = llif::pixelcnn::encode_payload(&random_pixelcnn(tiny_arch(), 12), &img)
        .unwrap()
        .0;
    let decode_with = |seed: u64| {
        let m = random_pixelcnn(tiny_arch(), seed);
        let _ = llif::pixelcnn::decode_payload(&m, 6, 5, ChannelLayout::Rgb, &payload);
    };
    decode_with(12);
    std::env::remove_var("LLIF_TRACE");
    let enc = std::fs::read_to_string(prefix.with_extension("enc")).unwrap();
    let dec = std::fs::read_to_string(prefix.with_extension("dec")).unwrap();
    assert_eq!(enc.lines().count(), 6 * 5 * 3);
    assert_eq!(enc, dec);

    std::env::set_var("LLIF_TRACE", &prefix);
    decode_with(13);
    std::env::remove_var("LLIF_TRACE");
    let dec = std::fs::read_to_string(prefix.with_extension("dec")).unwrap();
    let first = enc.lines().zip(dec.lines()).position(|(a, b)| a != b);
    assert_eq!(
        first,
        Some(0),
        "another model differs from the first symbol on"
    );
}
