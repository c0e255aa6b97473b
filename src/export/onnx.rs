//! ONNX model files of float32 networks, written from the public `onnx.proto` with a minimal
//! protobuf writer (no generated code, no new crate).
//!
//! The graph: input `float32 [N, 784]` (`N` a symbolic dimension) holding `pixel / 255`, one
//! `Gemm` (`transB = 1`, weights `(O, I)` as stored) per layer, `Relu` after each hidden layer
//! of a `relu` network, then `Softmax` over the last axis into output `float32 [N, 10]`.
//! Opset 13, IR version 8.

use crate::model::{Arch, Mlp};

/// IR version written (ONNX 1.10+, read by every current runtime).
const IR_VERSION: u64 = 8;
/// Default-domain opset.
const OPSET: u64 = 13;
/// `TensorProto.DataType.FLOAT`.
const FLOAT: u64 = 1;
/// `AttributeProto.AttributeType.INT`.
const ATTR_INT: u64 = 2;

/// A protobuf message under construction.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }

    /// A varint field (int32/int64/enum); negative values are not used here.
    fn int(mut self, field: u64, v: u64) -> Self {
        self.key(field, 0);
        self.varint(v);
        self
    }

    /// A length-delimited field: bytes, a string or a sub-message.
    fn bytes(mut self, field: u64, b: &[u8]) -> Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    fn str(self, field: u64, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    fn msg(self, field: u64, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
}

/// `ValueInfoProto` of a float tensor `[N, width]`.
fn value_info(name: &str, width: usize) -> Msg {
    let shape = Msg::default()
        .msg(1, Msg::default().str(2, "N"))
        .msg(1, Msg::default().int(1, width as u64));
    let tensor = Msg::default().int(1, FLOAT).msg(2, shape);
    Msg::default()
        .str(1, name)
        .msg(2, Msg::default().msg(1, tensor))
}

/// `TensorProto` of a float initializer.
fn initializer(name: &str, dims: &[usize], values: &[f32]) -> Msg {
    let mut m = Msg::default();
    for &d in dims {
        m = m.int(1, d as u64);
    }
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    m.int(2, FLOAT).str(8, name).bytes(9, &raw)
}

/// `NodeProto` of `op` from `inputs` to `output`, with integer attributes.
fn node(op: &str, inputs: &[&str], output: &str, ints: &[(&str, u64)]) -> Msg {
    let mut m = Msg::default();
    for i in inputs {
        m = m.str(1, i);
    }
    m = m.str(2, output).str(3, output).str(4, op);
    for &(name, v) in ints {
        m = m.msg(5, Msg::default().str(1, name).int(3, v).int(20, ATTR_INT));
    }
    m
}

/// The ONNX model of `model`.
pub fn float(model: &Mlp) -> Vec<u8> {
    let layout = model.layout();
    let last = layout.layers() - 1;
    let mut graph = Msg::default();
    let mut x = "input".to_string();
    for l in 0..=last {
        let (i, o) = layout.dims(l);
        let (w, b) = layout.split(model.params(), l);
        let name = format!("fc{}", l + 1);
        let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
        graph = graph
            .msg(1, node("Gemm", &[&x, &wn, &bn], &name, &[("transB", 1)]))
            .msg(5, initializer(&wn, &[o, i], w))
            .msg(5, initializer(&bn, &[o], b));
        x = name;
        if model.arch() == Arch::Relu && l < last {
            let relu = format!("{x}.relu");
            graph = graph.msg(1, node("Relu", &[&x], &relu, &[]));
            x = relu;
        }
    }
    let graph = graph
        .msg(1, node("Softmax", &[&x], "probabilities", &[]))
        .str(2, "mnist-mlp")
        .msg(11, value_info("input", layout.input()))
        .msg(12, value_info("probabilities", layout.classes()));
    Msg::default()
        .int(1, IR_VERSION)
        .str(2, "mnist-mlp")
        .str(3, env!("CARGO_PKG_VERSION"))
        .msg(7, graph)
        .msg(8, Msg::default().str(1, "").int(2, OPSET))
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_encode_as_protobuf_does() {
        let m = Msg::default().int(1, 300).str(2, "hi");
        assert_eq!(m.0, [0x08, 0xac, 0x02, 0x12, 2, b'h', b'i']);
    }
}
