//! The flow family: the round-trip law from 1×1 upward for every layout, the flow as a
//! bijection on odd sizes (also when latents are pushed far outside the priors' windows), the
//! engines equal to the reference, and damaged payloads as typed errors.

use llif::flow::{Engine, FlowModel};
use llif::intnet::int8::Kernel;
use llif::testing::{
    encode_with_model, in_pool, noise_image, random_flow, random_flow_mixture, random_joint_flow,
    synthetic_image,
};
use llif::{decode_image, ChannelLayout, Error, Image, Limits, Model, ModelSet};

const LAYOUTS: [ChannelLayout; 4] = [
    ChannelLayout::Gray,
    ChannelLayout::GrayAlpha,
    ChannelLayout::Rgb,
    ChannelLayout::Rgba,
];

fn set_of(model: &Model) -> ModelSet {
    let mut models = ModelSet::empty();
    models.add("flow", model.clone());
    models
}

fn round_trip(model: &Model, img: &Image) -> Vec<u8> {
    let bytes = in_pool(1, || encode_with_model(img, model)).unwrap();
    let decoded = in_pool(2, || {
        decode_image(&bytes, &set_of(model), &Limits::default())
    });
    assert_eq!(decoded.unwrap(), *img, "{}x{}", img.width(), img.height());
    bytes
}

/// A `plane-idf-1` flow and `joint-idf-2` flows whose plane flow has fewer, as many and more
/// levels than the joint one (the extension follows the larger).
fn flows() -> Vec<Model> {
    vec![
        Model::new(random_flow(2, 2, 8, 6.0, 1)),
        Model::new(random_joint_flow(2, 2, 8, 1, 6.0, 2)),
        Model::new(random_joint_flow(2, 1, 5, 2, 6.0, 3)),
        Model::new(random_joint_flow(1, 2, 6, 3, 6.0, 4)),
    ]
}

#[test]
fn flows_round_trip_every_layout_and_size() {
    for model in flows() {
        round_trip_every_layout_and_size(&model);
    }
}

fn round_trip_every_layout_and_size(model: &Model) {
    for (i, layout) in LAYOUTS.into_iter().enumerate() {
        for (j, (w, h)) in [
            (1, 1),
            (1, 2),
            (2, 1),
            (3, 3),
            (4, 4),
            (7, 5),
            (9, 13),
            (16, 3),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = (i * 10 + j) as u64;
            round_trip(model, &synthetic_image(w, h, layout, 6, seed));
            round_trip(model, &noise_image(w, h, layout, seed));
            round_trip(
                model,
                &Image::filled(w, h, layout, [0, 255, 128][j % 3]).unwrap(),
            );
        }
    }
}

#[test]
fn mixture_priors_round_trip() {
    for k in [2, 5, 8] {
        let model = Model::new(random_flow_mixture(2, 2, 6, k, 6.0, k as u64));
        for (w, h) in [(1, 1), (6, 5), (13, 8)] {
            round_trip(
                &model,
                &synthetic_image(w, h, ChannelLayout::GrayAlpha, 4, 3),
            );
            round_trip(&model, &noise_image(w, h, ChannelLayout::Rgb, 5));
        }
    }
}

#[test]
fn every_architecture_size_round_trips() {
    for (levels, couplings) in [(1, 1), (1, 2), (3, 2), (4, 1)] {
        let model = Model::new(random_flow(levels, couplings, 5, 4.0, levels as u64));
        for (w, h) in [(1, 1), (5, 3), (17, 9)] {
            round_trip(&model, &synthetic_image(w, h, ChannelLayout::Rgb, 3, 7));
        }
    }
}

/// Couplings that translate by thousands push latents far outside the priors' 256-value
/// windows: every one of them is coded through an escape and still decodes.
#[test]
fn latents_far_outside_the_windows_round_trip() {
    let plane = Model::new(random_flow(2, 4, 6, 3000.0, 9));
    let joint = Model::new(random_joint_flow(2, 4, 6, 2, 3000.0, 10));
    for model in [plane, joint] {
        for (w, h) in [(1, 1), (3, 5), (11, 6)] {
            for layout in [ChannelLayout::Gray, ChannelLayout::Rgba] {
                round_trip(&model, &noise_image(w, h, layout, w as u64));
                round_trip(&model, &Image::filled(w, h, layout, 255).unwrap());
            }
        }
    }
}

/// The engine with every kernel of this machine, and any thread count, writes the bytes the
/// i64 reference writes.
#[test]
fn every_kernel_and_thread_count_writes_the_reference_bytes() {
    let img = synthetic_image(19, 10, ChannelLayout::Rgba, 8, 2);
    for flow in [
        random_flow(2, 2, 12, 8.0, 4),
        random_joint_flow(2, 2, 12, 2, 8.0, 5),
    ] {
        let reference = Model::new(flow.clone().with_engine(Engine::Reference));
        let want = encode_with_model(&img, &reference).unwrap();
        for kernel in Kernel::available() {
            let model = Model::new(flow.clone().with_engine(Engine::Kernel(kernel)));
            for threads in [1, 2, 3] {
                let got = in_pool(threads, || encode_with_model(&img, &model)).unwrap();
                assert_eq!(got, want, "{kernel:?}, {threads} threads");
            }
        }
    }
}

/// A joint model codes an RGB image's colour planes together: its latents differ from what
/// the same model's plane flow alone would give (the file is not a plane model's in disguise),
/// and a gray image is coded by the plane flow exactly as a plane model with those networks.
#[test]
fn a_joint_model_codes_colour_jointly_and_gray_with_its_plane_flow() {
    let joint = random_joint_flow(2, 2, 7, 2, 6.0, 11);
    let groups = joint.groups(ChannelLayout::Rgba);
    assert_eq!(groups.len(), 2);
    assert_eq!((groups[0].planes.clone(), groups[0].role), (0..3, 0));
    assert_eq!((groups[1].planes.clone(), groups[1].role), (3..4, 3));
    assert!(std::ptr::eq(groups[1].flow, joint.plane_flow()));
    let gray = joint.groups(ChannelLayout::GrayAlpha);
    assert_eq!(gray.iter().map(|g| g.role).collect::<Vec<_>>(), vec![0, 3]);
    assert!(gray
        .iter()
        .all(|g| std::ptr::eq(g.flow, joint.plane_flow())));

    // The plane flow as a model of its own (a plane-idf-1 file) codes gray images to the same
    // payload (the header's model id differs, so compare payloads), and RGB images to another
    // one: the joint model codes colour with its joint flow.
    let alone = FlowModel::from_bytes(&joint.plane_flow().to_bytes()).unwrap();
    let gray = synthetic_image(10, 7, ChannelLayout::Gray, 5, 3);
    assert_eq!(
        joint.encode_payload(&gray).unwrap(),
        alone.encode_payload(&gray).unwrap()
    );
    let rgb = synthetic_image(10, 7, ChannelLayout::Rgb, 5, 3);
    assert_ne!(
        joint.encode_payload(&rgb).unwrap().bytes,
        alone.encode_payload(&rgb).unwrap().bytes
    );
}

#[test]
fn model_files_round_trip_and_unknown_architectures_are_unsupported() {
    let joint = random_joint_flow(2, 2, 5, 3, 5.0, 6);
    let bytes = joint.to_bytes();
    let again = FlowModel::from_bytes(&bytes).unwrap();
    assert_eq!(again.to_bytes(), bytes);
    assert_eq!(
        again.plane.as_ref().unwrap().nets,
        joint.plane.as_ref().unwrap().nets
    );
    for cut in [bytes.len() - 1, bytes.len() / 2, 40] {
        assert!(FlowModel::from_bytes(&bytes[..cut]).is_err());
    }
    // Metadata edited as JSON, the body kept: a joint flow without its plane flow, a plane
    // flow with one, and a joint flow that claims one colour plane are invalid.
    let file = llif::model_file::ModelFile::parse(&bytes).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(file.meta_json).unwrap();
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut m = meta.clone();
        edit(&mut m);
        let json = serde_json::to_vec(&m).unwrap();
        FlowModel::from_bytes(&llif::model_file::ModelFile::assemble(&json, file.body))
    };
    for (what, edit) in [
        (
            "without a plane flow",
            &(|m: &mut serde_json::Value| {
                m.as_object_mut().unwrap().remove("plane");
            }) as &dyn Fn(&mut serde_json::Value),
        ),
        ("with a plane flow", &|m: &mut serde_json::Value| {
            m["flow"] = "plane-idf-1".into();
            m["colours"] = 1.into();
        }),
        ("of 1 planes", &|m: &mut serde_json::Value| {
            m["colours"] = 1.into();
        }),
    ] {
        match edited(edit) {
            Err(Error::InvalidModel(msg)) => assert!(msg.contains(what), "{what}: {msg}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(edited(&|_| {}).is_ok(), "the unedited metadata loads");

    let flow = random_flow(2, 3, 7, 5.0, 3);
    let bytes = flow.to_bytes();
    let again = FlowModel::from_bytes(&bytes).unwrap();
    assert_eq!(again.to_bytes(), bytes);
    assert_eq!(again.nets, flow.nets);
    let text = String::from_utf8_lossy(&bytes).replace("plane-idf-1", "plane-idf-9");
    let newer = FlowModel::from_bytes(text.as_bytes());
    assert!(
        matches!(newer, Err(Error::UnsupportedFamily(_))),
        "{newer:?}"
    );
    // A newer architecture need not have this one's fields.
    let meta = br#"{"family":"flow","name":"future","flow":"plane-idf-2","depth":9}"#;
    let newer = FlowModel::from_bytes(&llif::model_file::ModelFile::assemble(meta, &[1, 2, 3]));
    assert!(
        matches!(newer, Err(Error::UnsupportedFamily(_))),
        "{newer:?}"
    );
    for cut in [bytes.len() - 1, bytes.len() / 2, 40] {
        assert!(FlowModel::from_bytes(&bytes[..cut]).is_err());
    }
}

/// Every truncation and many bit flips of a flow file give a typed error (or, rarely, the
/// right picture), never a panic or a wrong picture.
#[test]
fn damaged_flow_files_are_typed_errors() {
    damaged_files_are_typed_errors(Model::new(random_flow(2, 2, 6, 6.0, 8)));
    damaged_files_are_typed_errors(Model::new(random_joint_flow(2, 2, 6, 1, 6.0, 8)));
}

fn damaged_files_are_typed_errors(model: Model) {
    let models = set_of(&model);
    let img = synthetic_image(9, 7, ChannelLayout::Rgb, 5, 1);
    let bytes = encode_with_model(&img, &model).unwrap();
    for cut in 0..bytes.len() {
        assert!(decode_image(&bytes[..cut], &models, &Limits::default()).is_err());
    }
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        if let Ok(decoded) = decode_image(&b, &models, &Limits::default()) {
            assert_eq!(decoded, img, "bit {i} flipped decodes to another picture");
        }
    }
}

/// SPEC.md bounds a first layer by |bias| + |role bias| + 255·Σ|w|, not by the sum of the
/// biases: opposite biases that cancel do not make a layer loadable.
#[test]
fn role_biases_count_in_the_accumulator_bound_on_their_own() {
    use llif::flow::model::{FlowNet, NetKind, ROLES};
    use llif::intnet::int8::{U8Linear, WeightBits};
    let layer = |inputs: usize, outputs: usize, bias: i32, clamp: (i32, i32)| {
        let w = vec![1; inputs * outputs];
        let (m, s) = (vec![1; outputs], vec![0; outputs]);
        U8Linear::new(
            inputs,
            WeightBits::Eight,
            &w,
            vec![bias; outputs],
            m,
            s,
            clamp,
        )
        .unwrap()
    };
    let net = |bias: i32, role_bias: i32| {
        let first = layer(9, 2, bias, (0, 255));
        let layers = [first, layer(2, 2, 0, (0, 255)), layer(18, 1, 0, (-9, 9))];
        FlowNet::new(
            NetKind::Coupling,
            (1, 1),
            layers,
            vec![vec![role_bias; 2]; ROLES],
        )
    };
    assert!(net(1 << 29, -(1 << 29)).is_ok());
    assert!(matches!(
        net(1 << 30, -(1 << 30)),
        Err(Error::InvalidModel(_))
    ));
}
