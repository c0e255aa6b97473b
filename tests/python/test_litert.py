"""The int8 and float32 TFLite files of `mnist-mlp export`, run by LiteRT (PyPI `ai-edge-litert`).

For each architecture (seed, relu) a small model is trained here (a few hundred iterations: the
checks are about arithmetic, not accuracy), quantized with per-tensor and with per-channel weight
scales, and exported. On all 10,000 bundled test images:

- LiteRT's reference kernels (`OpResolverType.BUILTIN_REF`), with every tensor kept
  (`experimental_preserve_all_tensors`), give int8 logits (the tensor entering SOFTMAX) equal bit
  for bit to `predict --json`'s `int8_logits`, and an int8 softmax output within one step (1/256)
  of its probabilities (in every run so far: equal);
- LiteRT's default (optimized) kernels pick the same digit on at least 99.9% of the images;
- the float32 export's probabilities are within 1e-5 of `predict --json` on the float model.

The input contract is checked too: int8 [N, 784] with N resizable (shape_signature -1), scale
1/255 and zero point -128; output int8 [N, 10], scale 1/256, zero point -128.

Environment: MNIST_MLP_BIN, MNIST_MLP_TEST_DATA, as for test_interop.py (read in mnist_cli.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from mnist_cli import DATA, load_test_images, run

ITERATIONS = "300"  # enough for non-trivial weights; takes about a second


IMAGES = load_test_images()


def predict_json(model: Path) -> list[dict]:
    indices = ",".join(map(str, range(len(IMAGES))))
    out = run("predict", "--model", model, "--data", DATA, "--json", "--index", indices).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(IMAGES)
    return rows


def interpreter(path: Path, reference: bool) -> Interpreter:
    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    it = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=kind,
        experimental_preserve_all_tensors=True,
    )
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], [len(IMAGES), 784])
    it.allocate_tensors()
    return it


def run_litert(path: Path, reference: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """(tensor entering SOFTMAX, output) for all test images. The default kernels hand the
    graph to the XNNPACK delegate, whose intermediate tensors are not kept: None then."""
    it = interpreter(path, reference)
    inp = it.get_input_details()[0]
    if inp["dtype"] == np.int8:
        x = (IMAGES.astype(np.int16) - 128).astype(np.int8)
    else:
        x = IMAGES.astype(np.float32) / np.float32(255)
    it.set_tensor(inp["index"], x)
    it.invoke()
    output = it.get_tensor(it.get_output_details()[0]["index"])
    if not reference:
        return None, output
    ops = it._get_ops_details()
    assert [op["op_name"] for op in ops][-1] == "SOFTMAX"
    return it.get_tensor(ops[-1]["inputs"][0]), output


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Float, int8 per-tensor and int8 per-channel models and their .tflite, per arch."""
    d = tmp_path_factory.mktemp("litert")
    out = {}
    for arch in ("seed", "relu"):
        f = d / f"{arch}.safetensors"
        run("-q", "train", "--data", DATA, "--arch", arch, "--iterations", ITERATIONS, "--save", f)
        out[arch] = f
        run("export", "--model", f, "--out", d / f"{arch}.tflite")
        for mode, flags in (("tensor", []), ("channel", ["--per-channel"])):
            q = d / f"{arch}-{mode}.safetensors"
            run("quantize", "--model", f, "--data", DATA, "--out", q, *flags)
            run("export", "--model", q, "--out", d / f"{arch}-{mode}.tflite")
            out[f"{arch}-{mode}"] = q
    return out


@pytest.mark.parametrize("arch", ["seed", "relu"])
@pytest.mark.parametrize("mode", ["tensor", "channel"])
def test_int8_tflite_matches_our_engine_bit_for_bit(models, arch, mode):
    q = models[f"{arch}-{mode}"]
    tflite = q.with_suffix(".tflite")
    it = interpreter(tflite, reference=True)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and list(inp["shape_signature"]) == [-1, 784]
    assert inp["quantization"] == (pytest.approx(1 / 255), -128)
    assert out["dtype"] == np.int8 and list(out["shape_signature"]) == [-1, 10]
    assert out["quantization"] == (1 / 256, -128)
    names = [op["op_name"] for op in it._get_ops_details()]
    assert names == ["FULLY_CONNECTED"] * 4 + ["SOFTMAX"]

    rows = predict_json(q)
    ours = np.array([r["int8_logits"] for r in rows], dtype=np.int8)
    probs = np.array([r["probabilities"] for r in rows], dtype=np.float64)
    digits = np.array([r["digit"] for r in rows])

    logits, output = run_litert(tflite, reference=True)
    differ = np.flatnonzero((logits != ours).any(axis=1))
    assert differ.size == 0, (
        f"{differ.size} of {len(IMAGES)} rows of int8 logits differ, first {differ[:5]}: "
        f"LiteRT {logits[differ[0]]} vs ours {ours[differ[0]]}"
    )
    theirs = (output.astype(np.float64) + 128) / 256
    worst = np.abs(theirs - probs).max()
    assert worst <= 1 / 256, f"softmax differs by {worst} (more than one step)"
    print(f"{arch}/{mode}: logits equal on all rows; softmax max |diff| {worst}")

    _, fast = run_litert(tflite, reference=False)
    same = np.mean(fast.argmax(axis=1) == digits)
    assert same >= 0.999, f"default kernels agree on only {same:.4%} of the digits"


@pytest.mark.parametrize("arch", ["seed", "relu"])
def test_float_tflite_matches_predict(models, arch):
    f = models[arch]
    rows = predict_json(f)
    probs = np.array([r["probabilities"] for r in rows], dtype=np.float64)
    _, output = run_litert(f.with_suffix(".tflite"), reference=False)
    worst = np.abs(output - probs).max()
    assert worst <= 1e-5, f"float32 TFLite probabilities differ by up to {worst}"
    print(f"{arch}: float32 max |diff| {worst:.2e}")


def test_unknown_export_format_is_a_usage_error(models, tmp_path):
    p = run("export", "--model", models["relu"], "--out", tmp_path / "m.pb", expect=2)
    assert "tflite" in p.stderr
    assert not (tmp_path / "m.pb").exists()
