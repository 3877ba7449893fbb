//! Choosing a model per image: a model's estimate of what an image costs (a teacher-forced
//! pass over a grid of its pixels), and the choice among candidates the encoder makes with it.

use llif::testing::{
    in_pool, noise_image, random_pixelcnn, random_pixelcnn8, synthetic_image, tiny_arch,
};
use llif::{encode_image_with_stats, ChannelLayout, Image, Model, ModelChoice, ModelSet};

fn models() -> Vec<Model> {
    vec![
        Model::new(random_pixelcnn(tiny_arch(), 3)),
        Model::new(random_pixelcnn8(tiny_arch(), 4)),
        Model::new(random_pixelcnn(tiny_arch(), 5)),
    ]
}

fn images() -> Vec<Image> {
    let mut v = Vec::new();
    for layout in [ChannelLayout::Gray, ChannelLayout::Rgb] {
        for (w, h) in [(1, 1), (7, 5), (17, 12), (64, 64)] {
            v.push(synthetic_image(w, h, layout, 6, w as u64));
            v.push(noise_image(w, h, layout, h as u64));
        }
    }
    v
}

/// Where the grid covers every pixel (64x64 and smaller) and the model has no adaptive stage,
/// the estimate is the encoder's own ideal code length, up to the integer log table's rounding:
/// it sees the distributions the coder codes with.
#[test]
fn an_estimate_over_every_pixel_is_the_ideal_code_length() {
    for model in models() {
        for img in images() {
            let est = model
                .family_model()
                .estimate_cost(&img)
                .unwrap()
                .expect("PixelCNNs estimate");
            assert_eq!(est.samples, img.samples() as u64);
            let ideal = encode_image_with_stats(&img, &model)
                .unwrap()
                .ideal_bits
                .unwrap();
            let per_sample = (est.cost_q16 as f64 / 65536.0 - ideal) / img.samples() as f64;
            assert!(
                per_sample.abs() < 2e-3,
                "{}x{} {}: estimate {} bits, ideal {ideal}",
                img.width(),
                img.height(),
                img.layout(),
                est.cost_q16 as f64 / 65536.0
            );
        }
    }
}

/// The choice is the candidate with the lowest estimate per sample (the first on ties), and
/// the same on any thread count; a choice of one model is that model.
#[test]
fn the_choice_is_the_lowest_estimate_on_any_thread_count() {
    let candidates = models();
    let choice = ModelChoice::new(candidates.clone()).unwrap();
    let mut picked = vec![0usize; candidates.len()];
    for img in images() {
        let costs: Vec<u64> = candidates
            .iter()
            .map(|m| {
                m.family_model()
                    .estimate_cost(&img)
                    .unwrap()
                    .unwrap()
                    .cost_q16
            })
            .collect();
        let best = (0..costs.len()).min_by_key(|&i| (costs[i], i)).unwrap();
        let one = in_pool(1, || choice.choose(&img).unwrap().id());
        let two = in_pool(2, || choice.choose(&img).unwrap().id());
        assert_eq!(one, two, "the choice depends on the thread count");
        assert_eq!(one, candidates[best].id(), "costs {costs:?}");
        picked[best] += 1;
    }
    assert!(
        picked.iter().filter(|&&n| n > 0).count() > 1,
        "the test images should not all pick one model: {picked:?}"
    );
    let single = ModelChoice::from(candidates[2].clone());
    assert_eq!(
        single.choose(&images()[0]).unwrap().id(),
        candidates[2].id()
    );
    assert!(ModelChoice::new(Vec::new()).is_none());
}

/// `default` and a family name let the encoder choose among the first model of the family and
/// the built-in models marked for it; a model's name or id means that model only.
#[test]
fn default_and_family_keys_give_a_choice_a_model_name_one_model() {
    let set = ModelSet::builtin();
    let marked: Vec<&str> = llif::codec::BUILTIN_MODELS[1..]
        .iter()
        .filter(|b| b.chosen_per_image)
        .map(|b| b.name)
        .collect();
    for key in ["default", "pixelcnn"] {
        let choice = set.choice(key).unwrap();
        let names: Vec<String> = choice.models().iter().map(Model::name).collect();
        assert_eq!(names[0], llif::codec::BUILTIN_MODELS[0].name);
        assert_eq!(&names[1..], &marked[..], "{key}");
    }
    let named = llif::codec::BUILTIN_MODELS.last().unwrap().name;
    assert_eq!(set.choice(named).unwrap().models().len(), 1);
    assert!(set.choice("no-such-model").is_none());
}

/// In a set of given models: `default` and the family's name give the first model and, after
/// it, the models added to be chosen per image, in order (never the first twice, never a model
/// of another family); a model's own name gives only it.
#[test]
fn models_added_to_be_chosen_per_image_join_the_default_choice() {
    let [a, b, c] = [3, 4, 5].map(|seed| Model::new(random_pixelcnn(tiny_arch(), seed)));
    let flow = Model::new(llif::testing::random_flow(1, 1, 4, 2.0, 1));
    let mut set = ModelSet::empty();
    set.add("a", a.clone());
    set.add_chosen_per_image("flow", flow.clone());
    set.add("b", b.clone());
    set.add_chosen_per_image("c", c.clone());
    set.add_chosen_per_image("a-again", a.clone());
    let ids = |key: &str| -> Vec<_> {
        let choice = set.choice(key).unwrap();
        choice.models().iter().map(Model::id).collect()
    };
    assert_eq!(ids("default"), vec![a.id(), c.id()]);
    assert_eq!(ids("pixelcnn"), vec![a.id(), c.id()]);
    assert_eq!(ids("b"), vec![b.id()]);
    assert_eq!(ids("c"), vec![c.id()]);
    // The family name finds the flow, which is not offered twice.
    assert_eq!(ids("flow"), vec![flow.id()]);
}
