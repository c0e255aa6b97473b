"""The float32 ONNX files of `mnist-mlp export --out M.onnx`, checked by `onnx.checker` and run
by ONNX Runtime (PyPI `onnxruntime`) on all 10,000 bundled test images: probabilities within
1e-5 of `predict --json`, for both architectures (small models trained here). An int8 model is
refused for ONNX (exit 1, nothing written).

Environment: MNIST_MLP_BIN, MNIST_MLP_TEST_DATA, as for test_interop.py (read in mnist_cli.py).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mnist_cli import DATA, load_test_images, run


@pytest.mark.parametrize("arch", ["seed", "relu"])
def test_onnx_matches_predict(arch, tmp_path):
    m = tmp_path / f"{arch}.safetensors"
    run("-q", "train", "--data", DATA, "--arch", arch, "--iterations", "300", "--save", m)
    out = tmp_path / f"{arch}.onnx"
    run("export", "--model", m, "--out", out)
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)

    images = load_test_images()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.shape[1] == 784 and not isinstance(inp.shape[0], int)
    probs = sess.run(None, {inp.name: images.astype(np.float32) / np.float32(255)})[0]

    indices = ",".join(map(str, range(len(images))))
    rows = [
        json.loads(line)
        for line in run("predict", "--model", m, "--data", DATA, "--json", "--index", indices)
        .stdout.splitlines()
    ]
    ours = np.array([r["probabilities"] for r in rows], dtype=np.float64)
    worst = np.abs(probs - ours).max()
    assert worst <= 1e-5, f"ONNX Runtime probabilities differ by up to {worst}"
    print(f"{arch}: ONNX max |diff| {worst:.2e}")


def test_int8_model_is_refused_for_onnx(tmp_path):
    m = tmp_path / "relu.safetensors"
    run("-q", "train", "--data", DATA, "--arch", "relu", "--iterations", "20", "--save", m)
    q = tmp_path / "q.safetensors"
    run("-q", "quantize", "--model", m, "--data", DATA, "--out", q, "--calibration", "50")
    p = run("export", "--model", q, "--out", tmp_path / "q.onnx", expect=1)
    assert "float32" in p.stderr
    assert not (tmp_path / "q.onnx").exists()
