"""Checkpoints of a training run: one safetensors file, written atomically, resumed bit-exactly.

``checkpoint.safetensors`` in a run folder holds the trainer's tensors (weights,
optimiser moments, the RNG state of data order, eps and binarization, the current
epoch's permutation and running sums) and, as the safetensors metadata, one JSON
document: the checkpoint format, the model record of ``config.json``, the step,
epoch and in-epoch position, and the metrics of the epochs done. Nothing is pickled.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vaekit import __version__, runs, storage
from vaekit.errors import VaekitError
from vaekit.train import Trainer

#: bumped whenever the layout changes; a checkpoint of another format is refused, not guessed at
FORMAT = 2  # 2: the optimiser state of the flat parameter buffer (vaekit.flat)
#: settings that may differ between a checkpoint and the run resuming it: they do not change any number
RESUMABLE_CHANGES = ("checkpoint_every", "verbose")


def save(path: Path, trainer: Trainer, record: dict[str, Any], history: list[dict[str, float]]) -> None:
    """Write the trainer's state, the run's ``record`` (config.json) and ``history`` atomically.

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

    record : the run's config.json contents; a checkpoint written for other settings,
        by another checkpoint format, or not by vaekit at all is a VaekitError.
    """
    tensors, metadata = storage.load_tensors_and_metadata(path)
    try:
        meta = json.loads(metadata["vaekit"])
        fmt = meta["format"]
    except (KeyError, TypeError, ValueError) as e:
        raise VaekitError(f"{path}: not a vaekit checkpoint (no readable 'vaekit' metadata)") from e
    if fmt != FORMAT:
        raise VaekitError(
            f"{path}: checkpoint format {fmt!r} (vaekit {meta.get('vaekit_version')}) cannot be "
            f"resumed by vaekit {__version__} (format {FORMAT}); start a new run"
        )
    _check_same_run(path, meta.get("record"), record)
    try:
        trainer.load_state_dict(tensors, meta["state"])
        history = meta["history"]
        if not all(isinstance(row, dict) for row in history):
            raise ValueError("its history is not a list of metric rows")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise VaekitError(f"{path}: not a usable vaekit checkpoint ({e})") from e
    return history


def _check_same_run(path: Path, saved: Any, record: dict[str, Any]) -> None:
    """Refuse a checkpoint whose model or training settings differ from the run's config.json."""
    if not isinstance(saved, dict) or not isinstance(saved.get("params"), dict):
        raise VaekitError(f"{path}: not a vaekit checkpoint (no model record)")
    ignore = set(RESUMABLE_CHANGES)
    ours = {k: v for k, v in record["params"].items() if k not in ignore}
    theirs = {k: v for k, v in saved["params"].items() if k not in ignore}
    ours.update(n_features_in=record["n_features_in"], image_shape=record["image_shape"])
    theirs.update(n_features_in=saved.get("n_features_in"), image_shape=saved.get("image_shape"))
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            raise VaekitError(
                f"{path}: written for {key}={theirs.get(key)!r} but {runs.CONFIG} says "
                f"{ours.get(key)!r}; the checkpoint belongs to another run"
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
