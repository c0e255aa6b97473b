#!/usr/bin/env python3
"""Reference implementation in PyTorch of the crate's `seed` training run.

The same run as train_numpy.py (and `mnist-mlp train` with its defaults), written the way a
PyTorch user would: four nn.Linear layers with no activation between them, weights
trunc_normal_(std 0.1, cut at +-2 std), biases 0.1, nn.CrossEntropyLoss (mean over the
batch), torch.optim.Adam(lr 1e-4, betas (0.9, 0.999), eps 1e-8), batch 128, 1000 iterations,
float32. Data loading and the batch order (TF's next_batch) come from train_numpy.py.

One documented difference: torch.optim.Adam adds eps to the bias-corrected sqrt(v_hat), TF1
(and the crate, and train_numpy.py) to the uncorrected sqrt(v); with eps = 1e-8 the two differ
only while sqrt(v) is below ~1e-6, which changes nothing measurable here.

stdout and stderr as train_numpy.py: the tutorial's lines, then on stderr
"N iterations in X s (Y ms/iteration)" for the training loop. Needs torch and numpy.
"""

import argparse
import itertools
import os
import sys
import time


def parse_args():
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
                   help="intra-op threads (torch.set_num_threads, and the BLAS/OpenMP "
                        "variables before import; default: torch's own)")
    args = p.parse_args()
    for name in ("iterations", "batch", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


ARGS = parse_args()
# The environment first: OpenMP and BLAS read it when they load (train_numpy imports numpy).
if ARGS.threads is not None:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import train_numpy as ref  # noqa: E402
from torch import nn  # noqa: E402

SIZES = ref.SIZES


def build_model():
    """784-512-256-128-10, nn.Linear only, initialised like the tutorial."""
    layers = [nn.Linear(i, o) for i, o in itertools.pairwise(SIZES)]
    with torch.no_grad():
        for layer in layers:
            nn.init.trunc_normal_(layer.weight, mean=0.0, std=0.1, a=-0.2, b=0.2)
            layer.bias.fill_(0.1)
    return nn.Sequential(*layers)


def main(args):
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    train_x, train_y = ref.load_split(args.data, "train")
    test_x, test_y = ref.load_split(args.data, "t10k")
    if args.batch > train_x.shape[0]:
        sys.exit(f"error: batch size {args.batch} is larger than the training set "
                 f"({train_x.shape[0]} images)")

    init_seq, data_seq = np.random.SeedSequence(args.seed).spawn(2)
    torch.manual_seed(int(init_seq.generate_state(1)[0]))
    model = build_model()
    batcher = ref.Batcher(train_x.shape[0], args.batch, np.random.default_rng(data_seq))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = nn.CrossEntropyLoss()

    # uint8 tensors sharing numpy's memory; each batch is gathered and scaled into x.
    images = torch.from_numpy(np.ascontiguousarray(train_x))
    labels_all = torch.from_numpy(train_y.astype(np.int64))
    x = torch.empty((args.batch, SIZES[0]), dtype=torch.float32)
    scale = torch.tensor(1.0 / 255.0, dtype=torch.float32)

    start = time.perf_counter()
    for i in range(args.iterations):
        idx = torch.from_numpy(batcher.next())
        torch.mul(images[idx], scale, out=x)
        labels = labels_all[idx]
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()
        if i % args.log_every == 0:
            # The tutorial's second sess.run: the same batch, after the update.
            with torch.no_grad():
                z = model(x)
                loss = loss_fn(z, labels).item()
                correct = int((z.argmax(dim=1) == labels).sum())
            print("Iteration", str(i), "\t| Loss =", ref.fmt_g6(np.float32(loss)),
                  "\t| Accuracy =", ref.fmt_g6(np.float32(correct) / np.float32(args.batch)),
                  flush=True)
    elapsed = time.perf_counter() - start

    correct = 0
    with torch.no_grad():
        for s in range(0, test_x.shape[0], 500):
            xb = torch.from_numpy(np.ascontiguousarray(test_x[s:s + 500])).float() * scale
            z = model(xb)
            correct += int((z.argmax(dim=1) == torch.from_numpy(
                test_y[s:s + 500].astype(np.int64))).sum())
    print()
    print("Accuracy on test set:", str(np.float32(correct) / np.float32(test_x.shape[0])))
    print(f"train_torch: {args.iterations} iterations in {elapsed:.2f} s "
          f"({elapsed * 1e3 / args.iterations:.2f} ms/iteration)", file=sys.stderr)


if __name__ == "__main__":
    main(ARGS)
