"""The run folder: every file name of a run folder is spelled here, once, with the folder's life.

A run folder (``vaekit train``, ``vaekit reproduce``, ``VAE.fit(checkpoint_dir=...)``) holds:

config.json               the model record: constructor arguments, shapes, version, the data record
model.safetensors         the trained weights (written when training ends)
checkpoint.safetensors    the trainer's state, for a bit-exact resume (:mod:`vaekit.checkpoint`)
metrics.jsonl             one row of metrics per epoch
eval.json                 ``vaekit eval``'s numbers; eval-progress.safetensors its finished chunks
*.png                     pictures: samples, reconstructions, manifold, curves, ``vaekit plot``'s
reproduce.json            a paper protocol's record (``vaekit reproduce``), figure2.png/.json, latent-J/
tensorboard/              TensorBoard event files (``vaekit train --tensorboard``)

:class:`Run` creates, locks, clears and discards the folder, reads and writes these files, and
records which data the run trained on. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from vaekit import checkpoint, storage
from vaekit.byterows import ByteRows
from vaekit.config import ModelConfig, with_old_defaults
from vaekit.errors import VaekitError
from vaekit.evaluate import importance_log_likelihoods, module_device
from vaekit.networks import check_architecture

if TYPE_CHECKING:
    from vaekit.estimator import VAE
    from vaekit.networks import VAEModule

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
EVAL_PROGRESS = "eval-progress.safetensors"
REPRODUCE = "reproduce.json"
#: ``reproduce burda2015 --table``: every cell's numbers beside the paper's
TABLE = "table.json"
FIGURE2, FIGURE2_DATA = "figure2.png", "figure2.json"
#: the folder of :class:`vaekit.tensorboard.TensorBoardLog`'s event files
TENSORBOARD = "tensorboard"
#: the pictures :func:`vaekit.plots.write_pictures` puts in a run folder
PICTURES = SAMPLES, RECONSTRUCTIONS, MANIFOLD, CURVES = (
    "samples.png",
    "reconstructions.png",
    "manifold.png",
    "curves.png",
)
#: the files of one run folder; ``--overwrite`` removes them all (and the sub-runs) first, so that no
#: result of the old run (eval.json, manifold.png of another latent size...) sits beside the new one
FILES = (
    CONFIG,
    WEIGHTS,
    CHECKPOINT,
    METRICS,
    EVAL,
    EVAL_PROGRESS,
    REPRODUCE,
    FIGURE2,
    FIGURE2_DATA,
    TABLE,
    *PICTURES,
)
#: an evaluation's finished examples are saved after each twentieth of them, or 20 s, whichever is first
EVAL_SAVES, EVAL_SAVE_SECONDS = 20, 20.0


def eval_file(data: str | None = None) -> str:
    """Where ``vaekit eval`` writes: eval.json for the run's own data, else a file named for ``data``
    (``--data fashion-mnist``: eval-fashion-mnist.json), so that the run's own numbers stay."""
    return EVAL if data is None else f"{Path(EVAL).stem}-{Path(data).stem}{Path(EVAL).suffix}"


def plot_file(kind: str) -> str:
    """The file ``vaekit plot KIND`` writes into the run folder by default."""
    return f"{kind}.png"


def table_cell_run(layers: int, objective: str, samples: int) -> str:
    """The sub-run of one cell of Burda et al.'s Table 1 in ``reproduce burda2015 --table``'s run folder."""
    return f"layers-{layers}-{objective}-k{samples}"


def latent_run(latent_dim: int) -> str:
    """The sub-run of one latent size in ``reproduce kingma2013``'s run folder."""
    return f"latent-{latent_dim}"


def digest(x: Tensor | ByteRows) -> str:
    """SHA-256 of training rows ``(n, d)``: what a run records to know its data again (of the
    stored bytes of :class:`~vaekit.byterows.ByteRows`)."""
    if isinstance(x, ByteRows):
        return x.digest()
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()


class ModelRecord(NamedTuple):
    """What config.json says of a model: its arguments, input width and shape, conditions, data."""

    params: dict[str, Any]  # the constructor arguments of vaekit.VAE
    n_features_in: int
    image_shape: tuple[int, ...] | None  # (C, H, W) of image rows
    cond: tuple[int, int | None]  # (cond_dim, n_classes) of a conditional model, else (0, None)
    source: dict[str, Any] | None  # the data record
    standardized: bool  # whether the model standardizes its columns (vaekit.scaling); False before


class Run:
    """A run folder.

    Parameters
    ----------
    folder : the folder; :meth:`create` makes it, the constructor only names it
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.created = False  # whether this process made the folder (see discard_if_empty)

    def __repr__(self) -> str:
        return f"Run({str(self.folder)!r})"

    def path(self, name: str) -> Path:
        """The path of a file (one of this module's names) in the run folder."""
        return self.folder / name

    # ------------------------------------------------------------------ life

    @classmethod
    def create(cls, folder: str | Path, overwrite: bool = False) -> Run:
        """Make the run folder, refusing a non-empty one unless ``overwrite``; check it is writable.

        An overwritten folder keeps its files until :meth:`clear` (after the new data were read).
        """
        run = cls(folder)
        out = run.folder
        if out.exists() and not out.is_dir():
            raise VaekitError(f"{out}: exists and is not a folder")
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise VaekitError(f"{out}: run folder exists and is not empty; pass --overwrite to reuse it")
        run.created = not out.exists()
        storage.make_folder(out, "run folder")
        storage.check_writable(out)
        return run

    @classmethod
    def existing(cls, folder: str | Path, what: str = "run folder") -> Run:
        """An existing run folder (VaekitError naming ``what`` if there is none)."""
        run = cls(folder)
        if not run.folder.is_dir():
            raise VaekitError(f"{run.folder}: no such {what}")
        return run

    @contextmanager
    def lock(self) -> Iterator[Run]:
        """Hold the folder's exclusive lock: a second command on it stops with one line."""
        with storage.exclusive(self.folder):
            yield self

    def clear(self) -> None:
        """Remove every file of a run (and the sub-runs of latent sizes and table cells) before a new
        run writes here."""
        for name in FILES:
            self.path(name).unlink(missing_ok=True)
        subs = [
            *self.folder.glob(latent_run(0).replace("0", "*")),
            *self.folder.glob(table_cell_run(0, "*", 0).replace("0", "*")),
        ]
        for sub in [*subs, self.path(TENSORBOARD)]:
            if sub.is_dir() and not sub.is_symlink():
                shutil.rmtree(sub)
        for path in [*self.folder.glob(plot_file("*")), *self.folder.glob(eval_file("*"))]:
            path.unlink()
        self.remove_temporaries()

    def remove_temporaries(self) -> None:
        """Remove half-written files of a killed command (see :func:`vaekit.storage.atomic_write`)."""
        for tmp in self.folder.glob(".*.tmp"):
            tmp.unlink()

    def discard_if_empty(self) -> None:
        """Remove the folder this process created if a failure left nothing to resume in it
        (nothing, or only the config.json that training writes before its first step)."""
        if not (self.created and self.folder.is_dir()):
            return
        if {p.name for p in self.folder.iterdir()} <= {CONFIG}:
            self.path(CONFIG).unlink(missing_ok=True)
            self.folder.rmdir()

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    def mtime(self, name: str) -> int | None:
        """When a file was last written (ns), None if it is absent."""
        path = self.path(name)
        return path.stat().st_mtime_ns if path.exists() else None

    # ------------------------------------------------------------------ records

    def read_config(self) -> dict[str, Any]:
        """config.json; a model's arguments get the fields added since it was written
        (:func:`vaekit.config.with_old_defaults`)."""
        config = storage.read_json(self.path(CONFIG))
        if not isinstance(config, dict):
            raise VaekitError(f"{self.path(CONFIG)}: not a vaekit model config (not a JSON object)")
        if isinstance(config.get("params"), dict):
            config["params"] = with_old_defaults(config["params"])
        return config

    def write_config(self, record: dict[str, Any]) -> None:
        storage.make_folder(self.folder)
        storage.write_json(self.path(CONFIG), record)

    def read_metrics(self) -> list[dict[str, Any]]:
        return storage.read_jsonl(self.path(METRICS))

    def write_metrics(self, rows: list[dict[str, float]]) -> None:
        """The whole history, atomically: no lost or repeated rows whenever the run is killed."""
        storage.write_jsonl(self.path(METRICS), rows)

    def write_json(self, name: str, obj: Any) -> Path:
        storage.write_json(self.path(name), obj)
        return self.path(name)

    def read_json(self, name: str) -> Any:
        return storage.read_json(self.path(name))

    def write_model(self, state: dict[str, Tensor], record: dict[str, Any]) -> None:
        """A model's weights and config (:meth:`vaekit.VAE.config_record`), in a folder made if need be."""
        storage.make_folder(self.folder)
        storage.save_tensors(self.path(WEIGHTS), state)
        self.write_config(record)

    def read_model_config(self) -> ModelRecord:
        """The model record of config.json, checked: what :meth:`vaekit.VAE.load` rebuilds from.

        A user's architecture must be registered again (its module imported) to be rebuilt; a
        model trained on a GPU is loaded for the CPU where there is none.
        """
        where, config = self.path(CONFIG), self.read_config()
        try:
            params = {**config["params"], "hidden": tuple(config["params"]["hidden"])}
            params.update(
                {k: tuple(params[k]) for k in ModelConfig.WIDTHS if isinstance(params.get(k), list)}
            )
            check_architecture(params["arch"], params.get("arch_options"))
            if params.get("device") == "cuda" and not torch.cuda.is_available():
                params["device"] = "cpu"
            shape = config.get("image_shape")
            cond_dim = config.get("cond_dim", 0)
            if not isinstance(cond_dim, int) or isinstance(cond_dim, bool):  # int() would take "20"
                raise TypeError(f"cond_dim {cond_dim!r} is not an integer")
            cond = (cond_dim, config.get("n_classes"))
            return ModelRecord(
                params,
                config["n_features_in"],
                None if shape is None else tuple(shape),
                cond,
                config.get("source"),
                bool(config.get("standardized", False)),
            )
        except VaekitError as e:
            raise VaekitError(f"{where}: {e}") from e
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise VaekitError(f"{where}: not a vaekit model config ({e})") from e

    def read_weights(self) -> dict[str, Tensor]:
        return storage.load_tensors(self.path(WEIGHTS))

    # ------------------------------------------------------------------ the data record

    def check_data(self, source: dict[str, Any], x_train: Tensor | ByteRows) -> None:
        """Record the training rows' digest in ``source`` (config.json's data record), or refuse
        rows that differ from the ones the run started with."""
        found = digest(x_train)
        recorded = source.setdefault("sha256", found)
        # a run of an older vaekit recorded the float32 rows of byte data
        old = recorded != found and isinstance(x_train, ByteRows) and recorded == x_train.float_digest()
        if recorded != found and not old:
            raise VaekitError(
                f"{source['data']}: the training data changed since the run in {self.folder} started "
                "(their SHA-256 differs); resume with the same data, or start a new run"
            )

    # ------------------------------------------------------------------ checkpoints

    def checkpointing(self, vae: VAE, resume: bool) -> Callable[[], None]:
        """Set a fitting ``vae`` up to checkpoint into this folder; returns the save function.

        resume : restore the trainer and ``history_`` from the folder's checkpoint when there is
            one (from the first step when there is none); otherwise start the run afresh. Either
            way config.json is written with the settings of this fit (an extension's new epochs).
        """
        path = self.path(CHECKPOINT)
        if resume and path.exists():
            vae.history_ = checkpoint.load(path, vae.trainer_, vae.config_record())
        self.write_config(vae.config_record())

        def save() -> None:
            checkpoint.save(path, vae.trainer_, vae.config_record(), vae.history_)

        return save

    # ------------------------------------------------------------------ resumable evaluation

    def importance_estimates(
        self,
        module: VAEModule,
        x: Tensor,
        y: Tensor | None,
        ks: tuple[int, ...],
        seed: int,
        progress: bool = False,
    ) -> Tensor:
        """:func:`vaekit.evaluate.importance_log_likelihoods` of the run's model (``(len(ks), n)``
        nats), keeping
        the finished examples in eval-progress.safetensors (see :data:`EVAL_SAVES`), so that a
        killed evaluation resumes where it stopped and ends with the numbers of an uninterrupted one.

        Progress is reused only for the same weights, data, ks and seed.
        """
        path = self.path(EVAL_PROGRESS)
        key = json.dumps(
            {"weights": _file_digest(self.path(WEIGHTS)), "x": digest(x), "ks": ks, "seed": seed}
        )
        generator = torch.Generator(module_device(module)).manual_seed(seed)
        done = None
        if path.exists():
            tensors, meta = storage.load_tensors_and_metadata(path)
            if meta.get("key") == key and {"values", "generator"} <= set(tensors):
                done = tensors["values"].double()
                generator.set_state(tensors["generator"])
        saved, every = (time.monotonic(), done.shape[1] if done is not None else 0), len(x) / EVAL_SAVES

        def on_chunk(values: Tensor) -> None:
            nonlocal saved
            m = values.shape[1]
            due = m - saved[1] >= every or time.monotonic() - saved[0] >= EVAL_SAVE_SECONDS
            if due or m == len(x):
                state = {"values": values, "generator": generator.get_state()}
                storage.save_tensors(path, state, {"key": key})
                saved = (time.monotonic(), m)

        return importance_log_likelihoods(
            module, x, y, ks, seed, progress=progress, generator=generator, done=done, on_chunk=on_chunk
        )


def _file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (the identity of the model an evaluation is of)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise VaekitError(f"{path}: cannot be read ({e.strerror or e})") from e
