"""Checkpoints of a training run: one safetensors file, written atomically, resumed bit-exactly.

The checkpoint of a run folder (:data:`vaekit.runs.CHECKPOINT`) holds the trainer's tensors (weights,
optimiser moments, the RNG state of data order, eps and binarization, the current
epoch's permutation and running sums) and, as the safetensors metadata, one JSON
document: the checkpoint format, the model record of the run's config, the step,
epoch and in-epoch position, and the metrics of the epochs done. Nothing is pickled.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from vaekit import __version__, storage
from vaekit.config import ModelConfig, TrainConfig, with_old_defaults
from vaekit.errors import VaekitError
from vaekit.optim import LR_SCHEDULES
from vaekit.train import Trainer

#: bumped whenever the layout changes; a checkpoint of another format is refused, not guessed at
FORMAT = 2  # 2: the optimiser state of the flat parameter buffer (vaekit.flat)
#: settings that may differ between a checkpoint and the run resuming it: they do not change any number
RESUMABLE_CHANGES = ("checkpoint_every", "verbose")
#: a setting that may grow: more epochs extend a run whose learning rate does not depend on its length
EXTENDABLE = "epochs"
#: every setting's default: what a checkpoint written before the setting existed ran with
DEFAULTS = {f.name: f.default for config in (ModelConfig, TrainConfig) for f in fields(config)}


def save(path: Path, trainer: Trainer, record: dict[str, Any], history: list[dict[str, float]]) -> None:
    """Write the trainer's state, the run's ``record`` (its config) and ``history`` atomically.

    Raises VaekitError (leaving the previous checkpoint intact) if the disk refuses the
    write or a tensor is not finite.
    """
    tensors, state = trainer.state_dict()
    meta = {"format": FORMAT, "vaekit_version": __version__, "record": record, "state": state}
    meta["history"] = history
    try:
        storage.save_tensors(path, tensors, {"vaekit": json.dumps(meta)})
    except VaekitError as e:
        raise VaekitError(f"{e}; the previous checkpoint (if any) is intact") from e


def load(path: Path, trainer: Trainer, record: dict[str, Any]) -> list[dict[str, float]]:
    """Restore ``trainer`` from the checkpoint at ``path``; returns the metrics of the epochs done.

    record : the run's config (:meth:`vaekit.VAE.config_record`); a checkpoint written for other settings,
        by another checkpoint format, or not by vaekit at all is a VaekitError.
    """
    tensors, metadata = storage.load_tensors_and_metadata(path)
    try:
        meta = storage.parse_json(metadata["vaekit"], path)
        fmt = meta["format"]
    except (KeyError, TypeError, ValueError) as e:
        raise VaekitError(f"{path}: not a vaekit checkpoint (no readable 'vaekit' metadata)") from e
    if fmt != FORMAT:
        raise VaekitError(
            f"{path}: checkpoint format {fmt!r} (vaekit {meta.get('vaekit_version')}) cannot be "
            f"resumed by vaekit {__version__} (format {FORMAT}); start a new run"
        )
    _check_same_run(path, meta.get("record"), record)
    _check_extension(path, meta, record["params"])
    try:
        trainer.load_state_dict(tensors, meta["state"])
        history = meta["history"]
        if not all(isinstance(row, dict) for row in history):
            raise ValueError("its history is not a list of metric rows")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise VaekitError(f"{path}: not a usable vaekit checkpoint ({e})") from e
    return history


def _check_same_run(path: Path, saved: Any, record: dict[str, Any]) -> None:
    """Refuse a checkpoint whose model or training settings differ from the run's config."""
    if not isinstance(saved, dict) or not isinstance(saved.get("params"), dict):
        raise VaekitError(f"{path}: not a vaekit checkpoint (no model record)")
    ignore = {*RESUMABLE_CHANGES, EXTENDABLE}
    ours = {k: v for k, v in record["params"].items() if k not in ignore}
    # a setting newer than the checkpoint: its value before it existed, else its default (e.g. patience)
    theirs = {k: v for k, v in {**DEFAULTS, **with_old_defaults(saved["params"])}.items() if k not in ignore}
    ours.update(n_features_in=record["n_features_in"], image_shape=record["image_shape"])
    theirs.update(n_features_in=saved.get("n_features_in"), image_shape=saved.get("image_shape"))
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            raise VaekitError(
                f"{path}: written for {key}={theirs.get(key)!r} but this run has {key}={ours.get(key)!r}; "
                "the checkpoint belongs to another run"
            )


def _check_extension(path: Path, meta: dict[str, Any], params: dict[str, Any]) -> None:
    """Allow a different number of epochs only where the run can be extended (or is being
    resumed to its own length): at least the epochs done, and a schedule that ignores the length."""
    try:
        saved, done = int(meta["record"]["params"][EXTENDABLE]), int(meta["state"]["epoch"])
    except (KeyError, TypeError, ValueError) as e:
        raise VaekitError(f"{path}: not a usable vaekit checkpoint (no epoch count)") from e
    wanted = params[EXTENDABLE]
    if wanted == saved:
        return
    if wanted < done:
        raise VaekitError(f"{path}: has done {done} epochs already; epochs={wanted} cannot shorten it")
    schedule = params["lr_schedule"]
    if LR_SCHEDULES[schedule].length_dependent:
        raise VaekitError(
            f"{path}: the run's learning-rate schedule {schedule!r} is laid out over its {saved} epochs, so "
            f"{wanted} epochs would not equal a run of {wanted}; start a new run to train longer"
        )


@contextmanager
def stop_on_sigint(trainer: Trainer) -> Iterator[None]:
    """While active, a first Ctrl-C asks ``trainer`` to stop after its current step (it saves
    a checkpoint and raises KeyboardInterrupt); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        trainer.stop_requested = False
