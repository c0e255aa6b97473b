"""What the LiteRT and ONNX Runtime tests share: the binary under test, the data, and how to
run one command and read the test images."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import numpy as np
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
