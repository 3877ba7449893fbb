//! Model files (`llif -m FILE`) from anywhere: parsing arbitrary bytes gives a typed error or a
//! model, never a panic or an allocation beyond the file's size; a model that parses codes and
//! decodes a small image (the round-trip law).
#![no_main]
use libfuzzer_sys::fuzz_target;
use llif::testing::{encode_with_model, synthetic_image};
use llif::{decode_image, ChannelLayout, Limits, Model, ModelSet};

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_bytes(data) else {
        return;
    };
    let img = synthetic_image(5, 4, ChannelLayout::Rgba, 20, 1);
    let bytes = encode_with_model(&img, &model).expect("a valid model encodes");
    let mut set = ModelSet::empty();
    set.add("fuzzed", model);
    assert_eq!(decode_image(&bytes, &set, &Limits::default()).expect("decodes"), img);
});
