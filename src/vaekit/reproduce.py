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
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit import __version__, plots
from vaekit.config import TRAIN_BOUND_SEED
from vaekit.data import Data, binarize, data_spec, load_data
from vaekit.errors import VaekitError
from vaekit.estimator import VAE
from vaekit.evaluate import elbo_summary, eval_table, importance_log_likelihood
from vaekit.optim import BURDA_EPOCHS, BURDA_STAGES
from vaekit.runner import train_into
from vaekit.runs import EVAL, FIGURE2, FIGURE2_DATA, REPRODUCE, Run, latent_run

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


def _record(run: Run, record: dict[str, Any]) -> None:
    run.write_json(REPRODUCE, {"vaekit_version": __version__, "machine": _machine(), **record})


@dataclass(frozen=True)
class Settings:
    """What a ``vaekit reproduce`` command asks for; a resumed command must ask for the same."""

    budget: Budget = Budget()
    eval_n: int | None = None  # burda2015: evaluate the first eval_n test digits (None: all)
    eval_k: int | None = None  # burda2015: importance samples (None: the paper's 5000)
    data: str = "mnist"

    def describe(self) -> dict[str, Any]:
        return {"budget": str(self.budget), "eval_n": self.eval_n, "eval_k": self.eval_k, "data": self.data}


def _plan(run: Run, settings: Settings, resume: bool, plan: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The protocol's record: made by ``plan()`` (which may time the machine) and written to
    the run's record, or, on a resume, read back from there, so that a minutes budget trains the
    same epochs as before the kill; a resumed command that asks for other settings is refused."""
    if not resume or not run.has(REPRODUCE):
        record = {"settings": settings.describe(), **plan()}
        _record(run, {**record, "status": "training"})
        return record
    record = run.read_json(REPRODUCE)
    if not isinstance(record, dict) or record.get("settings") != settings.describe():
        saved = record.get("settings") if isinstance(record, dict) else None
        raise VaekitError(
            f"{run.path(REPRODUCE)}: the run was started with {saved}, not {settings.describe()}; "
            "resume with the same command"
        )
    return record


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
    run: Run,
    data: Data,
    settings: Settings,
    resume: bool = False,
    progress: bool = True,
    echo: Echo = print,
    command: str = "vaekit reproduce burda2015 --resume",
) -> dict[str, Any]:
    """Train and evaluate Burda et al.'s VAE into the run folder; returns the evaluation's numbers.

    The schedule's 8 stages keep their 3^i : 3280 proportions of however many epochs
    are trained. The test set is binarized once with the recorded seed (model seed + 2).
    A minutes budget covers training and evaluation: it is shared out by timing both here,
    evaluating fewer digits when the whole test set would take more than half of it.
    """
    params = dict(BURDA_PARAMS)
    k = settings.eval_k or BURDA_K
    n_test = min(settings.eval_n or len(data.x_test), len(data.x_test))

    def plan() -> dict[str, Any]:
        epochs, n = settings.budget.epochs or BURDA_EPOCHS, n_test
        if settings.budget.minutes is not None:
            per_example = _seconds_to_evaluate(params, data.x_test, k) / len(data.x_test)
            if settings.eval_n is None:  # the evaluation gets at most half of the budget
                n = max(1, min(n, int(settings.budget.minutes * 30 / per_example)))
            per_epoch = _seconds_per_epoch(params, data.x_train, data.x_test)
            epochs = _epochs_within(
                settings.budget.minutes,
                per_epoch,
                n * per_example,
                "one epoch and the evaluation",
                BURDA_EPOCHS,
            )
            echo(
                f"budget {settings.budget}: {per_epoch:.1f} s per epoch and "
                f"{n * per_example / 60:.1f} min of evaluation on {n} digits measured here, "
                f"so {epochs} epochs (rerun exactly with --budget {epochs} --eval-n {n})"
            )
        stages = [round(3**i * epochs / BURDA_EPOCHS, 4) for i in range(BURDA_STAGES)]
        short_training = epochs != BURDA_EPOCHS
        short_eval = k != BURDA_K or n != 10000
        parts = (
            [
                f"{epochs} of the paper's {BURDA_EPOCHS} epochs (budget {settings.budget}), the 8 "
                f"learning-rate stages scaled to {stages} epochs"
            ]
            if short_training
            else []
        )
        parts += (
            [f"evaluation with k = {k} on {n} test digits (the paper: 5000 on 10000)"] if short_eval else []
        )
        note = (
            f"SHORTENED: {'; '.join(parts)}. Expect a worse number than the paper's."
            if parts
            else ("the paper's full protocol")
        )
        return {
            "paper": "Burda, Grosse & Salakhutdinov (2015), Importance Weighted Autoencoders, Table 1",
            "budget": str(settings.budget),
            "epochs": epochs,
            "stage_epochs": stages,
            "eval_n": n,
            "k": k,
            "shortened": bool(parts),
            "note": note,
            "params": {**params, "hidden": list(params["hidden"])},
            "data": data.source,
            "paper_test_nll": BURDA_PAPER_NLL,
        }

    record = _plan(run, settings, resume, plan)
    echo(f"burda2015: 784-200-200-50 tanh VAE, Bernoulli, dynamically binarized {data.source}")
    echo(record["note"])
    vae = VAE(epochs=record["epochs"], verbose=progress, **params)
    source = {"data": settings.data, "resize": None}
    train_into(run, vae, data, source, command, resume=resume, echo=echo)
    _record(run, {**record, "status": "evaluating"})
    x = data.x_test[: record["eval_n"]]
    result = {"data": data.source, **vae.evaluate(x, k=record["k"], progress=progress, run=run.folder)}
    run.write_json(EVAL, result)
    nll = -result["log_px"]
    _record(run, {**record, "status": "done", "test_nll": nll, "test_nll_sem": result["log_px_sem"]})
    echo(eval_table(result, vae.samples))
    done = "shortened run, see above" if record["shortened"] else "full protocol"
    echo(
        f"test NLL -log p(x), k={record['k']}: {nll:.2f} ± {result['log_px_sem']:.2f} nats "
        f"(paper: {BURDA_PAPER_NLL} nats) — {done}"
    )
    echo(f"run folder: {run.folder}")
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
    run: Run,
    data: Data,
    settings: Settings,
    resume: bool = False,
    progress: bool = True,
    echo: Echo = print,
    command: str = "vaekit reproduce kingma2013 --resume",
    latents: tuple[int, ...] = KINGMA_LATENTS,
) -> dict[str, Any]:
    """Figure 2 of Kingma & Welling: one model per latent size in a sub-run, and the figure
    with its numbers.

    An epoch budget is epochs per latent size; a minutes budget is shared by all of them.
    A resumed command keeps the latent sizes already trained and resumes the one in progress.
    """
    params = {**KINGMA_PARAMS, "weight_decay": 1.0 / len(data.x_train)}
    full = math.ceil(KINGMA_SAMPLES / len(data.x_train))

    def plan() -> dict[str, Any]:
        epochs = settings.budget.epochs or full
        if settings.budget.minutes is not None:
            per_epoch = _seconds_per_epoch({**params, "latent_dim": max(latents)}, data.x_train, data.x_test)
            per_latent = settings.budget.minutes / len(latents)
            epochs = _epochs_within(per_latent, per_epoch, 0.0, "one epoch per latent size", full)
            echo(
                f"budget {settings.budget}: {per_epoch:.1f} s per epoch measured here, so {epochs} epochs "
                f"per latent size (rerun exactly with --budget {epochs})"
            )
        samples = epochs * len(data.x_train)
        note = (
            f"SHORTENED: {epochs} epochs ({samples:.2g} training samples) per latent size, budget "
            f"{settings.budget}; the paper's Figure 2 runs to {KINGMA_SAMPLES:.0e}"
            if samples < KINGMA_SAMPLES
            else "the paper's full protocol"
        )
        return {
            "paper": "Kingma & Welling (2013), Auto-Encoding Variational Bayes, Figure 2 (MNIST)",
            "budget": str(settings.budget),
            "epochs_per_latent": epochs,
            "latents": list(latents),
            "shortened": samples < KINGMA_SAMPLES,
            "note": note,
            "params": {**params, "hidden": list(params["hidden"])},
            "data": data.source,
            "train_bound": f"ELBO on the first {KINGMA_TRAIN_BOUND_ROWS} train digits, binarization seed "
            f"{params['seed'] + TRAIN_BOUND_SEED}",
        }

    record = _plan(run, settings, resume, plan)
    echo(
        f"kingma2013: 784-500-J tanh VAE, Adagrad, minibatch 100, J in {record['latents']}; {record['note']}"
    )
    # the train bound at each point: the model of that moment on a fixed binarization of 10,000 train digits
    generator = torch.Generator().manual_seed(params["seed"] + TRAIN_BOUND_SEED)
    x_bound = binarize(data.x_train[:KINGMA_TRAIN_BOUND_ROWS], generator)

    def train_bound(vae: VAE) -> dict[str, float]:
        return {"train_bound": elbo_summary(vae.module_, x_bound, None, 1, "analytic", vae.seed)["elbo"]}

    curves: dict[str, dict[str, list[float]]] = {}
    source = {"data": settings.data, "resize": None}
    for latent in record["latents"]:
        echo(f"-- latent size {latent}")
        sub = Run(run.path(latent_run(latent)))
        vae = VAE(latent_dim=latent, epochs=record["epochs_per_latent"], verbose=progress, **params)
        train_into(sub, vae, data, dict(source), command, resume=resume, echo=echo, extra=train_bound)
        curves[f"N_z = {latent}"] = {
            "samples": [row["epoch"] * len(data.x_train) for row in vae.history_],
            "train": [row["train_bound"] for row in vae.history_],
            "test": [row["test_elbo"] for row in vae.history_],
        }
        _record(run, {**record, "status": f"latent size {latent} done"})
    title = (
        f"{plots.FIGURE2_TITLE}\n{data.source}, 784-500-J tanh MLP VAE, Adagrad, "
        f"{record['epochs_per_latent']} epochs per latent size"
    )
    figure = plots.lower_bound_panels(curves, run.path(FIGURE2), title)
    run.write_json(FIGURE2_DATA, curves)
    _record(run, {**record, "status": "done"})
    for title, c in curves.items():
        last = f"train {c['train'][-1]:.2f}, test {c['test'][-1]:.2f} nats"
        echo(f"{title}: {last} after {c['samples'][-1]:.2g} samples")
    echo(f"figure: {figure}; numbers: {run.path(FIGURE2_DATA)}")
    return curves


PAPERS = {"burda2015": burda2015, "kingma2013": kingma2013}


def run(args: Namespace) -> None:
    """``vaekit reproduce PAPER ...``: make (or, with --resume, reopen) the run folder, lock it, and
    run the paper's protocol there."""
    settings = Settings(parse_budget(args.budget), args.eval_n, args.eval_k, data_spec(args.data))
    resume = args.resume is not None
    folder = args.resume if isinstance(args.resume, Path) else args.out
    if resume and folder is None:
        raise VaekitError("--resume needs the run folder: --resume RUN, or -o RUN")
    if resume and args.overwrite:
        raise VaekitError("--resume continues the run in place; leave out --overwrite")
    data = load_data(args.data)  # before the run folder is made: bad data leave no empty folder
    folder = folder or Path("runs") / f"{args.paper}-{time.strftime('%Y%m%d-%H%M%S')}"
    target = Run.existing(folder) if resume else Run.create(folder, args.overwrite)
    flags = [f"--budget {args.budget}"] * (args.budget is not None) + [f"--data {args.data}"]
    flags += [f"--eval-n {args.eval_n}"] * (args.eval_n is not None) + [f"--eval-k {args.eval_k}"] * (
        args.eval_k is not None
    )
    command = f"vaekit reproduce {args.paper} {' '.join(flags)} -o {folder} --resume"
    with target.lock():
        if not resume:
            target.clear()
        PAPERS[args.paper](target, data, settings, resume, not args.quiet, print, command)
