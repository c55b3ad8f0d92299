"""TensorBoard event files of a training run, written each epoch by an ``on_epoch_end`` callback.

Scalars (each at step = epoch): the train and test ELBO, reconstruction term and KL (nats per
example, Kingma & Welling 2014, eq. 10), the KL of each latent dimension and the number of active
units on the test rows (Burda et al. 2015, sec. 5.2), the learning rate and the optimisation
steps per second. Images: the run's pictures of data (samples, reconstructions, and the manifold
of a 2-D model), as :func:`vaekit.plots.data_pictures` draws them for the run folder.

Needs the optional dependency ``tensorboard`` (``pip install 'vaekit[tensorboard]'``), imported
only when a :class:`TensorBoardLog` is made. View the events with ``tensorboard --logdir RUN``.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from vaekit import plots, storage
from vaekit.conditions import as_condition
from vaekit.data import as_rows
from vaekit.errors import VaekitError
from vaekit.evaluate import latent_usage, module_device

if TYPE_CHECKING:
    from vaekit.estimator import VAE, ArrayLike

#: metrics-row key -> scalar tag; train and test share a chart section (the tag's prefix)
SCALARS = {
    "train_elbo": "elbo/train",
    "val_elbo": "elbo/validation",
    "test_elbo": "elbo/test",
    "train_recon": "recon/train",
    "test_recon": "recon/test",
    "train_kl": "kl/train",
    "test_kl": "kl/test",
    "lr": "optim/lr",
}
STEPS_PER_SECOND = "optim/steps_per_second"
ACTIVE_UNITS = "latent/active_units"
IMAGES = "images/"  # + the picture's file stem: images/samples, images/reconstructions, ...


def kl_tag(j: int, latent_dim: int) -> str:
    """The tag of the KL of latent dimension j (0-based), zero-padded so that the charts sort."""
    return f"kl_per_dim/z{j:0{len(str(latent_dim - 1))}d}"


def image_tag(file_name: str) -> str:
    """The tag of a run picture, from its file name: images/ and the name's stem."""
    return IMAGES + Path(file_name).stem


def require() -> type:
    """torch's ``SummaryWriter``, or a one-line VaekitError naming the extra that installs tensorboard.

    The command line calls it while checking its flags, before the run folder is touched.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise VaekitError(
            "tensorboard: not installed; --tensorboard needs it: pip install 'vaekit[tensorboard]'"
        ) from e
    return SummaryWriter


class TensorBoardLog:
    """Writes each epoch's metrics row, and the run's pictures, as TensorBoard events in ``folder``.

    Pass it as ``VAE.fit(..., on_epoch_end=log)``; close it (or use it in a ``with``) afterwards.
    Logging reads the model only (seeded pictures, no random draws from torch's global
    generator), so a fit gives the same result with it as without it.

    Parameters
    ----------
    vae : the VAE being fitted (its model exists by the time the first epoch ends)
    folder : where the event files go, e.g. ``run / runs.TENSORBOARD``; a resumed run appends,
        and events of epochs it trains again are dropped (TensorBoard's ``purge_step``)
    x_test : held-out rows ``(n, d)`` (or images) as given to ``fit``: the KL per latent dimension
        is the mean over all of them; the first 32 are reconstructed
    y_test : their labels ``(n,)`` or condition vectors ``(n, c)``, for a conditional model
    """

    def __init__(
        self, vae: VAE, folder: str | Path, x_test: ArrayLike, y_test: ArrayLike | None = None
    ) -> None:
        self._writer_class = require()  # a missing package fails now, not after an epoch
        self.vae, self.folder = vae, Path(folder)
        x = x_test.detach().cpu().numpy() if isinstance(x_test, Tensor) else np.asarray(x_test)
        self.x_test, _ = as_rows(x, "x_test")  # (n, d) float32
        self.y_test = y_test
        self._writer: Any = None
        self._last_step: int | None = None

    def __call__(self, row: dict[str, float]) -> None:
        """Log one epoch's metrics row (keys as :meth:`vaekit.train.Trainer.train_epoch` writes them)."""
        epoch, step = int(row["epoch"]), int(row["step"])
        if self._writer is None:
            storage.make_folder(self.folder, "TensorBoard folder")
            self._writer = self._writer_class(log_dir=str(self.folder), purge_step=epoch)
        w = self._writer
        for key, tag in SCALARS.items():
            if key in row:
                w.add_scalar(tag, row[key], epoch)
        # every epoch has the same number of steps, so a first (resumed) epoch's are step / epoch
        last = self._last_step if self._last_step is not None else step * (epoch - 1) // epoch
        w.add_scalar(STEPS_PER_SECOND, (step - last) / max(row["seconds"], 1e-9), epoch)
        self._last_step = step
        usage = latent_usage(self.vae.module_, self.x_test, self._conditions())
        kl = usage["kl_per_dim"]
        for j, value in enumerate(kl):  # type: ignore[arg-type]
            w.add_scalar(kl_tag(j, len(kl)), value, epoch)  # type: ignore[arg-type]
        w.add_scalar(ACTIVE_UNITS, usage["active_units"], epoch)
        for name, picture in plots.data_pictures(self.vae, self.x_test.numpy(), self.y_test).items():
            pixels = np.asarray(picture)  # (H, W) grey or (H, W, 3) colour, uint8
            w.add_image(image_tag(name), pixels, epoch, dataformats="HW" if pixels.ndim == 2 else "HWC")
        w.flush()  # the epoch is on disk for a TensorBoard that is watching

    def _conditions(self) -> Tensor | None:
        module = self.vae.module_
        if not module.cond_dim:
            return None
        cond = as_condition(self.y_test, len(self.x_test), module.cond_dim, self.vae.n_classes_, "y_test")
        return cond.to(module_device(module))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
