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
from dataclasses import dataclass, replace
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
from vaekit.runs import EVAL, FIGURE2, FIGURE2_DATA, REPRODUCE, TABLE, Run, latent_run, table_cell_run

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
    layers: int | None = None  # burda2015: stochastic layers (None: 1, or every row with table)
    objective: str = "elbo"  # burda2015: the training objective of the cell (elbo: VAE, iwae: IWAE)
    samples: int = 1  # burda2015: k, samples of z per training example
    table: bool = False  # burda2015: every cell of Table 1 (of ``layers`` only, when given)
    fast: bool = False  # burda2015: the fast recipe (BURDA_FAST) instead of the paper's schedule

    def describe(self) -> dict[str, Any]:
        return {
            "budget": str(self.budget),
            "eval_n": self.eval_n,
            "eval_k": self.eval_k,
            "data": self.data,
            "layers": self.layers,
            "objective": self.objective,
            "samples": self.samples,
            "table": self.table,
            "fast": self.fast,
        }


def _plan(run: Run, settings: Settings, resume: bool, plan: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The protocol's record: made by ``plan()`` (which may time the machine) and written to
    the run's record, or, on a resume, read back from there, so that a minutes budget trains the
    same epochs as before the kill; a resumed command that asks for other settings is refused."""
    if not resume or not run.has(REPRODUCE):
        record = {"settings": settings.describe(), **plan()}
        _record(run, {**record, "status": "training"})
        return record
    record = run.read_json(REPRODUCE)
    if isinstance(record, dict) and isinstance(record.get("settings"), dict):  # settings added since default
        record["settings"] = {**Settings().describe(), **record["settings"]}
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
#: the networks of each row group of Table 1, by number of stochastic layers, and how they read
BURDA_LAYERS: dict[int, tuple[str, dict[str, Any]]] = {
    1: ("784-200-200-50 tanh", BURDA_PARAMS),
    # two stochastic layers: x <-> z1 through 200-200, z1 (100 units) <-> z2 (50 units) through 100-100
    2: (
        "784-200-200-100 and 100-100-100-50 tanh",
        {**BURDA_PARAMS, "latent_dim": 100, "upper_latents": (50,), "upper_hidden": (100, 100)},
    ),
}
#: ``reproduce burda2015 --fast``: a recipe for the same networks in a tenth of the paper's compute,
#: chosen on the validation split (the last 10,000 training digits) by benchmarks/burda_fast.py
BURDA_FAST: dict[str, Any] = {"batch_size": 200, "lr": 2e-3, "lr_schedule": "cosine", "epochs": 1000}
BURDA_K = 5000
BURDA_PAPER = "Burda, Grosse & Salakhutdinov (2015), Importance Weighted Autoencoders, Table 1"


@dataclass(frozen=True)
class Cell:
    """One cell of Burda et al.'s Table 1: stochastic layers, training objective and its k."""

    layers: int = 1
    objective: str = "elbo"
    samples: int = 1

    def __str__(self) -> str:
        model = "VAE" if self.objective == "elbo" else "IWAE"
        return f"{self.layers} layer{'s' * (self.layers > 1)}, {model}, k = {self.samples}"

    def params(self, fast: bool = False) -> dict[str, Any]:
        """The estimator's parameters of this cell: the layers' networks, trained by the paper's
        recipe or (``fast``) by :data:`BURDA_FAST`'s, without its epochs."""
        if self.layers not in BURDA_LAYERS:
            raise VaekitError(f"--layers must be one of {sorted(BURDA_LAYERS)}, got {self.layers}")
        recipe = {k: v for k, v in BURDA_FAST.items() if k != "epochs"} if fast else {}
        return {
            **BURDA_LAYERS[self.layers][1],
            **recipe,
            "objective": self.objective,
            "samples": self.samples,
        }

    @property
    def paper_nll(self) -> float | None:
        """The paper's test NLL of the cell, nats (the ELBO with k = 1 is the IWAE bound with k = 1)."""
        same = Cell(self.layers, "elbo", 1) if self.samples == 1 else self
        return BURDA_TABLE.get(same)


#: Burda et al. (2015), Table 1: test NLL in nats (k = 5000) of each trained cell
BURDA_TABLE: dict[Cell, float] = {
    Cell(1, "elbo", 1): 86.76,
    Cell(1, "elbo", 5): 86.47,
    Cell(1, "elbo", 50): 86.35,
    Cell(1, "iwae", 5): 85.54,
    Cell(1, "iwae", 50): 84.78,
    Cell(2, "elbo", 1): 85.33,
    Cell(2, "elbo", 5): 85.01,
    Cell(2, "elbo", 50): 84.78,
    Cell(2, "iwae", 5): 83.89,
    Cell(2, "iwae", 50): 82.90,
}


def burda2015(
    run: Run,
    data: Data,
    settings: Settings,
    resume: bool = False,
    progress: bool = True,
    echo: Echo = print,
    command: str = "vaekit reproduce burda2015 --resume",
) -> dict[str, Any]:
    """Burda et al.'s Table 1: one cell (``settings``' layers, objective and samples) trained and
    evaluated into the run folder, or with ``settings.table`` every cell into a sub-run each (a
    minutes budget shared equally); returns the evaluation's numbers (by cell, for the table)."""
    if not settings.table:
        cell = Cell(settings.layers or 1, settings.objective, settings.samples)
        return burda_cell(run, data, settings, cell, resume, progress, echo, command)
    if settings.objective != "elbo" or settings.samples != 1:
        raise VaekitError(
            "--table trains every objective and k of the table; leave out --objective and --samples"
        )
    cells = [c for c in BURDA_TABLE if settings.layers in (None, c.layers)]
    record = _plan(run, settings, resume, lambda: {"paper": BURDA_PAPER, "cells": [str(c) for c in cells]})
    budget = settings.budget
    if budget.minutes is not None:
        budget = Budget(minutes=budget.minutes / len(cells))
    results: dict[str, Any] = {}
    for cell in cells:
        echo(f"-- {cell}")
        sub = Run(run.path(table_cell_run(cell.layers, cell.objective, cell.samples)))
        done = sub.read_json(REPRODUCE) if resume and sub.has(REPRODUCE) else {}
        if done.get("status") == "done":  # finished before the kill
            results[str(cell)] = {**sub.read_json(EVAL), "record": done}
            continue
        cell_settings = replace(settings, budget=budget, table=False)
        result = burda_cell(sub, data, cell_settings, cell, resume, progress, echo, command)
        results[str(cell)] = {**result, "record": sub.read_json(REPRODUCE)}
    run.write_json(TABLE, {str(c): _table_row(c, results[str(c)]) for c in cells})
    _record(run, {**record, "status": "done"})
    echo(table_text(cells, results))
    return results


def _table_row(cell: Cell, result: dict[str, Any]) -> dict[str, Any]:
    record = result["record"]
    return {
        "layers": cell.layers,
        "objective": cell.objective,
        "samples": cell.samples,
        "test_nll": -result["log_px"],
        "test_nll_sem": result["log_px_sem"],
        "k": record["k"],
        "eval_n": record["eval_n"],
        "epochs": record["epochs"],
        "shortened": record["shortened"],
        "paper_test_nll": cell.paper_nll,
    }


def table_text(cells: list[Cell], results: dict[str, Any]) -> str:
    """The trained cells beside the paper's Table 1 (test NLL, nats; lower is better)."""
    lines = [
        "Burda et al. (2015), Table 1: test NLL -log p(x), nats per digit (importance sampled)",
        f"{'cell':<26} {'vaekit':>16} {'paper':>7}  trained",
    ]
    for cell in cells:
        row = _table_row(cell, results[str(cell)])
        ours = f"{row['test_nll']:.2f} ± {row['test_nll_sem']:.2f}"
        short = " SHORTENED" if row["shortened"] else ""
        trained = f"{row['epochs']} epochs, k = {row['k']} on {row['eval_n']} digits{short}"
        lines.append(f"{cell!s:<26} {ours:>16} {row['paper_test_nll']:>7.2f}  {trained}")
    return "\n".join(lines)


def burda_cell(
    run: Run,
    data: Data,
    settings: Settings,
    cell: Cell,
    resume: bool = False,
    progress: bool = True,
    echo: Echo = print,
    command: str = "vaekit reproduce burda2015 --resume",
) -> dict[str, Any]:
    """Train and evaluate one cell of Table 1 into the run folder; returns the evaluation's numbers.

    The schedule's 8 stages keep their 3^i : 3280 proportions of however many epochs
    are trained (with ``settings.fast``: :data:`BURDA_FAST`'s recipe instead). The test set
    is binarized once with the recorded seed (model seed + 2).
    A minutes budget covers training and evaluation: it is shared out by timing both here,
    evaluating fewer digits when the whole test set would take more than half of it.
    """
    params = cell.params(settings.fast)
    full_epochs = BURDA_FAST["epochs"] if settings.fast else BURDA_EPOCHS
    k = settings.eval_k or BURDA_K
    n_test = min(settings.eval_n or len(data.x_test), len(data.x_test))
    paper_nll = cell.paper_nll

    def plan() -> dict[str, Any]:
        epochs, n = settings.budget.epochs or full_epochs, n_test
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
                full_epochs,
            )
            echo(
                f"budget {settings.budget}: {per_epoch:.1f} s per epoch and "
                f"{n * per_example / 60:.1f} min of evaluation on {n} digits measured here, "
                f"so {epochs} epochs (rerun exactly with --budget {epochs} --eval-n {n})"
            )
        stages = [round(3**i * epochs / BURDA_EPOCHS, 4) for i in range(BURDA_STAGES)]
        short_eval = k != BURDA_K or n != 10000
        parts = []
        if epochs != full_epochs and settings.fast:
            parts.append(f"{epochs} of the fast recipe's {full_epochs} epochs (budget {settings.budget})")
        elif epochs != full_epochs:
            parts.append(
                f"{epochs} of the paper's {BURDA_EPOCHS} epochs (budget {settings.budget}), the 8 "
                f"learning-rate stages scaled to {stages} epochs"
            )
        parts += (
            [f"evaluation with k = {k} on {n} test digits (the paper: 5000 on 10000)"] if short_eval else []
        )
        protocol = (
            f"the fast recipe, not the paper's: batch {params['batch_size']}, Adam {params['lr']:g} with "
            f"a {params['lr_schedule']} schedule over {full_epochs} epochs"
            if settings.fast
            else "the paper's full protocol"
        )
        shortened = f"SHORTENED: {'; '.join(parts)}. Expect a worse number than the paper's."
        note = protocol if not parts else f"{protocol}. {shortened}" if settings.fast else shortened
        return {
            "paper": BURDA_PAPER,
            "cell": str(cell),
            "budget": str(settings.budget),
            "epochs": epochs,
            "stage_epochs": None if settings.fast else stages,
            "protocol": "fast" if settings.fast else "paper",
            "eval_n": n,
            "k": k,
            "shortened": bool(parts),
            "note": note,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
            "data": data.source,
            "paper_test_nll": paper_nll,
        }

    record = _plan(run, settings, resume, plan)
    networks = BURDA_LAYERS[cell.layers][0]
    echo(f"burda2015 ({cell}): {networks} networks, Bernoulli, dynamically binarized {data.source}")
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
    done = (
        "shortened run, see above"
        if record["shortened"]
        else ("fast recipe" if settings.fast else "full protocol")
    )
    echo(
        f"test NLL -log p(x), k={record['k']}: {nll:.2f} ± {result['log_px_sem']:.2f} nats "
        f"(paper: {'no such cell' if paper_nll is None else f'{paper_nll} nats'}) — {done}"
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
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
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
    settings = Settings(
        parse_budget(args.budget),
        args.eval_n,
        args.eval_k,
        data_spec(args.data),
        args.layers,
        args.objective,
        args.samples,
        args.table,
        args.fast,
    )
    cell_flags = {"--layers": args.layers is not None, "--objective": args.objective != "elbo"}
    cell_flags |= {"--samples": args.samples != 1, "--table": args.table, "--fast": args.fast}
    if args.paper != "burda2015" and any(cell_flags.values()):
        raise VaekitError(f"{', '.join(f for f, given in cell_flags.items() if given)}: burda2015 only")
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
    flags += [f"--layers {args.layers}"] * (args.layers is not None) + ["--table"] * args.table
    flags += ["--fast"] * args.fast
    flags += [f"--objective {args.objective}"] * cell_flags["--objective"]
    flags += [f"--samples {args.samples}"] * cell_flags["--samples"]
    command = f"vaekit reproduce {args.paper} {' '.join(flags)} -o {folder} --resume"
    with target.lock():
        if not resume:
            target.clear()
        PAPERS[args.paper](target, data, settings, resume, not args.quiet, print, command)
