"""Burda et al.'s 1-layer VAE under a training recipe: held-out log p(x) against wall time.

The same 784-200-200-50 tanh network as ``vaekit reproduce burda2015`` (Bernoulli decoder,
dynamically binarized MNIST), trained with the recipe the flags give, e.g. the paper's own
(``--recipe paper``: batch 20, Adam 1e-3, the 8-stage schedule over 3280 epochs) or the one of
``reproduce burda2015 --fast`` (``--recipe fast``), or any batch size / rate / schedule / epochs.

``--split validation`` (the search) trains on the first 50,000 training digits and measures on
the last 10,000 (binarized once, seed 3): recipes are chosen here, never by the test set.
``--split test`` trains on all 60,000 and measures on the 10,000 test digits (binarized once
with seed 2, as ``reproduce`` does).

Every ``--every`` minutes of training, and at the end, it records the training wall time, the
held-out ELBO and an importance-sampled estimate of log p(x) (``--probe-k`` samples on the first
``--probe-n`` held-out digits; not counted as training time). Training stops after ``--minutes``
of training time even if the recipe's epochs are not done (the paper's schedule is then cut
short, with the rates of the full 3280-epoch run). At the end: ``--final-k`` on every held-out
digit. One JSON object per line goes to ``--out``. Usage::

    OMP_NUM_THREADS=1 python benchmarks/burda_fast.py --recipe paper --split test --minutes 60 \\
        --out paper.jsonl
    OMP_NUM_THREADS=1 python benchmarks/burda_fast.py --batch 100 --lr 3e-3 --schedule cosine \\
        --epochs 300 --split validation --minutes 12 --out search.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch

from vaekit import VAE
from vaekit.data import binarize, load_mnist
from vaekit.evaluate import importance_log_likelihood, standard_error
from vaekit.reproduce import BURDA_FAST, BURDA_PARAMS

VALIDATION_ROWS = 10_000
RECIPES = {"paper": {"epochs": 3280}, "fast": BURDA_FAST}


class OutOfTime(Exception):
    """Raised from the epoch callback to end training at the time limit."""


def held_out(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows binarized once) of the split."""
    data = load_mnist()
    x_train = torch.as_tensor(data.x_train.numpy())  # float32 rows in [0, 1]
    if split == "validation":
        x_fit, x_held, seed = x_train[:-VALIDATION_ROWS], x_train[-VALIDATION_ROWS:], 3
    else:
        x_fit, x_held, seed = x_train, torch.as_tensor(data.x_test.numpy()), 2
    return x_fit, binarize(x_held, torch.Generator().manual_seed(seed))


def estimate(vae: VAE, x: torch.Tensor, k: int) -> dict[str, float]:
    values = importance_log_likelihood(vae.module_, x, k=k)
    return {"log_px": float(values.mean()), "log_px_sem": standard_error(values), "k": k, "n": len(x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="start from a named recipe")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--schedule", help="a vaekit lr_schedule (constant, burda, cosine, plateau)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--warmup-steps", type=int, help="KL warm-up steps")
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--minutes", type=float, default=60.0, help="training wall time at most")
    parser.add_argument("--every", type=float, default=5.0, help="minutes of training between probes")
    parser.add_argument("--probe-k", type=int, default=1000)
    parser.add_argument("--probe-n", type=int, default=1000)
    parser.add_argument("--final-k", type=int, default=5000)
    parser.add_argument("--final-n", type=int, default=VALIDATION_ROWS)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    params = {**BURDA_PARAMS, **RECIPES.get(args.recipe, {})}
    given = {
        "batch_size": args.batch,
        "lr": args.lr,
        "lr_schedule": args.schedule,
        "epochs": args.epochs,
        "warmup_steps": args.warmup_steps,
    }
    params.update({k: v for k, v in given.items() if v is not None})
    x_fit, x_held = held_out(args.split)
    vae = VAE(**{**params, "verbose": False})
    recipe = {k: v for k, v in params.items() if k in given}
    log = args.out.open("a")

    def write(row: dict[str, object]) -> None:
        log.write(json.dumps({"recipe": recipe, "split": args.split, **row}) + "\n")
        log.flush()
        print(json.dumps(row), flush=True)

    trained, last_probe, epoch_start = 0.0, 0.0, time.perf_counter()

    def on_epoch_end(row: dict[str, float]) -> None:
        nonlocal trained, last_probe, epoch_start
        trained += time.perf_counter() - epoch_start  # includes the held-out ELBO of the epoch
        point = {"epoch": int(row["epoch"]), "train_s": round(trained, 1), "elbo": row["test_elbo"]}
        if trained - last_probe >= args.every * 60 or trained >= args.minutes * 60:
            last_probe = trained
            point.update(estimate(vae, x_held[: args.probe_n], args.probe_k))
        write(point)
        if trained >= args.minutes * 60:
            raise OutOfTime
        epoch_start = time.perf_counter()

    with contextlib.suppress(OutOfTime):
        vae.fit(x_fit, X_test=x_held, on_epoch_end=on_epoch_end)
    final = estimate(vae, x_held[: args.final_n], args.final_k)
    write({"final": True, "epochs_trained": len(vae.history_), "train_s": round(trained, 1), **final})


if __name__ == "__main__":
    main()
