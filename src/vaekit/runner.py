"""Training a VAE into a run folder: the one life of ``vaekit train`` and of each model of
``vaekit reproduce`` (check the data, clear or resume, checkpoint, log each epoch, save the
model and its pictures, and on a failure keep what can be resumed and say how).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaekit import diagnose, inputs, plots, scaling
from vaekit.data import Data
from vaekit.errors import Interrupted, VaekitError
from vaekit.estimator import VAE
from vaekit.runs import CHECKPOINT, CONFIG, TENSORBOARD, Run
from vaekit.tensorboard import TensorBoardLog

Echo = Callable[[str], None]


def labels(vae: VAE, y: Any, data: object) -> Any:
    """The labels y of data for a conditional model (refusing unlabelled data), else None."""
    if not vae.conditional:
        return None
    if y is None:
        raise VaekitError(f"{data}: has no labels, but the model is conditional and needs them")
    return y


def train_into(
    run: Run | None,
    vae: VAE,
    data: Data,
    source: dict[str, Any],
    resume_command: str,
    resume: bool = False,
    echo: Echo = print,
    extra: Callable[[VAE], dict[str, float]] | None = None,
    tensorboard: bool = False,
) -> list[Path]:
    """Train ``vae`` on ``data`` into ``run`` (whose lock the caller holds); returns the pictures.

    run : None trains without writing anything (torchrun's processes other than rank 0)
    source : the data record (data spec, resize); its SHA-256 is added, or checked on a resume
    resume_command : the command that continues this run, for the messages of a stopped one
    resume : continue the run's checkpoint (or extend a finished run to ``vae.epochs``)
    extra : metrics added to each epoch's row (e.g. a bound on other data)
    tensorboard : also log each epoch as TensorBoard events (:class:`vaekit.tensorboard.TensorBoardLog`)

    A Ctrl-C saves a checkpoint and raises :class:`Interrupted` saying how to continue; a run
    that fails before its first checkpoint leaves no folder it created behind.
    """
    name = source["data"]
    if data.classes:  # the run knows its labels by name: vaekit sample --label NAME, legends
        source["classes"] = list(data.classes)
    try:
        if run is not None:
            run.check_data(source, data.x_train)
        y_train, y_test = labels(vae, data.y_train, name), labels(vae, data.y_test, name)
        # the data's values and labels are checked before anything in the run folder is removed
        vae.check_data(data.x_train, y_train, name, new_fit=True)
        vae.check_data(data.x_test, y_test, f"{name} (test split)", new_fit=True)
    except (VaekitError, KeyboardInterrupt):
        if run is not None:
            run.discard_if_empty()
        raise
    if run is None:
        vae.fit(data.x_train, y_train, X_test=data.x_test, y_test=y_test, image_shape=data.image_shape)
        return []
    echo(data.describe())
    # as fit() decides: rows with an image shape, given or guessed from a square width, are images
    model_cfg = vae.configs()[0]
    images = (data.image_shape or inputs.image_shape_of(data.x_train)) is not None
    scales = scaling.report(model_cfg, data.x_train, images)
    if scales:
        echo(scales)

    board = TensorBoardLog(vae, run.path(TENSORBOARD), data.x_test, y_test) if tensorboard else None

    def log_epoch(row: dict[str, float]) -> None:
        row.update(extra(vae) if extra is not None else {})  # row is the last of vae.history_
        run.write_metrics(vae.history_)
        if board is not None:
            board(row)
        test = f", test ELBO {row['test_elbo']:.2f}" if "test_elbo" in row else ""
        val = (
            f", validation ELBO {row['val_elbo']:.2f} (best: epoch {int(row['best_epoch'])})"
            if "val_elbo" in row
            else ""
        )
        echo(
            f"epoch {int(row['epoch'])}/{vae.epochs}: train ELBO {row['train_elbo']:.2f}{val}{test} nats "
            f"(lr {row['lr']:.2e}, {row['seconds']:.1f} s)"
        )

    if not resume:
        run.clear()
    run.remove_temporaries()
    written_before = run.mtime(CHECKPOINT)
    try:
        vae.fit(
            data.x_train,
            y_train,
            X_test=data.x_test,
            y_test=y_test,
            image_shape=data.image_shape,
            on_epoch_end=log_epoch,
            checkpoint_dir=run.folder,
            resume=resume,
            source=source,
        )
    except KeyboardInterrupt as e:
        raise Interrupted(_interrupted(run, resume_command)) from e
    except VaekitError as e:
        if run.mtime(CHECKPOINT) != written_before:  # a checkpoint of this run: progress to resume
            raise VaekitError(f"{e}; the last checkpoint is kept: {resume_command}") from e
        run.discard_if_empty()
        raise
    finally:
        if board is not None:
            board.close()
    if vae.stopped_early_:
        echo(
            f"early stopping: no better validation ELBO for {vae.patience} epochs; the model keeps "
            f"epoch {vae.best_epoch_}'s weights"
        )
    facts = diagnose.RunFacts(
        data.x_train.shape[1], vae.lr, scaling.raw_scale(model_cfg, data.x_train, images)
    )
    for warning in diagnose.diagnose(vae.history_, facts):
        echo(f"warning: {warning}")
    vae.save(run.folder)
    return plots.write_pictures(vae, run.folder, data.x_test[: plots.PICTURE_ROWS].numpy(), y_test)


def _interrupted(run: Run, resume_command: str) -> str:
    """What a Ctrl-C during training kept, and how to go on."""
    if run.has(CHECKPOINT):
        saved = run.path(CHECKPOINT)
        return f"vaekit: interrupted; checkpoint saved to {saved}; continue with: {resume_command}"
    if run.has(CONFIG):
        return (
            f"vaekit: interrupted before the first checkpoint; {resume_command} starts the run again "
            "from its first step"
        )
    run.discard_if_empty()
    return "vaekit: interrupted before training started; nothing was saved"
