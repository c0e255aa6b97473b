//! TFLite (LiteRT) model files, written from the schema (`tensorflow/lite/schema/schema.fbs`)
//! with the small FlatBuffers writer of [`super::flatbuf`].
//!
//! One subgraph: input `[N, 784]` (N resizable: `shape_signature` -1), one `FULLY_CONNECTED`
//! per layer (ReLU fused for `relu` hidden layers), then `SOFTMAX`; output `[N, 10]`.
//! - An int8 model gives a fully integer graph: input int8 with scale 1/255 and zero point
//!   -128, int8 weights (per tensor, or per output row on dimension 0), int32 biases with
//!   scale input scale × weight scale, int8 activations with the model's scales, output int8
//!   with scale 1/256 and zero point -128. The scales are the model's own f32 values, so
//!   LiteRT derives the same multipliers and shifts as [`crate::quant`].
//! - A float model gives the same graph in float32, input `pixel / 255`.

use super::flatbuf::{finish, Field, Obj};
use crate::model::{Arch, Mlp};
use crate::quant::model::QLayer;
use crate::quant::model::{INPUT_SCALE, INPUT_ZERO_POINT};
use crate::quant::softmax::{OUTPUT_SCALE, OUTPUT_ZERO_POINT};
use crate::quant::{QModel, WeightScales};

/// `BuiltinOperator` codes.
const FULLY_CONNECTED: i32 = 9;
const SOFTMAX: i32 = 25;
/// `BuiltinOptions` union tags.
const FULLY_CONNECTED_OPTIONS: u8 = 8;
const SOFTMAX_OPTIONS: u8 = 9;
/// `TensorType` codes.
const FLOAT32: u8 = 0;
const INT32: u8 = 2;
const INT8: u8 = 9;
/// `ActivationFunctionType` codes.
const ACT_NONE: u8 = 0;
const ACT_RELU: u8 = 1;
/// The schema version TFLite files carry.
const SCHEMA_VERSION: u32 = 3;

/// Quantization parameters of a tensor: scales, zero points, quantized dimension.
struct Quant {
    scale: Vec<f32>,
    zero_point: Vec<i64>,
}

/// The graph under construction: tensors and buffers, added in order.
#[derive(Default)]
struct Graph {
    tensors: Vec<Obj>,
    /// Buffer 0 is the empty sentinel every activation uses.
    buffers: Vec<Obj>,
    operators: Vec<Obj>,
}

impl Graph {
    /// Adds a tensor; `data` makes it a constant with its own buffer. Returns its index.
    fn tensor(
        &mut self,
        name: &str,
        dtype: u8,
        shape: &[i32],
        batch: bool,
        quant: Option<Quant>,
        data: Option<Vec<u8>>,
    ) -> i32 {
        let buffer = match data {
            Some(bytes) => {
                self.buffers
                    .push(Obj::Table(vec![(0, Field::Obj(Obj::Bytes(bytes)))]));
                // Index in the file's buffer list, whose entry 0 is the empty sentinel.
                self.buffers.len() as u32
            }
            None => 0,
        };
        let mut fields = vec![
            (0, Field::Obj(Obj::I32s(shape.to_vec()))),
            (1, Field::U8(dtype)),
            (2, Field::U32(buffer)),
            (3, Field::Obj(Obj::Str(name.into()))),
        ];
        if let Some(q) = quant {
            let per_channel = q.scale.len() > 1;
            let mut qf = vec![
                (2, Field::Obj(Obj::F32s(q.scale))),
                (3, Field::Obj(Obj::I64s(q.zero_point))),
            ];
            if per_channel {
                qf.push((6, Field::I32(0)));
            }
            fields.push((4, Field::Obj(Obj::Table(qf))));
        }
        if batch {
            let mut sig = shape.to_vec();
            sig[0] = -1;
            fields.push((7, Field::Obj(Obj::I32s(sig))));
        }
        self.tensors.push(Obj::Table(fields));
        self.tensors.len() as i32 - 1
    }

    /// Adds an operator of opcode index `opcode` with a union option.
    fn op(&mut self, opcode: u32, inputs: &[i32], output: i32, options: (u8, Obj)) {
        self.operators.push(Obj::Table(vec![
            (0, Field::U32(opcode)),
            (1, Field::Obj(Obj::I32s(inputs.to_vec()))),
            (2, Field::Obj(Obj::I32s(vec![output]))),
            (3, Field::U8(options.0)),
            (4, Field::Obj(options.1)),
        ]));
    }

    fn fully_connected(&mut self, x: i32, w: i32, b: i32, y: i32, relu: bool) {
        let act = if relu { ACT_RELU } else { ACT_NONE };
        let options = Obj::Table(vec![(0, Field::U8(act))]);
        self.op(0, &[x, w, b], y, (FULLY_CONNECTED_OPTIONS, options));
    }

    /// Adds SOFTMAX from `logits` to `output` and returns the model: opcodes FULLY_CONNECTED
    /// and SOFTMAX (of `versions`), one subgraph from `input` to `output`.
    fn finish(mut self, input: i32, logits: i32, output: i32, versions: (i32, i32)) -> Vec<u8> {
        let options = Obj::Table(vec![(0, Field::F32(1.0))]);
        self.op(1, &[logits], output, (SOFTMAX_OPTIONS, options));
        let opcode = |code: i32, version: i32| {
            Obj::Table(vec![
                (0, Field::U8(code as u8)),
                (2, Field::I32(version)),
                (3, Field::I32(code)),
            ])
        };
        let subgraph = Obj::Table(vec![
            (0, Field::Obj(Obj::Tables(self.tensors))),
            (1, Field::Obj(Obj::I32s(vec![input]))),
            (2, Field::Obj(Obj::I32s(vec![output]))),
            (3, Field::Obj(Obj::Tables(self.operators))),
            (4, Field::Obj(Obj::Str("main".into()))),
        ]);
        let mut buffers = vec![Obj::Table(vec![])];
        buffers.extend(self.buffers);
        let model = Obj::Table(vec![
            (0, Field::U32(SCHEMA_VERSION)),
            (
                1,
                Field::Obj(Obj::Tables(vec![
                    opcode(FULLY_CONNECTED, versions.0),
                    opcode(SOFTMAX, versions.1),
                ])),
            ),
            (2, Field::Obj(Obj::Tables(vec![subgraph]))),
            (
                3,
                Field::Obj(Obj::Str(format!("mnist-mlp {}", env!("CARGO_PKG_VERSION")))),
            ),
            (4, Field::Obj(Obj::Tables(buffers))),
        ]);
        finish(&model, b"TFL3")
    }
}

/// `v` as little-endian bytes.
fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// Quantization of an activation: one scale, one zero point.
fn activation(scale: f32, zero_point: i32) -> Quant {
    Quant {
        scale: vec![scale],
        zero_point: vec![i64::from(zero_point)],
    }
}

/// The fully integer TFLite model of `model`.
pub fn int8(model: &QModel) -> Vec<u8> {
    let mut g = Graph::default();
    let n_in = model.input() as i32;
    let input_quant = activation(INPUT_SCALE, INPUT_ZERO_POINT);
    let input = g.tensor("input", INT8, &[1, n_in], true, Some(input_quant), None);
    let mut x = input;
    let mut in_scale = INPUT_SCALE;
    for (l, q) in model.layers().iter().enumerate() {
        x = int8_layer(
            &mut g,
            &format!("fc{}", l + 1),
            q,
            (x, in_scale),
            model.weight_scales(),
        );
        in_scale = q.output_scale;
    }
    let c = model.classes() as i32;
    let output_quant = activation(OUTPUT_SCALE, OUTPUT_ZERO_POINT);
    let output = g.tensor(
        "probabilities",
        INT8,
        &[1, c],
        true,
        Some(output_quant),
        None,
    );
    // The versions TFLite's converter gives int8 FULLY_CONNECTED and SOFTMAX.
    g.finish(input, x, output, (4, 2))
}

/// Layer `q` as an int8 FULLY_CONNECTED op named `name` on the tensor `x` of scale
/// `in_scale`: its weight, bias and output tensors. Returns the output tensor.
fn int8_layer(
    g: &mut Graph,
    name: &str,
    q: &QLayer,
    (x, in_scale): (i32, f32),
    scales: WeightScales,
) -> i32 {
    let (i, o) = (q.inputs as i32, q.outputs as i32);
    let w_quant = match scales {
        WeightScales::PerTensor => Quant {
            scale: vec![q.weight_scale[0]],
            zero_point: vec![0],
        },
        WeightScales::PerChannel => Quant {
            scale: q.weight_scale.clone(),
            zero_point: vec![0; q.weight_scale.len()],
        },
    };
    let bias_scale: Vec<f32> = q
        .weight_scale
        .iter()
        .map(|&s| (f64::from(in_scale) * f64::from(s)) as f32)
        .collect();
    let b_quant = Quant {
        zero_point: vec![0; bias_scale.len()],
        scale: bias_scale,
    };
    let w_bytes = q.weight.iter().map(|&v| v as u8).collect();
    let w_name = format!("{name}.weight");
    let w = g.tensor(&w_name, INT8, &[o, i], false, Some(w_quant), Some(w_bytes));
    let b_bytes = le(&q.bias, i32::to_le_bytes);
    let b = g.tensor(
        &format!("{name}.bias"),
        INT32,
        &[o],
        false,
        Some(b_quant),
        Some(b_bytes),
    );
    let y_quant = activation(q.output_scale, q.output_zero_point);
    let y = g.tensor(name, INT8, &[1, o], true, Some(y_quant), None);
    g.fully_connected(x, w, b, y, q.relu);
    y
}

/// The float32 TFLite model of `model`: input `pixel / 255`.
pub fn float(model: &Mlp) -> Vec<u8> {
    let mut g = Graph::default();
    let layout = model.layout();
    let input = g.tensor(
        "input",
        FLOAT32,
        &[1, layout.input() as i32],
        true,
        None,
        None,
    );
    let mut x = input;
    let last = layout.layers() - 1;
    for l in 0..=last {
        let (i, o) = layout.dims(l);
        let (w, b) = layout.split(model.params(), l);
        let name = format!("fc{}", l + 1);
        let (i, o) = (i as i32, o as i32);
        let w = g.tensor(
            &format!("{name}.weight"),
            FLOAT32,
            &[o, i],
            false,
            None,
            Some(le(w, f32::to_le_bytes)),
        );
        let b = g.tensor(
            &format!("{name}.bias"),
            FLOAT32,
            &[o],
            false,
            None,
            Some(le(b, f32::to_le_bytes)),
        );
        let y = g.tensor(&name, FLOAT32, &[1, o], true, None, None);
        g.fully_connected(x, w, b, y, model.arch() == Arch::Relu && l < last);
        x = y;
    }
    let output = g.tensor(
        "probabilities",
        FLOAT32,
        &[1, layout.classes() as i32],
        true,
        None,
        None,
    );
    g.finish(input, x, output, (1, 1))
}
