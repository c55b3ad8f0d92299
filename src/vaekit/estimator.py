"""The scikit-learn style estimator :class:`VAE`: composes module, likelihood, objective and trainer."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit import __version__, checkpoint, runs, storage
from vaekit.conditions import as_condition, condition_setup
from vaekit.config import (
    MAX_SEED,
    Activation,
    Arch,
    Binarize,
    Device,
    Estimator,
    LRSchedule,
    ModelConfig,
    Objective,
    Optimizer,
    TrainConfig,
    split_params,
)
from vaekit.data import as_rows, binarize, check_array, float_rows
from vaekit.errors import VaekitError
from vaekit.evaluate import elbo_summary, importance_log_likelihood, module_device
from vaekit.likelihoods import make_likelihood
from vaekit.networks import VAEModule
from vaekit.objectives import ELBOTerms, elbo
from vaekit.train import Trainer

ArrayLike = np.ndarray | Tensor | Sequence[Any]
M, T = ModelConfig, TrainConfig  # the defaults below are read from the configs, set there once


class VAE:
    """Variational autoencoder (Kingma & Welling, Auto-Encoding Variational Bayes).

    The constructor only stores its arguments (see :class:`~vaekit.config.ModelConfig`
    and :class:`~vaekit.config.TrainConfig` for their meaning); :meth:`fit` builds
    ``module_`` (a :class:`torch.nn.Module`) and sets ``history_``,
    ``n_features_in_`` and ``image_shape_``.

    Arrays given to the methods are ``(n, d)`` rows, or ``(n, H, W)`` /
    ``(n, H, W, C)`` images that are flattened; 8-bit arrays are scaled to [0, 1].
    Outputs are float32 numpy arrays.

    Examples
    --------
    >>> vae = VAE(latent_dim=20, hidden=(400,), likelihood="bernoulli").fit(X_train)
    >>> Z = vae.transform(X)  # (n, 20) posterior means
    >>> cvae = VAE(conditional=True).fit(X_train, y_train)  # labels (n,) or vectors (n, c)
    >>> sevens = cvae.sample(16, y=7)  # (16, d) decoder means given the label 7
    """

    def __init__(
        self,
        latent_dim: int = M.latent_dim,
        hidden: tuple[int, ...] = M.hidden,
        activation: Activation = M.activation,
        likelihood: str = M.likelihood,
        sigma: float = M.sigma,
        conditional: bool = M.conditional,
        arch: Arch = M.arch,
        epochs: int = T.epochs,
        batch_size: int = T.batch_size,
        optimizer: Optimizer = T.optimizer,
        lr: float = T.lr,
        lr_schedule: LRSchedule = T.lr_schedule,
        adam_eps: float = T.adam_eps,
        weight_decay: float = T.weight_decay,
        estimator: Estimator = T.estimator,
        samples: int = T.samples,
        beta: float = T.beta,
        objective: Objective = T.objective,
        warmup_steps: int = T.warmup_steps,
        free_bits: float = T.free_bits,
        binarize: Binarize = T.binarize,
        seed: int = T.seed,
        verbose: bool = T.verbose,
        device: Device = T.device,
        compile: bool = T.compile,
        checkpoint_every: int = T.checkpoint_every,
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.likelihood = likelihood
        self.sigma = sigma
        self.conditional = conditional
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.adam_eps = adam_eps
        self.weight_decay = weight_decay
        self.estimator = estimator
        self.samples = samples
        self.beta = beta
        self.objective = objective
        self.warmup_steps = warmup_steps
        self.free_bits = free_bits
        self.binarize = binarize
        self.seed = seed
        self.verbose = verbose
        self.device = device
        self.compile = compile
        self.checkpoint_every = checkpoint_every

    # ------------------------------------------------------------------ scikit-learn protocol

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> VAE:
        """Set constructor arguments; unknown names are an error. Returns self."""
        for name, value in params.items():
            if name not in self._param_names():
                raise VaekitError(f"VAE has no parameter {name!r}; see VAE.get_params()")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = {
            k: v
            for k, v in self.get_params().items()
            if v != inspect.signature(type(self).__init__).parameters[k].default
        }
        return f"VAE({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # ------------------------------------------------------------------ input handling

    def _rows(self, X: ArrayLike, what: str = "X", fitted_width: bool = True) -> Tensor:
        """Validate an input array and return it as ``(n, d)`` float32 rows.

        fitted_width : require the width the model was fitted on (off for a new ``fit``)
        """
        rows, _ = as_rows(_array(X, what), what)
        if fitted_width and hasattr(self, "n_features_in_") and rows.shape[1] != self.n_features_in_:
            raise VaekitError(
                f"{what}: has {rows.shape[1]} features per example, the model was fitted on "
                f"{self.n_features_in_}"
            )
        fitted = getattr(self, "module_", None)  # a fitted model checks against its own likelihood
        likelihood = fitted.likelihood if fitted is not None else make_likelihood(self.likelihood, self.sigma)
        problem = likelihood.check_data(rows)
        if problem:
            raise VaekitError(f"{what}: {problem}")
        if self.binarize != "none" and not 0 <= float(rows.min()) <= float(rows.max()) <= 1:
            raise VaekitError(
                f"{what}: values range over [{float(rows.min()):g}, {float(rows.max()):g}]; "
                f"binarize={self.binarize!r} draws pixels with P(1) = value, so it needs values in [0, 1]"
            )
        return rows

    def _check_fitted(self) -> VAEModule:
        if not hasattr(self, "module_"):
            raise VaekitError("this VAE is not fitted yet; call fit() or VAE.load() first")
        return self.module_

    def _configs(self) -> tuple[ModelConfig, TrainConfig]:
        return split_params(self.get_params())

    def _cond(self, y: ArrayLike | int | None, n: int, what: str = "y") -> Tensor | None:
        """The condition ``(n, c)`` of a conditional model (None for an unconditional one)."""
        if not self.module_.cond_dim:  # as fitted (set_params changes the next fit only)
            return None
        cond = as_condition(y, n, self.module_.cond_dim, self.n_classes_, what)
        return cond.to(module_device(self.module_))

    def _condition_setup(self, y: ArrayLike | None) -> tuple[int, int | None]:
        """(cond_dim, n_classes) of the training conditions y; (0, None) when not conditional."""
        if not self.conditional:
            return 0, None
        if y is None:
            raise VaekitError("y: this VAE is conditional; fitting needs labels or condition vectors")
        return condition_setup(y)

    def _build(
        self,
        n_features: int,
        image_shape: tuple[int, ...] | None,
        cond: tuple[int, int | None] = (0, None),
    ) -> None:
        """Create ``module_`` and the trainer; ``cond`` is the condition setup (cond_dim, n_classes)."""
        model_cfg, train_cfg = self._configs()
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise VaekitError(f"n_features_in must be a positive integer, got {n_features!r}")
        if image_shape is not None and (
            len(image_shape) != 3
            or not all(isinstance(v, int | np.integer) and v > 0 for v in image_shape)
            or int(np.prod(image_shape)) != n_features
        ):
            raise VaekitError(
                f"image_shape {list(image_shape)} is not (C, H, W) of positive sizes whose product is "
                f"the {n_features} features per example"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_cfg.seed)
            self.module_ = VAEModule(n_features, model_cfg, cond[0], image_shape)
        self._built_with = self.get_params()  # what config.json records for this model
        self.n_classes_ = cond[1]
        self.n_features_in_ = n_features
        self.image_shape_ = tuple(image_shape) if image_shape else None
        self.trainer_ = Trainer(self.module_, train_cfg)
        self.history_: list[dict[str, float]] = []
        self.source_: dict[str, Any] | None = None

    def _eval_targets(self, x: Tensor, seed: int) -> Tensor:
        """Binarize held-out data once, with a recorded seed, when training binarizes."""
        if self.binarize == "none":
            return x
        return binarize(x, torch.Generator().manual_seed(seed))

    # ------------------------------------------------------------------ training

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike | None = None,
        *,
        X_test: ArrayLike | None = None,
        y_test: ArrayLike | None = None,
        image_shape: tuple[int, ...] | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        source: dict[str, Any] | None = None,
    ) -> VAE:
        """Train from scratch on X for ``epochs`` epochs, or resume a checkpointed run. Returns self.

        y : ignored, unless ``conditional``: class labels ``(n,)`` (one-hot encoded) or
            condition vectors ``(n, c)``
        X_test, y_test : optional held-out rows (and conditions); each epoch's metrics then include its ELBO
        image_shape : (C, H, W) of the rows, for pictures; inferred from 3-D/4-D X
        on_epoch_end : called with each epoch's metrics (a dict of floats)
        checkpoint_dir : a folder; ``config.json`` is written there first, then
            ``checkpoint.safetensors`` every ``checkpoint_every`` steps and after each epoch.
            Ctrl-C then stops after the current step, saves a checkpoint and raises
            KeyboardInterrupt.
        resume : continue from the checkpoint in ``checkpoint_dir`` (from the start if there
            is none yet); given the same X, the result equals an uninterrupted fit bit for bit
        source : where X came from (JSON-able), recorded in ``config.json``
        """
        if resume and checkpoint_dir is None:
            raise VaekitError("resume=True needs the checkpoint_dir of the run to resume")
        self._configs()  # the arguments first: _rows uses the likelihood
        x = self._rows(X, fitted_width=False)  # a new fit may change the width
        shape = image_shape or _image_shape_of(X)
        self._build(x.shape[1], shape, self._condition_setup(y))
        self.source_ = source
        cond = self._cond(y, len(x))
        if self.binarize == "static":
            x = binarize(x, torch.Generator().manual_seed(self.seed + 1))
        x_test = (
            self._eval_targets(self._rows(X_test, "X_test"), self.seed + 2) if X_test is not None else None
        )
        cond_test = self._cond(y_test, len(x_test), "y_test") if x_test is not None else None

        def record(row: dict[str, float]) -> None:
            if x_test is not None:
                test = elbo_summary(self.module_, x_test, cond_test, self.samples, self.estimator, self.seed)
                if not np.isfinite(test["elbo"]):  # finite weights so large that the ELBO overflows
                    raise VaekitError(
                        f"training diverged in epoch {int(row['epoch'])}: the test ELBO is "
                        f"{test['elbo']}; try a lower learning rate than {self.lr:g}"
                    )
                row.update({f"test_{k}": v for k, v in test.items()})
            self.history_.append(row)
            if on_epoch_end is not None:
                on_epoch_end(row)

        save = None
        if checkpoint_dir is not None:
            path = Path(checkpoint_dir) / runs.CHECKPOINT
            if resume and path.exists():
                self.history_ = checkpoint.load(path, self.trainer_, self._record())
            elif not resume:
                storage.make_folder(Path(checkpoint_dir))
                storage.write_json(Path(checkpoint_dir) / runs.CONFIG, self._record())

            def save() -> None:
                checkpoint.save(path, self.trainer_, self._record(), self.history_)

        with checkpoint.stop_on_sigint(self.trainer_) if save else nullcontext():
            self.trainer_.fit(x, cond, on_epoch_end=record, on_checkpoint=save)
        return self

    def partial_fit(self, X: ArrayLike, y: ArrayLike | None = None, classes: ArrayLike | None = None) -> VAE:
        """One optimisation step on the batch X (initialising the model on first use). Returns self.

        classes : every class label of a label-conditional model, on the first call (as in
            scikit-learn), when the first batch does not hold the highest one; ignored afterwards
        """
        self._configs()
        if self.binarize == "static":  # one fixed draw per example needs the whole data set: fit()
            raise VaekitError(
                "partial_fit cannot binarize='static' (one fixed draw per example of the "
                "whole data set); use binarize='dynamic', or binarize X yourself"
            )
        x = self._rows(X)
        if not hasattr(self, "module_"):
            cond = self._condition_setup(y)
            if classes is not None and cond[1] is not None:
                cond = self._condition_setup(classes)  # labels: K = max(classes) + 1 one-hot columns
            self._build(x.shape[1], _image_shape_of(X), cond)
        self.trainer_.train_step(x, self._cond(y, len(x)))
        return self

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def transform(self, X: ArrayLike, y: ArrayLike | None = None) -> np.ndarray:
        """Posterior means E_q[z|x] (E_q[z|x, y] when conditional): ``(n, latent_dim)``."""
        module = self._check_fitted().eval()
        x = self._rows(X)
        return module.encode(x.to(module_device(module)), self._cond(y, len(x)))[0].cpu().numpy()

    @torch.no_grad()
    def inverse_transform(self, Z: ArrayLike, y: ArrayLike | int | None = None) -> np.ndarray:
        """Decoder means E[x|z] (E[x|z, y]) for given latents Z ``(n, latent_dim)``: ``(n, d)``."""
        module = self._check_fitted().eval()
        z = _array(Z, "Z")
        if z.ndim != 2 or z.shape[1] != module.latent_dim or len(z) == 0:
            raise VaekitError(f"Z: expected latents of shape (n, {module.latent_dim}), got {z.shape}")
        check_array(z, "Z")
        rows = float_rows(z, "Z").to(module_device(module))  # float32, finite
        return module.likelihood.mean(module.decode(rows, self._cond(y, len(rows)))).cpu().numpy()

    def reconstruct(self, X: ArrayLike, y: ArrayLike | None = None) -> np.ndarray:
        """Decoder means of the encoded inputs' posterior means: ``(n, d)``."""
        return self.inverse_transform(self.transform(X, y), y)

    def sample(self, n: int, seed: int | None = None, y: ArrayLike | int | None = None) -> np.ndarray:
        """Decoder means for n draws z ~ N(0, I) from the prior: ``(n, d)``.

        y : the condition of a conditional model: one label for all n, or ``(n,)`` labels / ``(n, c)`` vectors
        """
        module = self._check_fitted()
        _check_count(n, "n")
        gen = torch.Generator().manual_seed(self.seed if seed is None else _check_seed(seed))
        return self.inverse_transform(torch.randn(int(n), module.latent_dim, generator=gen), y)

    def score(self, X: ArrayLike, y: ArrayLike | None = None) -> float:
        """Mean ELBO per example on X, in nats (higher is better)."""
        module = self._check_fitted()
        x = self._rows(X)
        return elbo_summary(module, x, self._cond(y, len(x)), self.samples, self.estimator, self.seed)["elbo"]

    def score_samples(
        self, X: ArrayLike, k: int = 5000, seed: int = 0, y: ArrayLike | None = None, progress: bool = False
    ) -> np.ndarray:
        """Importance-sampled log p(x) per example with k samples (Burda et al. 2015): ``(n,)`` nats.

        progress : show a progress bar over the examples (on stderr)
        """
        module = self._check_fitted()
        _check_count(k, "k")
        x = self._rows(X)
        return importance_log_likelihood(
            module, x, self._cond(y, len(x)), int(k), _check_seed(seed), progress=progress
        ).numpy()

    def elbo_terms(self, X: ArrayLike, y: ArrayLike | None = None) -> ELBOTerms:
        """Per-example ELBO terms (reconstruction and KL, nats) on X, without gradients."""
        module = self._check_fitted().eval()
        x = self._rows(X)
        with torch.no_grad():
            terms = elbo(
                module, x.to(module_device(module)), self._cond(y, len(x)), self.samples, self.estimator
            )
        return ELBOTerms(terms.recon.cpu(), terms.kl.cpu())

    # ------------------------------------------------------------------ persistence

    def save(self, folder: str | Path) -> None:
        """Write ``config.json`` (arguments, shapes, version) and ``model.safetensors`` to folder."""
        module = self._check_fitted()
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VaekitError(f"{folder}: cannot create the folder ({e.strerror or e})") from e
        storage.save_tensors(folder / runs.WEIGHTS, module.state_dict())
        storage.write_json(folder / runs.CONFIG, self._record())

    def _record(self) -> dict[str, Any]:
        """The contents of ``config.json``: arguments, input shapes, conditions, version, data source."""
        # the arguments the model was built with: set_params after fit changes only the next fit
        params = {k: v.item() if isinstance(v, np.generic) else v for k, v in self._built_with.items()}
        params["hidden"] = [int(h) for h in params["hidden"]]
        record = {
            "vaekit_version": __version__,
            "params": params,
            "n_features_in": self.n_features_in_,
            "image_shape": list(self.image_shape_) if self.image_shape_ else None,
            "cond_dim": self.module_.cond_dim,
            "n_classes": self.n_classes_,
        }
        if self.source_ is not None:
            record["source"] = self.source_
        return record

    @classmethod
    def load(cls, folder: str | Path) -> VAE:
        """Rebuild a saved VAE from ``config.json`` and ``model.safetensors`` in folder."""
        folder = Path(folder)
        if not folder.is_dir():
            raise VaekitError(f"{folder}: no such model folder")
        config = storage.read_json(folder / runs.CONFIG)
        try:
            params = {**config["params"], "hidden": tuple(config["params"]["hidden"])}
            if params.get("device") == "cuda" and not torch.cuda.is_available():
                params["device"] = "cpu"  # a model trained on a GPU is used on any machine
            vae = cls(**params)
            cond = (int(config.get("cond_dim", 0)), config.get("n_classes"))
            shape = config.get("image_shape")
            vae._build(config["n_features_in"], tuple(shape) if isinstance(shape, list) else shape, cond)
            vae.source_ = config.get("source")
        except (KeyError, TypeError, ValueError, AttributeError, VaekitError) as e:
            raise VaekitError(f"{folder / runs.CONFIG}: not a vaekit model config ({e})") from e
        tensors = storage.load_tensors(folder / runs.WEIGHTS)
        storage.load_state(vae.module_, tensors, folder / runs.WEIGHTS, folder / runs.CONFIG)
        return vae


MAX_COUNT = 2**31 - 1  # the most samples (n, k) one call may ask for


def _array(X: ArrayLike, what: str) -> np.ndarray:
    """X as a numpy array (copying a tensor to the CPU); ragged or odd input is a VaekitError."""
    try:
        return X.detach().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X)
    except (ValueError, TypeError, RuntimeError) as e:
        raise VaekitError(f"{what}: not an array of numbers ({e})") from e


def _check_count(n: object, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 < n <= MAX_COUNT:
        raise VaekitError(f"{name} must be a positive integer up to {MAX_COUNT}, got {n!r}")


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < MAX_SEED:
        raise VaekitError(f"seed must be an integer in [0, 2**62), got {seed!r}")
    return int(seed)


def _image_shape_of(X: ArrayLike) -> tuple[int, ...] | None:
    """(C, H, W) of image-shaped input, or a square single-channel guess for flat rows."""
    shape = tuple(np.shape(X))
    if len(shape) == 3:
        return (1, *shape[1:])
    if len(shape) == 4:
        return (shape[3], shape[1], shape[2])
    side = round(shape[1] ** 0.5) if len(shape) == 2 else 0
    return (1, side, side) if side * side == shape[-1] else None
