//! Properties over arbitrary inputs (proptest): the coding layer's distributions are always
//! valid, headers round-trip, and the integer engines agree.

use llif::coding::{
    validate_cdf, Categorical, LogisticMixture, QuantizedCdf, RangeDecoder, RangeEncoder,
};
use llif::format::{assemble, CodecFamily, Header, Limits, ModelId, FORMAT_VERSION};
use llif::ChannelLayout;
use proptest::prelude::*;

fn layout() -> impl Strategy<Value = ChannelLayout> {
    prop_oneof![
        Just(ChannelLayout::Gray),
        Just(ChannelLayout::GrayAlpha),
        Just(ChannelLayout::Rgb),
        Just(ChannelLayout::Rgba)
    ]
}

proptest! {
    #[test]
    fn any_network_output_gives_a_valid_distribution(
        params in prop::collection::vec((any::<i32>(), any::<i32>(), any::<i32>()), 1..=16)
    ) {
        let l: Vec<i32> = params.iter().map(|p| p.0).collect();
        let m: Vec<i32> = params.iter().map(|p| p.1).collect();
        let s: Vec<i32> = params.iter().map(|p| p.2).collect();
        let d = LogisticMixture::from_params(&l, &m, &s);
        prop_assert!(validate_cdf(&d).is_ok());
        for x in [0u32, 1, 127, 128, 254, 255] {
            prop_assert_eq!(d.quantile(d.cdf(x)), x);
        }
    }

    #[test]
    fn categorical_from_any_weights_is_valid(w in prop::collection::vec(any::<u64>(), 1..300)) {
        prop_assert!(validate_cdf(&Categorical::from_weights(&w).unwrap()).is_ok());
    }

    #[test]
    fn headers_round_trip(layout in layout(), stored in any::<bool>(), id in any::<u32>(), w in 1u32.., h in 1u32.., payload in prop::collection::vec(any::<u8>(), 0..20)) {
        let family = if stored { CodecFamily::Stored } else { CodecFamily::PixelCnn };
        let header = Header { version: FORMAT_VERSION, family, layout, model: (!stored).then_some(ModelId(id)), width: w, height: h, check: 0 };
        let bytes = assemble(header, &[], &payload);
        if w as u128 * h as u128 * layout.channels() as u128 > isize::MAX as u128 {
            // Expressible in a header, but more samples than a machine can address.
            prop_assert!(matches!(Header::parse(&bytes, &Limits::none()), Err(llif::Error::LimitExceeded(_))));
            return Ok(());
        }
        let parsed = Header::parse(&bytes, &Limits::none()).unwrap();
        prop_assert_eq!(parsed.header.layout, layout);
        prop_assert_eq!(parsed.header.family, family);
        prop_assert_eq!(parsed.header.model, header.model);
        prop_assert_eq!((parsed.header.width, parsed.header.height), (w, h));
        prop_assert_eq!(parsed.payload, &payload[..]);
    }

    #[test]
    fn range_coder_round_trips_any_symbols(
        items in prop::collection::vec((any::<u8>(), -100_000i32..100_000, -400_000i32..400_000), 0..200)
    ) {
        let dists: Vec<LogisticMixture> = items.iter().map(|&(_, m, s)| LogisticMixture::from_params(&[0], &[m], &[s])).collect();
        let mut enc = RangeEncoder::new();
        for ((x, _, _), d) in items.iter().zip(&dists) {
            enc.encode(*x as u32, d).unwrap();
        }
        let bytes = enc.finish();
        let mut dec = RangeDecoder::new(&bytes).unwrap();
        for ((x, _, _), d) in items.iter().zip(&dists) {
            prop_assert_eq!(dec.decode(d).unwrap(), *x as u32);
        }
        prop_assert!(dec.finish().is_ok());
    }
}
