"""Anomaly detection: AUROC of telling MNIST test digits from Fashion-MNIST test images by a VAE's scores.

Trains the default VAE on MNIST (or loads ``--run``), scores the first ``-n`` test images of
both data sets with :func:`vaekit.evaluate.anomaly_scores` (importance-sampled -log p(x) with
``--k`` samples, and the squared reconstruction error; the same numbers as ``vaekit score``),
and prints the AUROC of each score with Fashion-MNIST as the positive (anomalous) class.
Needs Fashion-MNIST (Debian's dataset-fashion-mnist, ``$VAEKIT_DATA``, or a download).

    python benchmarks/anomaly_auroc.py [--run RUN | --epochs 10] [-n 2000] [--k 200] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vaekit import VAE
from vaekit.data import load_data
from vaekit.evaluate import anomaly_scores, auroc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained (unconditional) MNIST run folder")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the default VAE when no --run")
    parser.add_argument("-n", type=int, default=2000, help="test images of each data set (default: 2000)")
    parser.add_argument("--k", type=int, default=200, help="importance samples per image (default: 200)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    mnist, fashion = load_data("mnist"), load_data("fashion-mnist")
    start = time.perf_counter()
    vae = VAE.load(args.run) if args.run else VAE(epochs=args.epochs).fit(mnist.x_train)
    trained = time.perf_counter()
    scores = {
        name: anomaly_scores(vae.module_, vae._eval_targets(data.x_test[: args.n], vae.seed + 2), k=args.k)
        for name, data in (("mnist", mnist), ("fashion-mnist", fashion))
    }
    result = {
        "run": str(args.run) if args.run else f"default VAE, {args.epochs} epochs",
        "n_per_set": args.n,
        "k": args.k,
        **{
            f"auroc_{score}": auroc(scores["mnist"][score].numpy(), scores["fashion-mnist"][score].numpy())
            for score in ("nll", "recon_error")
        },
        "mean_nll_mnist": float(scores["mnist"]["nll"].mean()),
        "mean_nll_fashion": float(scores["fashion-mnist"]["nll"].mean()),
        "load_or_train_seconds": trained - start,
        "score_seconds": time.perf_counter() - trained,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    for key, value in result.items():
        print(f"{key:<18} {value:.4f}" if isinstance(value, float) else f"{key:<18} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
