"""``vaekit reproduce``: the published MNIST experiments, each from one command.

burda2015  Burda, Grosse & Salakhutdinov (2015), "Importance Weighted Autoencoders": the VAE with
           one stochastic layer, evaluated by importance sampling with k = 5000 (their Table 1).
kingma2013 Kingma & Welling (2013), "Auto-Encoding Variational Bayes": the lower bound on train
           and test against training samples evaluated, for five latent sizes (their Figure 2).

The full protocols take days on a CPU, so a ``Budget`` (epochs, or minutes of wall clock turned
into epochs by timing a few steps) shortens them; every output says so. An epoch budget is
deterministic: the same budget and seed give the same numbers.
"""

from __future__ import annotations

import math
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit import __version__, plots, runs, storage
from vaekit.data import Data
from vaekit.errors import VaekitError
from vaekit.estimator import VAE
from vaekit.evaluate import elbo_summary, eval_table, evaluate, importance_log_likelihood
from vaekit.train import BURDA_EPOCHS, BURDA_STAGES

RECORD = "reproduce.json"

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Budget:
    """A shortened protocol: ``epochs`` (deterministic) or ``minutes`` of wall clock; None: the paper's."""

    epochs: int | None = None
    minutes: float | None = None

    def __str__(self) -> str:
        if self.epochs is not None:
            return f"{self.epochs} epochs"
        return f"{self.minutes:g} minutes" if self.minutes is not None else "none (the paper's protocol)"


def parse_budget(text: str | None) -> Budget:
    """'30' -> 30 epochs; '20m' -> 20 minutes; '1.5h' -> 90 minutes; None -> no budget."""
    if text is None:
        return Budget()
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(m|min|h)?\s*", text)
    if not found or float(found[1]) <= 0 or (found[2] is None and not found[1].isdigit()):
        raise VaekitError(
            f"--budget must be whole epochs (30) or minutes (20m) or hours (1.5h), got {text!r}"
        )
    if found[2] is None:
        return Budget(epochs=int(found[1]))
    return Budget(minutes=float(found[1]) * (60 if found[2] == "h" else 1))


def _machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _seconds_per_epoch(params: dict[str, Any], x_train: torch.Tensor, x_test: torch.Tensor) -> float:
    """Wall-clock seconds of one training epoch plus its test ELBO, timed on a throwaway model."""
    probe = VAE(**{**params, "epochs": 1, "verbose": False})
    batch = params["batch_size"]
    probe.partial_fit(x_train[:batch])  # builds the model; not timed
    steps, batches = max(5, 2000 // batch), max(1, len(x_train) // batch)
    start = time.perf_counter()
    for i in range(steps):
        probe.partial_fit(x_train[(i % batches) * batch : (i % batches + 1) * batch])
    per_step = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    elbo_summary(probe.module_, x_test[:1000])
    per_test = (time.perf_counter() - start) * len(x_test) / min(1000, len(x_test))
    return per_step * math.ceil(len(x_train) / batch) + per_test


def _seconds_to_evaluate(params: dict[str, Any], x_test: torch.Tensor, k: int) -> float:
    """Wall-clock seconds of the importance-sampled log p(x) on x_test, timed on 10 examples."""
    probe = VAE(**{**params, "epochs": 1, "verbose": False}).partial_fit(x_test[:10])
    start = time.perf_counter()
    importance_log_likelihood(probe.module_, x_test[:10], k=k)
    return (time.perf_counter() - start) * len(x_test) / min(10, len(x_test))


def _epochs_within(minutes: float, per_epoch: float, fixed: float, what: str, most: int) -> int:
    """Whole epochs that fit in ``minutes`` after ``fixed`` seconds of other work: at least 1, and
    at most ``most`` (the paper's protocol: a long budget on small data does not run past it)."""
    epochs = min(most, int((minutes * 60 - fixed) // per_epoch))
    if epochs < 1:
        raise VaekitError(
            f"--budget {minutes:g}m is too short: {what} needs about {(per_epoch + fixed) / 60:.1f} minutes "
            "on this machine"
        )
    return epochs


def _fit_into(
    run: Path,
    vae: VAE,
    data: Data,
    echo: Echo,
    extra: Callable[[VAE], dict[str, float]] | None = None,
    source: dict[str, Any] | None = None,
) -> None:
    """Train vae on data, writing the metrics of the epochs so far (and ``extra``'s) to
    run/metrics.jsonl after each epoch; then save the model and its pictures there.

    source : the data's spec as ``vaekit train`` records it (config.json), so that ``vaekit eval``
        and ``plot`` find the run's data by themselves
    """
    run.mkdir(parents=True, exist_ok=True)
    (run / runs.METRICS).unlink(missing_ok=True)

    def log_epoch(row: dict[str, float]) -> None:
        row.update(extra(vae) if extra is not None else {})  # row is the last of vae.history_
        storage.write_jsonl(run / runs.METRICS, vae.history_)
        echo(
            f"epoch {int(row['epoch'])}/{vae.epochs}: train ELBO {row['train_elbo']:.2f}, "
            f"test ELBO {row['test_elbo']:.2f} nats (lr {row['lr']:.2e}, {row['seconds']:.1f} s)"
        )

    vae.fit(
        data.x_train, X_test=data.x_test, image_shape=data.image_shape, on_epoch_end=log_epoch, source=source
    )
    vae.save(run)
    plots.write_pictures(vae, run, data.x_test.numpy())


def _record(run: Path, record: dict[str, Any]) -> None:
    storage.write_json(run / RECORD, {"vaekit_version": __version__, "machine": _machine(), **record})


# ------------------------------------------------------------------------------------- burda2015

#: Burda et al. (2015), section 5 and appendix C: one stochastic layer, 784-200-200-50 (tanh)
BURDA_PARAMS: dict[str, Any] = {
    "latent_dim": 50,
    "hidden": (200, 200),
    "activation": "tanh",
    "likelihood": "bernoulli",
    "binarize": "dynamic",
    "optimizer": "adam",  # beta1 0.9, beta2 0.999 (torch's defaults)
    "adam_eps": 1e-4,
    "lr": 1e-3,
    "lr_schedule": "burda",  # 1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7
    "batch_size": 20,
    "seed": 0,
}
BURDA_PAPER_NLL = 86.76  # their Table 1: VAE, one stochastic layer, k = 1, test NLL in nats
BURDA_K = 5000


def burda2015(
    run: Path,
    data: Data,
    budget: Budget,
    k: int = BURDA_K,
    progress: bool = True,
    echo: Echo = print,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and evaluate Burda et al.'s VAE into the run folder; returns eval.json's contents.

    The schedule's 8 stages keep their 3^i : 3280 proportions of however many epochs
    are trained. The test set is binarized once with the recorded seed (model seed + 2).
    """
    params = dict(BURDA_PARAMS)
    epochs = budget.epochs or BURDA_EPOCHS
    if budget.minutes is not None:
        eval_seconds = _seconds_to_evaluate(params, data.x_test, k)
        per_epoch = _seconds_per_epoch(params, data.x_train, data.x_test)
        epochs = _epochs_within(
            budget.minutes, per_epoch, eval_seconds, "one epoch and the evaluation", BURDA_EPOCHS
        )
        echo(
            f"budget {budget}: {per_epoch:.1f} s per epoch and {eval_seconds / 60:.1f} min of evaluation "
            f"measured here, so {epochs} epochs (rerun exactly with --budget {epochs})"
        )
    stages = [round(3**i * epochs / BURDA_EPOCHS, 4) for i in range(BURDA_STAGES)]
    shortened = epochs != BURDA_EPOCHS or k != BURDA_K or len(data.x_test) != 10000
    note = (
        f"SHORTENED: {epochs} of the paper's {BURDA_EPOCHS} epochs (budget {budget}), "
        f"the 8 learning-rate stages scaled to {stages} epochs; k = {k} on {len(data.x_test)} test images. "
        "Expect a worse number than the paper's."
        if shortened
        else "the paper's full protocol"
    )
    echo(f"burda2015: 784-200-200-50 tanh VAE, Bernoulli, dynamically binarized {data.source}")
    echo(note)
    record = {
        "paper": "Burda, Grosse & Salakhutdinov (2015), Importance Weighted Autoencoders, Table 1",
        "budget": str(budget),
        "epochs": epochs,
        "stage_epochs": stages,
        "shortened": shortened,
        "note": note,
        "params": {**params, "hidden": list(params["hidden"])},
        "data": data.source,
        "k": k,
        "paper_test_nll": BURDA_PAPER_NLL,
    }
    _record(run, {**record, "status": "training"})
    vae = VAE(epochs=epochs, verbose=progress, **params)
    _fit_into(run, vae, data, echo, source=source)
    x = vae._eval_targets(data.x_test, vae.seed + 2)
    result = {
        "data": data.source,
        "binarization_seed": vae.seed + 2,
        **evaluate(vae.module_, x, k, vae.samples, vae.estimator, vae.seed, progress=progress),
    }
    storage.write_json(run / runs.EVAL, result)
    nll = -result["log_px"]
    _record(run, {**record, "status": "done", "test_nll": nll, "test_nll_sem": result["log_px_sem"]})
    echo(eval_table(result, vae.samples))
    echo(
        f"test NLL -log p(x), k={k}: {nll:.2f} ± {result['log_px_sem']:.2f} nats "
        f"(paper: {BURDA_PAPER_NLL} nats) — {'shortened run, see above' if shortened else 'full protocol'}"
    )
    echo(f"run folder: {run}")
    return result


# ------------------------------------------------------------------------------------ kingma2013

#: Kingma & Welling (2013), section 5: 500 tanh hidden units, Adagrad, minibatch 100, L = 1,
#: a weight decay from the prior p(theta) = N(0, I) (per example: 1 / N of the training set)
KINGMA_PARAMS: dict[str, Any] = {
    "hidden": (500,),
    "activation": "tanh",
    "likelihood": "bernoulli",
    "binarize": "dynamic",
    "optimizer": "adagrad",
    "lr": 0.02,  # the paper chose from {0.01, 0.02, 0.1} by early training progress
    "batch_size": 100,
    "samples": 1,
    "seed": 0,
}
KINGMA_LATENTS = (3, 5, 10, 20, 200)
KINGMA_SAMPLES = 10**8  # the right end of their Figure 2's x axis
KINGMA_TRAIN_BOUND_ROWS = 10_000  # train digits on which the train curve's bound is evaluated


def kingma2013(
    run: Path,
    data: Data,
    budget: Budget,
    latents: tuple[int, ...] = KINGMA_LATENTS,
    progress: bool = True,
    echo: Echo = print,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Figure 2 of Kingma & Welling: one model per latent size in run/latent-J, figure2.png and .json.

    An epoch budget is epochs per latent size; a minutes budget is shared by all of them.
    """
    params = {**KINGMA_PARAMS, "weight_decay": 1.0 / len(data.x_train)}
    full = math.ceil(KINGMA_SAMPLES / len(data.x_train))
    epochs = budget.epochs or full
    if budget.minutes is not None:
        per_epoch = _seconds_per_epoch({**params, "latent_dim": max(latents)}, data.x_train, data.x_test)
        per_latent = budget.minutes / len(latents)
        epochs = _epochs_within(per_latent, per_epoch, 0.0, "one epoch per latent size", full)
        echo(
            f"budget {budget}: {per_epoch:.1f} s per epoch measured here, so {epochs} epochs per latent "
            f"size (rerun exactly with --budget {epochs})"
        )
    samples = epochs * len(data.x_train)
    shortened = samples < KINGMA_SAMPLES
    note = (
        f"SHORTENED: {epochs} epochs ({samples:.2g} training samples) per latent size, budget {budget}; "
        f"the paper's Figure 2 runs to {KINGMA_SAMPLES:.0e}"
        if shortened
        else "the paper's full protocol"
    )
    echo(f"kingma2013: 784-500-J tanh VAE, Adagrad, minibatch 100, J in {list(latents)}; {note}")
    curves: dict[str, dict[str, list[float]]] = {}
    record = {
        "paper": "Kingma & Welling (2013), Auto-Encoding Variational Bayes, Figure 2 (MNIST)",
        "budget": str(budget),
        "epochs_per_latent": epochs,
        "shortened": shortened,
        "note": note,
        "params": {**params, "hidden": list(params["hidden"])},
        "data": data.source,
        "curves": curves,
        "train_bound": f"ELBO on the first {KINGMA_TRAIN_BOUND_ROWS} train digits, binarization seed "
        f"{params['seed'] + 3}",
    }
    # the train bound at each point: the model of that moment on a fixed binarization of 10,000 train digits
    x_bound = VAE(**params)._eval_targets(data.x_train[:KINGMA_TRAIN_BOUND_ROWS], params["seed"] + 3)

    def train_bound(vae: VAE) -> dict[str, float]:
        return {"train_bound": elbo_summary(vae.module_, x_bound, None, 1, "analytic", vae.seed)["elbo"]}

    for latent in latents:
        echo(f"-- latent size {latent}")
        vae = VAE(latent_dim=latent, epochs=epochs, verbose=progress, **params)
        _fit_into(run / f"latent-{latent}", vae, data, echo, train_bound, source)
        curves[f"N_z = {latent}"] = {
            "samples": [row["epoch"] * len(data.x_train) for row in vae.history_],
            "train": [row["train_bound"] for row in vae.history_],
            "test": [row["test_elbo"] for row in vae.history_],
        }
        _record(run, {**record, "status": f"latent size {latent} done"})
    figure = plots.lower_bound_panels(curves, run / "figure2.png")
    _record(run, {**record, "status": "done"})
    storage.write_json(run / "figure2.json", curves)
    for title, c in curves.items():
        last = f"train {c['train'][-1]:.2f}, test {c['test'][-1]:.2f} nats"
        echo(f"{title}: {last} after {c['samples'][-1]:.2g} samples")
    echo(f"figure: {figure}; numbers: {run / 'figure2.json'}")
    return curves


PAPERS = {"burda2015": burda2015, "kingma2013": kingma2013}
