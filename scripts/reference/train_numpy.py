#!/usr/bin/env python3
"""Reference implementation in numpy of the crate's `seed` training run.

The same run as `mnist-mlp train` with its defaults (the TensorFlow tutorial "Creating a NN
from Scratch"), written with numpy and hand-written backprop so the crate can be compared
against it for accuracy, speed and memory (see scripts/bench-compare.sh):

- MLP 784-512-256-128-10 with no activations (purely linear layers); weights stored
  (out, in) like PyTorch's nn.Linear, drawn from a normal of stddev 0.1 truncated at 2 sigma
  (values beyond are redrawn, as tf.truncated_normal), biases 0.1;
- softmax cross-entropy averaged over the batch;
- Adam as TensorFlow 1's AdamOptimizer computes it (beta1 0.9, beta2 0.999, eps 1e-8, bias
  correction folded into the step size, eps added to the uncorrected sqrt(v)), lr 1e-4;
- batches of 128 drawn like TF's mnist.train.next_batch: a shuffled order, reshuffled every
  epoch, a batch crossing the end of an epoch taking the old order's tail and the new head;
- float32 throughout, pixels u8 * (1/255) in float32 (what TF's MNIST reader and the crate do).

stdout has the tutorial's lines (the batch's loss and accuracy evaluated after the update,
every 100 iterations, then an empty line and the test accuracy); stderr gets the wall time
of the training loop as "N iterations in X s (Y ms/iteration)", the crate's wording.

numpy's generator is used, so the run is not bit-identical to the crate's (different random
streams); the test accuracy lands in the same range (about 0.90-0.91 on 10k MNIST digits).
"""

import argparse
import gzip
import itertools
import os
import struct
import sys
import time


def parse_args():
    """Command line; parsed before numpy is imported so --threads can take effect."""
    here = os.path.dirname(os.path.abspath(__file__))
    default_data = os.path.normpath(os.path.join(here, "..", "..", "data", "mnist"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=default_data,
                   help="directory with the four MNIST IDX files, raw or .gz "
                        "(default: %(default)s)")
    p.add_argument("--iterations", type=int, default=1000, help="default: %(default)s")
    p.add_argument("--batch", type=int, default=128, help="default: %(default)s")
    p.add_argument("--lr", type=float, default=1e-4, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    p.add_argument("--log-every", type=int, default=100, help="default: %(default)s")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and "
                        "MKL_NUM_THREADS before numpy is imported; default: BLAS's own)")
    args = p.parse_args()
    for name in ("iterations", "batch", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def set_thread_env(threads):
    """Thread count of every BLAS numpy may be built with; only effective before import."""
    if threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)


# Run as a script, the command line is parsed first so that --threads is in the environment
# when numpy (and its BLAS) loads. Imported as a module (train_torch.py reuses the data code),
# the importer sets the environment itself.
if __name__ == "__main__":
    ARGS = parse_args()
    set_thread_env(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread variables are set)

F32 = np.float32
SIZES = (784, 512, 256, 128, 10)


# ---------------------------------------------------------------------------------------------
# Data


def read_idx(directory, stem):
    """The array stored in IDX file `stem` (raw, or `stem.gz`) of `directory`, as uint8."""
    raw = os.path.join(directory, stem)
    if os.path.exists(raw):
        with open(raw, "rb") as f:
            blob = f.read()
    elif os.path.exists(raw + ".gz"):
        with gzip.open(raw + ".gz", "rb") as f:
            blob = f.read()
    else:
        sys.exit(f"error: {raw} (or .gz) not found; scripts/fetch-mnist.sh downloads MNIST")
    zero, dtype, ndim = struct.unpack(">HBB", blob[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"error: {raw}: not an IDX file of unsigned bytes")
    dims = struct.unpack(f">{ndim}I", blob[4:4 + 4 * ndim])
    count = int(np.prod(dims))
    data = np.frombuffer(blob, dtype=np.uint8, count=count, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_split(directory, prefix):
    """Images (N, 784) uint8 and labels (N) uint8 of the `train` or `t10k` split."""
    images = read_idx(directory, f"{prefix}-images-idx3-ubyte")
    labels = read_idx(directory, f"{prefix}-labels-idx1-ubyte")
    images = images.reshape(images.shape[0], -1)
    if images.shape[0] != labels.shape[0]:
        sys.exit(f"error: {prefix}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def to_unit(pixels, out):
    """out = pixels * (1/255) in float32 (TF's MNIST reader and the crate multiply)."""
    np.multiply(pixels, F32(1.0 / 255.0), out=out, dtype=F32)
    return out


class Batcher:
    """Index batches in TensorFlow's `next_batch` order."""

    def __init__(self, n, batch, rng):
        self.n, self.batch, self.rng = n, batch, rng
        self.order = np.arange(n)
        self.pos = 0
        self.epoch = 0

    def next(self):
        n, b = self.n, self.batch
        if self.epoch == 0 and self.pos == 0:
            self.rng.shuffle(self.order)
        start = self.pos
        if start + b > n:
            # The epoch ends inside this batch: its tail, then the head of a fresh order.
            # (An epoch ending exactly at a batch boundary is counted on the next call, with
            # an empty tail, as in TensorFlow.)
            tail = self.order[start:].copy()
            self.epoch += 1
            self.rng.shuffle(self.order)
            self.pos = b - tail.size
            return np.concatenate([tail, self.order[:self.pos]])
        self.pos += b
        return self.order[start:self.pos]


# ---------------------------------------------------------------------------------------------
# Network


class Mlp:
    """Linear layers over one flat parameter buffer (like the crate), so Adam is one sweep."""

    def __init__(self, sizes, rng):
        self.sizes = sizes
        shapes = []
        for i, o in itertools.pairwise(sizes):
            shapes += [(o, i), (o,)]
        total = sum(int(np.prod(s)) for s in shapes)
        self.params = np.empty(total, dtype=F32)
        self.grads = np.zeros(total, dtype=F32)
        self.p_views, self.g_views = [], []
        off = 0
        for s in shapes:
            n = int(np.prod(s))
            self.p_views.append(self.params[off:off + n].reshape(s))
            self.g_views.append(self.grads[off:off + n].reshape(s))
            off += n
        for view in self.p_views:
            if view.ndim == 2:
                view[...] = truncated_normal(rng, view.shape, 0.1)
            else:
                view.fill(0.1)

    def layers(self):
        """(W (O, I), b (O), dW, db) of each layer."""
        p, g = self.p_views, self.g_views
        return [(p[2 * k], p[2 * k + 1], g[2 * k], g[2 * k + 1])
                for k in range(len(p) // 2)]

    def forward(self, x, acts):
        """Logits of x (B, I); acts[k] receives layer k's input, acts[-1] the logits."""
        acts[0] = x
        for k, (w, b, _, _) in enumerate(self.layers()):
            y = acts[k + 1]
            np.matmul(acts[k], w.T, out=y)
            y += b
        return acts[-1]

    def backward(self, dz, acts, dys):
        """Fills self.grads from dz = dL/dlogits (B, C); dys are (B, O) scratch buffers."""
        layers = self.layers()
        dy = dz
        for k in range(len(layers) - 1, -1, -1):
            w, _, dw, db = layers[k]
            np.matmul(dy.T, acts[k], out=dw)          # dW = dY^T X   (O, I)
            np.sum(dy, axis=0, out=db)                 # db = sum_rows dY
            if k > 0:                                  # the input's gradient is never needed
                np.matmul(dy, w, out=dys[k - 1])       # dX = dY W     (B, I)
                dy = dys[k - 1]


def truncated_normal(rng, shape, std):
    """Normal(0, std) in float32, values beyond 2 std redrawn (tf.truncated_normal)."""
    z = rng.standard_normal(shape, dtype=F32)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()), dtype=F32)
        bad = np.abs(z) > 2.0
    return z * F32(std)


def softmax_xent(z, labels, dz):
    """Mean softmax cross-entropy of logits z (B, C); dz receives its gradient.

    Returns (loss, correct). Computed with the row maximum subtracted; the gradient is
    (softmax(z) - onehot(labels)) / B.
    """
    bsz = z.shape[0]
    rows = np.arange(bsz)
    zmax = z.max(axis=1, keepdims=True)
    np.subtract(z, zmax, out=dz)
    np.exp(dz, out=dz)
    s = dz.sum(axis=1, keepdims=True)
    loss = (zmax[:, 0] + np.log(s[:, 0]) - z[rows, labels]).sum(dtype=F32) / F32(bsz)
    dz *= F32(1.0 / bsz) / s
    dz[rows, labels] -= F32(1.0 / bsz)
    correct = int((z.argmax(axis=1) == labels).sum())
    return F32(loss), correct


class Adam:
    """TensorFlow 1's AdamOptimizer over one flat buffer."""

    def __init__(self, n, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m = np.zeros(n, dtype=F32)
        self.v = np.zeros(n, dtype=F32)
        self.tmp = np.empty(n, dtype=F32)
        self.tmp2 = np.empty(n, dtype=F32)

    def step(self, params, grads):
        self.t += 1
        t, b1, b2 = self.t, self.beta1, self.beta2
        # lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t), computed in double and rounded (as the crate).
        lr_t = F32(self.lr * np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t))
        c1, c2 = F32(1.0) - F32(b1), F32(1.0) - F32(b2)
        m, v, tmp, tmp2 = self.m, self.v, self.tmp, self.tmp2
        # m += (g - m) * (1 - b1)
        np.subtract(grads, m, out=tmp)
        tmp *= c1
        m += tmp
        # v += (g*g - v) * (1 - b2)
        np.multiply(grads, grads, out=tmp)
        tmp -= v
        tmp *= c2
        v += tmp
        # w -= lr_t * m / (sqrt(v) + eps)
        np.sqrt(v, out=tmp)
        tmp += F32(self.eps)
        np.multiply(m, lr_t, out=tmp2)
        tmp2 /= tmp
        params -= tmp2


# ---------------------------------------------------------------------------------------------
# Output


def fmt_g6(x):
    """x as Python's '%g' (6 significant digits), with '.0' for whole numbers like str()."""
    s = format(float(x), "g")
    if float(x).is_integer() and not any(c in s for c in ".eni"):
        s += ".0"
    return s


def main(args):
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")
    if args.batch > train_x.shape[0]:
        sys.exit(f"error: batch size {args.batch} is larger than the training set "
                 f"({train_x.shape[0]} images)")
    if train_x.shape[1] != SIZES[0]:
        sys.exit(f"error: images have {train_x.shape[1]} pixels, the network takes {SIZES[0]}")

    init_seq, data_seq = np.random.SeedSequence(args.seed).spawn(2)
    model = Mlp(SIZES, np.random.default_rng(init_seq))
    batcher = Batcher(train_x.shape[0], args.batch, np.random.default_rng(data_seq))
    adam = Adam(model.params.size, args.lr)

    bsz = args.batch
    x = np.empty((bsz, SIZES[0]), dtype=F32)
    acts = [x] + [np.empty((bsz, o), dtype=F32) for o in SIZES[1:]]
    dys = [np.empty((bsz, o), dtype=F32) for o in SIZES[1:-1]]
    dz = np.empty((bsz, SIZES[-1]), dtype=F32)

    start = time.perf_counter()
    for i in range(args.iterations):
        idx = batcher.next()
        to_unit(train_x[idx], x)
        labels = train_y[idx]
        z = model.forward(x, acts)
        softmax_xent(z, labels, dz)
        model.backward(dz, acts, dys)
        adam.step(model.params, model.grads)
        if i % args.log_every == 0:
            # The tutorial's second sess.run: the same batch, after the update.
            z = model.forward(x, acts)
            loss, correct = softmax_xent(z, labels, dz)
            print("Iteration", str(i), "\t| Loss =", fmt_g6(loss),
                  "\t| Accuracy =", fmt_g6(F32(correct) / F32(bsz)), flush=True)
    elapsed = time.perf_counter() - start

    # Test accuracy, 500 rows at a time (the crate's evaluation batch).
    correct = 0
    chunk = 500
    for s in range(0, test_x.shape[0], chunk):
        xb = to_unit(test_x[s:s + chunk], np.empty((min(chunk, test_x.shape[0] - s),
                                                     SIZES[0]), dtype=F32))
        h = xb
        for w, b, _, _ in model.layers():
            h = h @ w.T + b
        correct += int((h.argmax(axis=1) == test_y[s:s + chunk]).sum())
    print()
    print("Accuracy on test set:", str(F32(correct) / F32(test_x.shape[0])))
    print(f"train_numpy: {args.iterations} iterations in {elapsed:.2f} s "
          f"({elapsed * 1e3 / args.iterations:.2f} ms/iteration)", file=sys.stderr)


if __name__ == "__main__":
    main(ARGS)
