#!/usr/bin/env python3
"""Plots a `mnist-mlp train --metrics FILE.csv` file: loss and batch accuracy against the
iteration, with the final test accuracy marked.

Usage: scripts/plot-metrics.py FILE.csv [-o OUT.png] [--title TEXT]

The CSV has the header `iteration,loss,batch_accuracy,test_accuracy,elapsed_ms,lr`, one row per
log step (test_accuracy empty) and, when the run finished, a row `ITER,,,ACC,,` with the test
accuracy. A run continued with `--resume` appends to the same file; every test-accuracy row is
marked, the last one labelled. An interrupted run has no such row and is plotted without it.

Needs matplotlib (tests/python/requirements.txt); draws with the Agg backend, no display.
Exit status: 0 on success, 1 for a missing, unreadable or malformed CSV (the message names the
file and line), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED = ("iteration", "loss", "batch_accuracy", "test_accuracy")


class CsvError(Exception):
    pass


@dataclass
class Metrics:
    iterations: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    batch_accuracy: list[float] = field(default_factory=list)
    elapsed_ms: list[float] = field(default_factory=list)
    tests: list[tuple[int, float]] = field(default_factory=list)  # (iteration, test accuracy)


def read_metrics(path: Path) -> Metrics:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CsvError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CsvError(f"{path}: is a directory, not a CSV file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CsvError(f"{path}: cannot read: {e}") from None

    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        raise CsvError(f"{path}: empty file, expected a `mnist-mlp train --metrics` CSV")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CsvError(
            f"{path}:1: header {','.join(header)!r} lacks {', '.join(missing)} "
            f"(not a `mnist-mlp train --metrics` CSV?)"
        )
    col = {name: header.index(name) for name in header}

    m = Metrics()
    for line, row in enumerate(rows, start=2):
        if not row or all(not v.strip() for v in row):
            continue
        if row == header:  # a header repeated by hand-concatenated files
            continue
        if len(row) != len(header):
            raise CsvError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")

        def cell(name: str, kind=float, row=row, line=line):
            v = row[col[name]].strip() if name in col else ""
            if not v:
                return None
            try:
                return kind(v)
            except ValueError:
                raise CsvError(f"{path}:{line}: {name} = {v!r} is not a number") from None

        it = cell("iteration", int)
        if it is None:
            raise CsvError(f"{path}:{line}: no iteration")
        loss, acc, test = cell("loss"), cell("batch_accuracy"), cell("test_accuracy")
        if test is not None:
            if not 0.0 <= test <= 1.0:
                raise CsvError(f"{path}:{line}: test_accuracy {test} is not in [0, 1]")
            m.tests.append((it, test))
        if loss is None and acc is None:
            if test is None:
                raise CsvError(f"{path}:{line}: neither loss, batch_accuracy nor test_accuracy")
            continue
        if loss is None or acc is None:
            raise CsvError(f"{path}:{line}: a log row needs both loss and batch_accuracy")
        m.iterations.append(it)
        m.loss.append(loss)
        m.batch_accuracy.append(acc)
        elapsed = cell("elapsed_ms")
        m.elapsed_ms.append(math.nan if elapsed is None else elapsed)
    if not m.iterations:
        raise CsvError(f"{path}: no log rows (iteration, loss, batch_accuracy) to plot")
    return m


def plot(m: Metrics, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, sharex=True, figsize=(8, 6), constrained_layout=True)
    fig.suptitle(title)

    ax_loss.plot(m.iterations, m.loss, color="tab:red", lw=1.2)
    ax_loss.set_ylabel("training loss (batch)")
    finite = [v for v in m.loss if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 50:
        ax_loss.set_yscale("log")
    ax_loss.grid(True, alpha=0.3)

    ax_acc.plot(m.iterations, m.batch_accuracy, color="tab:blue", lw=1.0, alpha=0.8, label="batch accuracy")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_xlabel("iteration")
    ax_acc.grid(True, alpha=0.3)
    if m.tests:
        its, accs = zip(*m.tests, strict=True)
        ax_acc.scatter(its, accs, color="tab:green", zorder=3, marker="o", s=36, label="test accuracy")
        it, acc = m.tests[-1]
        ax_acc.axhline(acc, color="tab:green", ls="--", lw=0.8)
        ax_acc.annotate(
            f"test {acc:.4f}",
            (it, acc),
            textcoords="offset points",
            xytext=(-8, -16),
            ha="right",
            color="tab:green",
        )
    ax_acc.legend(loc="lower right")

    # How long it took, from the elapsed column, when the run logged it.
    elapsed = [v for v in m.elapsed_ms if math.isfinite(v)]
    if elapsed:
        ax_loss.set_title(
            f"{len(m.iterations)} log steps up to iteration {m.iterations[-1]}, "
            f"{elapsed[-1] / 1e3:.1f} s elapsed at the last one",
            fontsize=9,
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Plot loss and batch accuracy of a `mnist-mlp train --metrics` CSV, "
        "with the final test accuracy marked.",
    )
    ap.add_argument("csv", type=Path, metavar="FILE.csv")
    ap.add_argument("-o", "--output", type=Path, metavar="OUT.png",
                    help="image to write [FILE.png, beside the CSV]")
    ap.add_argument("--title", help="plot title [the CSV's file name]")
    a = ap.parse_args(argv)

    out = a.output or a.csv.with_suffix(".png")
    try:
        m = read_metrics(a.csv)
    except CsvError as e:
        print(f"plot-metrics: error: {e}", file=sys.stderr)
        return 1
    try:
        plot(m, out, a.title or a.csv.name)
    except ImportError as e:
        print(f"plot-metrics: error: {e}: install tests/python/requirements.txt "
              f"(scripts/python-tests.sh makes a venv with it)", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"plot-metrics: error: cannot write {out}: {e}", file=sys.stderr)
        return 1
    final = f", test accuracy {m.tests[-1][1]}" if m.tests else ", no test accuracy (interrupted run?)"
    print(f"{out}: {len(m.iterations)} log steps up to iteration {m.iterations[-1]}{final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
