"""The float32 ONNX files of `mnist-mlp export --out M.onnx`, checked by `onnx.checker` and run
by ONNX Runtime (PyPI `onnxruntime`) on all 10,000 bundled test images: probabilities within
1e-5 of `predict --json`, for both architectures (small models trained here). An int8 model is
refused for ONNX (exit 1, nothing written).

Environment: MNIST_MLP_BIN, MNIST_MLP_TEST_DATA, as for test_interop.py.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("MNIST_MLP_BIN") or REPO / "target" / "release" / "mnist-mlp")
DATA = Path(os.environ.get("MNIST_MLP_TEST_DATA") or REPO / "data" / "mnist-10k")
TIMEOUT = 600


def run(*args: str | Path, expect: int = 0) -> subprocess.CompletedProcess:
    cmd = [str(BIN), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode != expect:
        pytest.fail(f"{' '.join(cmd)}\nexited {p.returncode}, expected {expect}\n{p.stderr}")
    return p


def load_test_images() -> np.ndarray:
    raw = DATA / "t10k-images-idx3-ubyte"
    data = raw.read_bytes() if raw.exists() else gzip.open(f"{raw}.gz").read()
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(-1, 784)


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
