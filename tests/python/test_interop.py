"""Interoperability of mnist-mlp model files with numpy and the `safetensors` Python package.

(a) Models trained by the binary load with `safetensors.numpy`, carry the documented metadata,
    and numpy reproduces `mnist-mlp predict --json` (logits, probabilities, digits) and
    `mnist-mlp eval` from the tensors alone.
(b) Models written by numpy in the same layout (a least-squares linear classifier with no
    hidden layer, metadata hidden = "", and a 256-wide random-ReLU-features network) are
    accepted by `mnist-mlp eval`, whose accuracy and confusion matrix equal numpy's on the
    full 10k test set, and by `predict`.
(c) Files with a wrong shape, a wrong dtype, a missing, an extra or a non-finite tensor are
    rejected by `eval` with exit code 1 and a message naming the tensor and the file.

Environment:
  MNIST_MLP_BIN          the binary [<repo>/target/release/mnist-mlp]
  MNIST_MLP_TEST_DATA    the MNIST data set [<repo>/data/mnist-10k, bundled]

Run with `scripts/python-tests.sh`, or `python -m pytest tests/python` in a venv holding
tests/python/requirements.txt. Missing data or binary fails loudly: nothing is skipped.

Numerical tolerance. The reference here is numpy in float64 on the file's float32 tensors and the
binary's float32 input (u8 * f32(1/255)), i.e. the exact maths of the stored model; the binary
computes in float32 with its own summation order (matrixmultiply). Float32 has 24-bit
mantissas (eps 1.2e-7); a dot product of K <= 784 terms in any order is off by about
sqrt(K) * eps relative to the magnitude of its terms (~3e-6), a little more over four layers.
That error scales with the values, so the bound is 1e-4 absolute for logits up to 1 in
magnitude and 1e-4 relative above (|got - ref| <= 1e-4 * max(1, |ref|)): trained networks
reach logits of 10-20 (18 for the default 1000-iteration `seed` run, whose linear layers
have no activation to bound them; longer runs go further), where a fixed 1e-4 would leave
less headroom, while for |ref| <= 1 it is the plain 1e-4. Measured: < 1e-5 (7e-6 at most),
over 10x below the bound. Predicted digits must be identical, except that a row whose two
best reference logits are within twice the tolerance of each other (a near tie, where
float32 may legitimately pick either) is allowed either of them; the accuracy and confusion
matrix of `eval` get the same slack per near tie. Near ties are counted and printed (`-s` or
`-rA`): a few per 10k images, none in the first 100, and in every run so far the digits and
confusion matrices were identical anyway.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("MNIST_MLP_BIN") or REPO / "target" / "release" / "mnist-mlp")
DATA = Path(os.environ.get("MNIST_MLP_TEST_DATA") or REPO / "data" / "mnist-10k")

INPUT = 784
CLASSES = 10
DEFAULT_HIDDEN = "512,256,128"
RTOL = 1e-4  # see the module docstring
TIMEOUT = 600  # seconds per binary run; a 50-iteration training takes well under 1 s


# ----------------------------------------------------------------------------------------------
# helpers


def run(*args: str | Path, expect: int | None = 0) -> subprocess.CompletedProcess:
    """Runs the binary with `args`; checks the exit code unless `expect` is None."""
    cmd = [str(BIN), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if expect is not None and p.returncode != expect:
        pytest.fail(
            f"{' '.join(cmd)}\nexited {p.returncode}, expected {expect}\n"
            f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
        )
    return p


def read_idx(stem: str) -> np.ndarray:
    """The IDX file `stem` of DATA (`.gz` or raw), as a u8 array of its shape."""
    gz, raw = DATA / f"{stem}.gz", DATA / stem
    if gz.exists():
        with gzip.open(gz, "rb") as f:
            b = f.read()
    else:
        b = raw.read_bytes()
    assert b[:2] == b"\0\0" and b[2] == 0x08, f"{stem}: not an IDX file of u8"
    ndim = b[3]
    dims = [int.from_bytes(b[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def to_input(images: np.ndarray) -> np.ndarray:
    """u8 images (N, 28, 28) as the binary feeds them: (N, 784) float32 of u8 * f32(1/255)."""
    return images.reshape(len(images), -1).astype(np.float32) * np.float32(1.0 / 255.0)


def layers_of(tensors: dict[str, np.ndarray]) -> int:
    return sum(1 for k in tensors if k.endswith(".weight"))


def forward(tensors: dict[str, np.ndarray], arch: str, x: np.ndarray) -> np.ndarray:
    """Logits of the float32 inputs `x` (N, 784), in float64: x @ W.T + b per layer, ReLU after
    each hidden layer for arch `relu`, no activation at all for `seed`."""
    n = layers_of(tensors)
    h = x.astype(np.float64)
    for layer in range(1, n + 1):
        w = tensors[f"fc{layer}.weight"].astype(np.float64)
        b = tensors[f"fc{layer}.bias"].astype(np.float64)
        h = h @ w.T + b
        if arch == "relu" and layer < n:
            h = np.maximum(h, 0.0)
    return h


def tolerance(ref: np.ndarray) -> np.ndarray:
    return RTOL * np.maximum(1.0, np.abs(ref))


def near_ties(ref: np.ndarray) -> np.ndarray:
    """Rows whose two best logits are within the tolerance of each other (see the docstring)."""
    top2 = np.sort(ref, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) <= 2 * tolerance(top2[:, 1])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def rust_f32(x: float) -> str:
    """Rust's `Display` of an f32 (shortest round-trip, positional), with `.0` on whole
    numbers as the binary prints them: 0.9003, 1.0."""
    return np.format_float_positional(np.float32(x), unique=True, trim="0")


def accuracy_text(correct: int, total: int) -> str:
    # The binary's value: correct as f32 / total as f32 (both exact below 2^24).
    return rust_f32(np.float32(correct) / np.float32(total))


EVAL_FIRST = re.compile(r"^Accuracy on test set: (\S+)$")
EVAL_CLASS = re.compile(r"^\s*(\d+): (\S+) \((\d+)/(\d+)\)$")


def parse_eval(stdout: str) -> tuple[str, np.ndarray]:
    """The accuracy text of `eval`'s first line and its confusion matrix (rows: true class)."""
    lines = stdout.splitlines()
    m = EVAL_FIRST.match(lines[0])
    assert m, f"unexpected first line of eval: {lines[0]!r}"
    start = next(i for i, s in enumerate(lines) if s.startswith("Confusion matrix"))
    rows = [list(map(int, s.split(":", 1)[1].split())) for s in lines[start + 2 : start + 2 + CLASSES]]
    confusion = np.array(rows, dtype=np.int64)
    assert confusion.shape == (CLASSES, CLASSES), stdout
    per_class = [EVAL_CLASS.match(s) for s in lines[1:start]]
    per_class = [p for p in per_class if p]
    assert len(per_class) == CLASSES, stdout
    for c, p in enumerate(per_class):
        assert int(p.group(1)) == c
        assert int(p.group(3)) == confusion[c, c] and int(p.group(4)) == confusion[c].sum(), stdout
    return m.group(1), confusion


def confusion_of(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    cm = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    np.add.at(cm, (labels.astype(np.int64), pred.astype(np.int64)), 1)
    return cm


def model_metadata(arch: str, hidden: str, **facts: str) -> dict[str, str]:
    return {
        "format": "mnist-mlp/1",
        "kind": "model",
        "arch": arch,
        "hidden": hidden,
        "input": str(INPUT),
        "classes": str(CLASSES),
        **facts,
    }


def check_eval_matches_numpy(model: Path, tensors: dict[str, np.ndarray], arch: str, test,
                             *flags: str) -> str:
    """Runs `eval` on `model` and checks its accuracy and confusion matrix against numpy's
    forward pass of `tensors` on the full test set. Returns the accuracy as printed."""
    x, labels = test
    ref = forward(tensors, arch, x)
    pred = ref.argmax(axis=1)  # first maximum on ties, like the binary
    ties = near_ties(ref)
    expected_cm = confusion_of(pred, labels)
    correct = int((pred == labels).sum())

    text, cm = parse_eval(run("-q", "eval", "--model", model, "--data", DATA, *flags).stdout)
    got_correct = int(np.trace(cm))
    assert cm.sum() == len(labels)
    # Each near tie may move one example between two cells of a row.
    slack = int(ties.sum())
    assert np.abs(cm - expected_cm).sum() <= 2 * slack, (
        f"eval confusion matrix differs from numpy's ({slack} near ties)\n{cm}\n{expected_cm}"
    )
    assert abs(got_correct - correct) <= slack
    assert text == accuracy_text(got_correct, len(labels))
    # The printed value, as a float: within half an example of numpy's (plus any near ties).
    assert abs(float(text) - correct / len(labels)) <= (slack + 0.5) / len(labels), (
        f"eval says {text}, numpy {correct}/{len(labels)}"
    )
    diff = int(np.abs(cm - expected_cm).sum())
    print(f"{model.name}: eval {text}, numpy {correct}/{len(labels)}, {slack} near ties, "
          f"confusion matrices {'identical' if diff == 0 else f'{diff // 2} example(s) apart'}")
    return text


# ----------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session", autouse=True)
def prerequisites():
    assert BIN.is_file() and os.access(BIN, os.X_OK), (
        f"no mnist-mlp binary at {BIN}: run `cargo build --release` or set MNIST_MLP_BIN"
    )
    assert (DATA / "t10k-images-idx3-ubyte.gz").exists() or (DATA / "t10k-images-idx3-ubyte").exists(), (
        f"test data {DATA} is missing: the bundled data/mnist-10k (or MNIST_MLP_TEST_DATA)"
    )


@pytest.fixture(scope="session")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    images = read_idx("t10k-images-idx3-ubyte")
    labels = read_idx("t10k-labels-idx1-ubyte")
    assert images.shape[1:] == (28, 28) and len(images) == len(labels) == 10000
    return to_input(images), labels


@pytest.fixture(scope="session")
def train_set() -> tuple[np.ndarray, np.ndarray]:
    images = read_idx("train-images-idx3-ubyte")
    labels = read_idx("train-labels-idx1-ubyte")
    assert images.shape[1:] == (28, 28) and len(images) == len(labels)
    return to_input(images), labels


def least_squares(features: np.ndarray, labels: np.ndarray, ridge: float = 1.0):
    """A linear classifier fit by ridge regression on one-hot targets: (W (C, F), b (C)) f32."""
    a = np.hstack([features.astype(np.float64), np.ones((len(features), 1))])
    y = np.eye(CLASSES)[labels]
    wb = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ y)  # (F + 1, C)
    return wb[:-1].T.astype(np.float32).copy(), wb[-1].astype(np.float32).copy()


@pytest.fixture(scope="session")
def numpy_models(train_set, tmp_path_factory) -> dict[str, tuple[Path, dict, str]]:
    """Models written by numpy: name -> (file, tensors, arch)."""
    x, labels = train_set
    out = tmp_path_factory.mktemp("numpy-models")
    models = {}

    # No hidden layer: metadata hidden = "", one layer 784 -> 10.
    w, b = least_squares(x, labels)
    models["linear"] = ({"fc1.weight": w, "fc1.bias": b}, "seed", "")

    # One ReLU hidden layer of random features, the output layer fit to them.
    rng = np.random.default_rng(7)
    w1 = (rng.standard_normal((256, INPUT)) * np.sqrt(2.0 / INPUT)).astype(np.float32)
    b1 = np.zeros(256, dtype=np.float32)
    h = np.maximum(x.astype(np.float64) @ w1.T.astype(np.float64) + b1, 0.0)
    w2, b2 = least_squares(h, labels)
    models["relu256"] = ({"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2}, "relu", "256")

    result = {}
    for name, (tensors, arch, hidden) in models.items():
        path = out / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=model_metadata(arch, hidden, made_by="numpy"))
        result[name] = (path, tensors, arch)
    return result


# ----------------------------------------------------------------------------------------------
# (a) binary -> numpy


@pytest.mark.parametrize("arch", ["relu", "seed"])
def test_trained_model_matches_numpy(arch, test_set, tmp_path):
    model = tmp_path / f"{arch}.safetensors"
    train = run(
        "-q", "train", "--data", DATA, "--arch", arch, "--iterations", "50", "--seed", "3",
        "--log-every", "10", "--save", model,
    )
    final = train.stdout.strip().splitlines()[-1]
    assert EVAL_FIRST.match(final), f"last line of train: {final!r}"

    # The file, as safetensors sees it.
    tensors = load_file(str(model))
    with safe_open(str(model), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "mnist-mlp/1"
    assert meta["kind"] == "model"
    assert meta["arch"] == arch
    assert meta["hidden"] == DEFAULT_HIDDEN
    assert meta["input"] == str(INPUT) and meta["classes"] == str(CLASSES)
    assert meta["iterations"] == "50" and meta["seed"] == "3"
    assert final == f"Accuracy on test set: {meta['test_accuracy']}"
    sizes = [INPUT, *map(int, meta["hidden"].split(",")), CLASSES]
    expected = {}
    for i in range(len(sizes) - 1):
        expected[f"fc{i + 1}.weight"] = (sizes[i + 1], sizes[i])
        expected[f"fc{i + 1}.bias"] = (sizes[i + 1],)
    assert {k: v.shape for k, v in tensors.items()} == expected
    assert all(v.dtype == np.float32 for v in tensors.values())
    assert all(np.isfinite(v).all() for v in tensors.values())

    # predict --json on the first 100 test images against numpy.
    x, _ = test_set
    n = 100
    ref = forward(tensors, arch, x[:n])
    out = run("-q", "predict", "--model", model, "--data", DATA, "--json",
              "--index", ",".join(map(str, range(n)))).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in rows] == list(range(n))
    logits = np.array([r["logits"] for r in rows], dtype=np.float64)
    probs = np.array([r["probabilities"] for r in rows], dtype=np.float64)
    digits = np.array([r["digit"] for r in rows])
    assert logits.shape == probs.shape == (n, CLASSES)

    err = np.abs(logits - ref)
    worst = tuple(int(i) for i in np.unravel_index(err.argmax(), err.shape))
    print(f"{arch}: max |logit| {np.abs(ref).max():.3g}, max error {err.max():.3g} at {worst}")
    assert (err <= tolerance(ref)).all(), (
        f"logit of image {worst[0]}, class {worst[1]}: binary {logits[worst]!r}, numpy {ref[worst]!r}"
    )

    ties = near_ties(ref)
    expected_digits = ref.argmax(axis=1)
    mismatch = np.flatnonzero(digits != expected_digits)
    for i in mismatch:  # only near ties may differ, and then to the other tied class
        assert ties[i] and ref[i, digits[i]] >= ref[i].max() - 2 * tolerance(ref[i].max()), (
            f"image {i}: binary says {digits[i]}, numpy {expected_digits[i]} (logits {ref[i]})"
        )
    assert (digits == logits.argmax(axis=1)).all()
    print(f"{arch}: {int(ties.sum())} near ties among {n} images, {len(mismatch)} digit(s) differ")

    assert np.allclose(probs, softmax(ref), rtol=1e-4, atol=1e-6)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert all(r["probability"] == r["probabilities"][r["digit"]] for r in rows)

    # eval, and the accuracy recorded at training time, agree with numpy on all 10k images.
    assert meta["test_accuracy"] == check_eval_matches_numpy(model, tensors, arch, test_set)


# ----------------------------------------------------------------------------------------------
# (b) numpy -> binary


@pytest.mark.parametrize("name", ["linear", "relu256"])
def test_numpy_written_model_evaluates_like_numpy(name, numpy_models, test_set):
    path, tensors, arch = numpy_models[name]
    acc = float(check_eval_matches_numpy(path, tensors, arch, test_set))
    print(f"{name}: accuracy {acc}")
    assert acc > 0.8, f"{name}: a least-squares fit should do better than {acc}"

    # predict agrees too (a few images), and reads the file's own metadata.
    x, _ = test_set
    idx = [0, 1, 2, 3, 4, 9999]
    out = run("-q", "predict", "--model", path, "--data", DATA, "--json",
              "--index", ",".join(map(str, idx))).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    ref = forward(tensors, arch, x[idx])
    logits = np.array([r["logits"] for r in rows])
    assert (np.abs(logits - ref) <= tolerance(ref)).all()


def test_plain_state_dict_without_metadata_needs_only_arch(numpy_models, test_set, tmp_path):
    """What `safetensors.torch.save_file(model.state_dict(), f)` writes: the fcN tensors and
    no metadata at all. The shapes give the sizes; --arch says seed or relu."""
    _, tensors, arch = numpy_models["relu256"]
    path = tmp_path / "state_dict.safetensors"
    save_file(tensors, str(path))  # no metadata, as PyTorch's save_file of a state_dict
    with safe_open(str(path), framework="np") as f:
        assert not f.metadata()

    # Without --arch: a usage hint naming the flag and the sizes found, nothing on stdout.
    p = run("eval", "--model", path, "--data", DATA, expect=1)
    assert "--arch" in p.stderr and "784,256,10" in p.stderr and "no mnist-mlp metadata" in p.stderr
    assert p.stdout == ""

    # With it: numpy's accuracy, and predict's logits.
    acc = float(check_eval_matches_numpy(path, tensors, arch, test_set, "--arch", arch))
    assert acc > 0.8
    x, _ = test_set
    idx = [0, 1, 2, 9999]
    out = run("-q", "predict", "--model", path, "--arch", arch, "--data", DATA, "--json",
              "--index", ",".join(map(str, idx))).stdout
    logits = np.array([json.loads(line)["logits"] for line in out.splitlines()])
    ref = forward(tensors, arch, x[idx])
    assert (np.abs(logits - ref) <= tolerance(ref)).all()

    # A file that names its architecture must agree with --arch.
    ours, _, ours_arch = numpy_models["linear"]
    other = "relu" if ours_arch == "seed" else "seed"
    p = run("eval", "--model", ours, "--arch", other, "--data", DATA, expect=1)
    assert f"--arch {other} conflicts with" in p.stderr


# ----------------------------------------------------------------------------------------------
# (c) malformed files


def _linear(numpy_models) -> dict[str, np.ndarray]:
    return dict(numpy_models["linear"][1])


def _relu256(numpy_models) -> dict[str, np.ndarray]:
    return dict(numpy_models["relu256"][1])


def _wrong_shape(m):
    t = _linear(m)
    t["fc1.weight"] = np.ascontiguousarray(t["fc1.weight"].T)  # (784, 10): numpy's x @ W layout
    return t, "", "seed"


def _wrong_hidden_shape(m):
    t = _relu256(m)
    t["fc1.weight"], t["fc1.bias"] = t["fc1.weight"][:32].copy(), t["fc1.bias"][:32].copy()
    return t, "256", "relu"  # metadata says 256 wide, fc1 is 32


def _wrong_dtype(m):
    t = _linear(m)
    t["fc1.bias"] = t["fc1.bias"].astype(np.float64)
    return t, "", "seed"


def _missing(m):
    t = _relu256(m)
    del t["fc2.bias"]
    return t, "256", "relu"


def _extra(m):
    t = _linear(m)
    t["fc2.weight"] = np.zeros((CLASSES, CLASSES), dtype=np.float32)  # a layer too many
    return t, "", "seed"


def _non_finite(m):
    t = _linear(m)
    t["fc1.bias"] = t["fc1.bias"].copy()
    t["fc1.bias"][3] = np.nan
    return t, "", "seed"


MALFORMED = {
    "wrong-shape": (_wrong_shape, "fc1.weight"),
    "wrong-hidden-shape": (_wrong_hidden_shape, "fc1.weight"),
    "wrong-dtype": (_wrong_dtype, "fc1.bias"),
    "missing": (_missing, "fc2.bias"),
    "extra": (_extra, "fc2.weight"),
    "non-finite": (_non_finite, "fc1.bias"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_model_is_rejected(case, numpy_models, tmp_path):
    make, tensor = MALFORMED[case]
    tensors, hidden, arch = make(numpy_models)
    path = tmp_path / f"{case}.safetensors"
    save_file(tensors, str(path), metadata=model_metadata(arch, hidden))
    p = run("eval", "--model", path, "--data", DATA, expect=None)
    assert p.returncode == 1, f"eval accepted {case}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert tensor in p.stderr, f"{case}: the error does not name {tensor}:\n{p.stderr}"
    assert str(path) in p.stderr, f"{case}: the error does not name the file:\n{p.stderr}"
    assert "Accuracy" not in p.stdout
    print(f"{case}: {p.stderr.strip().splitlines()[-1]}")
