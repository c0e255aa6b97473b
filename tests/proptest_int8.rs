//! Random corruption of the int8 model loader (`quant::file::decode`), as
//! `tests/proptest_parsers.rs` does for the float one: valid files read back exactly, any
//! truncation is an error naming the file, and a flipped byte never panics (neither in the
//! loader nor in a forward pass of what it accepts) nor changes the network's shape.

use std::path::Path;

use mnist_mlp::model::Arch;
use mnist_mlp::quant::file::{decode, encode};
use mnist_mlp::quant::{QLayer, QModel, QWorkspace, WeightScales};
use proptest::prelude::*;
use proptest::sample::Index;

/// A small int8 network: 1 to 3 layers of 1 to 6 units, random weights, biases and scales.
fn small_model() -> impl Strategy<Value = QModel> {
    (
        prop::collection::vec(1usize..7, 2..5),
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(sizes, relu, per_channel, seed)| {
            let mut rng = mnist_mlp::rng::Rng::new(seed);
            let scales = if per_channel {
                WeightScales::PerChannel
            } else {
                WeightScales::PerTensor
            };
            let last = sizes.len() - 2;
            let layers = sizes
                .windows(2)
                .enumerate()
                .map(|(l, w)| {
                    let (i, o) = (w[0], w[1]);
                    let n = if per_channel { o } else { 1 };
                    QLayer {
                        inputs: i,
                        outputs: o,
                        weight: (0..i * o).map(|_| rng.below(255) as i8).collect(),
                        weight_scale: (0..n).map(|_| 0.001 + rng.uniform() as f32 * 0.1).collect(),
                        bias: (0..o).map(|_| rng.below(20_001) as i32 - 10_000).collect(),
                        output_scale: 0.01 + rng.uniform() as f32,
                        output_zero_point: rng.below(256) as i32 - 128,
                        relu: relu && l < last,
                    }
                })
                .collect();
            let arch = if relu { Arch::Relu } else { Arch::Seed };
            QModel::new(arch, scales, layers).expect("a valid random model")
        })
}

/// Runs one row of mid-grey pixels through `m`: must not panic, whatever the values.
fn forward(m: &QModel) {
    let mut ws = QWorkspace::new(m, 1);
    m.forward(&mut ws, &vec![200u8; m.input()], 1);
    assert_eq!(ws.probabilities().len(), m.classes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn int8_valid_files_load_and_any_truncation_is_an_error(m in small_model(), cut in any::<Index>()) {
        let name = Path::new("prop-int8.safetensors");
        let bytes = encode(&m, &[]);
        let back = decode(name, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.model.layers(), m.layers());
        let e = decode(name, &bytes[..cut.index(bytes.len())]).unwrap_err().to_string();
        prop_assert!(e.contains("prop-int8.safetensors"), "{}", e);
    }

    #[test]
    fn int8_a_flipped_byte_never_panics_nor_changes_the_shape(
        m in small_model(),
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let name = Path::new("prop-int8.safetensors");
        let mut bytes = encode(&m, &[]);
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        match decode(name, &bytes) {
            Ok(back) => {
                let shape = |q: &QModel| q.layers().iter().map(|l| (l.inputs, l.outputs)).collect::<Vec<_>>();
                prop_assert_eq!(shape(&back.model), shape(&m));
                forward(&back.model);
            }
            Err(e) => prop_assert!(e.to_string().contains("prop-int8.safetensors"), "{}", e),
        }
    }
}
