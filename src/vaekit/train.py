"""The one training loop of vaekit: minibatch AEVB over tensors held on the training device.

Each epoch permutes the training rows once and gathers each minibatch by index
(no per-item Python work); each step takes one optimiser step on
:func:`vaekit.objectives.training_loss` (the beta-weighted ELBO or the IWAE bound).

Why it is fast (benchmarks/run.py measures it): for the common MLP/Bernoulli/analytic-KL
model the gradients come from the hand-derived backward pass of :mod:`vaekit.fused` (no
autograd graph: small batches are dominated by per-operation overhead); the parameters and
their gradients are views of one flat buffer (:mod:`vaekit.flat`), so the optimiser is one
kernel of torch's fused Adam/Adagrad over one tensor and the finiteness check one reduction; the epoch's
metrics are summed on the device and read once per epoch; a step whose loss is not
finite is skipped on the device (the fused optimiser's ``found_inf``), so an epoch
on a GPU makes no host synchronisation (except the running ELBO of ``verbose``).

Data parallel (``torchrun``): ``batch_size`` is the *global* minibatch. Every process
draws the same permutation and the same noise (binarization, eps) for the whole
global batch from the shared seed and keeps its contiguous shard
(:func:`vaekit.parallel.shard`); its loss is scaled by ``shard * world / batch`` so
that DistributedDataParallel's averaged gradient is the gradient of the global
batch mean, as in a single process. (Free bits floor the KL of each process's shard
mean, so with ``free_bits`` the data-parallel loss is not exactly the single-process one.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from vaekit import fused, precision
from vaekit.byterows import ByteRows, gather, on_device
from vaekit.config import TrainConfig
from vaekit.data import binarize
from vaekit.errors import VaekitError
from vaekit.flat import FlatParameters
from vaekit.networks import VAEModule
from vaekit.objectives import ELBOTerms, beta_at, training_loss
from vaekit.optim import make_optimizer, scheduled_lr
from vaekit.parallel import process_group, resolve_device, shard
from vaekit.stopping import VALIDATION_PREFIX, Monitor

#: consecutive steps with a non-finite loss or gradient after which training stops
MAX_BAD_STEPS = 20


class Objective(nn.Module):
    """The training objective as a module, so that DDP and torch.compile can wrap it.

    forward(x ``(m, d)``, y ``(m, c)`` or None, eps ``(L, m, J)``, step) -> (loss, recon, kl):
    :func:`vaekit.objectives.training_loss` (the batch-mean loss) and the per-example terms ``(m,)``.
    """

    def __init__(self, module: VAEModule, config: TrainConfig) -> None:
        super().__init__()
        self.module, self.config = module, config

    def forward(self, x: Tensor, y: Tensor | None, eps: Tensor, step: int) -> tuple[Tensor, Tensor, Tensor]:
        with precision.autocast(self.config.precision, x.device):
            loss, terms = training_loss(self.module, x, y, self.config, step, eps=eps)
        return loss.float(), terms.recon.float(), terms.kl.float()  # reported in float32


class Trainer:
    """Optimises a :class:`VAEModule`; holds everything a checkpoint must restore.

    The module is moved to ``config.device``. generator (on that device) seeds data
    order, eps and dynamic binarization, so that a run is reproducible given
    ``config.seed``; all processes of a torchrun job share it.
    """

    def __init__(self, module: VAEModule, config: TrainConfig) -> None:
        self.device = resolve_device(config.device)
        precision.check(config.precision, self.device)
        self.rank, self.world = process_group(self.device)
        self.module, self.config = module.to(self.device), config
        # every parameter a view of one buffer: one optimiser kernel and one finiteness check per step
        self.flat = FlatParameters(module)
        self.optimizer = make_optimizer([self.flat.theta], config)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.step = 0  # minibatch steps taken (a step with a non-finite loss leaves the weights as they were)
        self.total_steps: int | None = None  # steps of the whole run, known once an epoch starts
        self.epoch = 0  # epochs completed
        self._bad_run = torch.zeros((), device=self.device)  # current run of non-finite steps
        self._worst_run = torch.zeros((), device=self.device)  # longest such run since the last check
        # where the current epoch stands, so that a checkpoint can resume inside it
        self._perm: Tensor | None = None  # (n,) this epoch's data order; None between epochs
        self._batch = 0  # minibatches of this epoch done
        # this process's sums over the epoch so far: recon, kl, examples (float64: 60k sums of ~100 nats)
        self._sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.stop_requested = False  # set (e.g. by a SIGINT handler) to stop after the current step
        self.monitor = Monitor(config)  # each epoch's ELBO: best epoch, early stopping, plateau cuts
        objective: nn.Module = Objective(module, config)
        if self.world > 1:
            ids = [self.device] if self.device.type == "cuda" else None
            objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids)
        if config.compile:
            objective = torch.compile(objective, mode=_compile_mode(self.device))
        self.objective = objective
        # the hand-derived backward of vaekit.fused where it computes exactly the same (one process)
        self.fused = (
            fused.supports(module, config)
            and self.world == 1
            and not config.compile
            and precision.AUTOCAST[config.precision] is None
        )

    def _step(self, x: Tensor, y: Tensor | None) -> ELBOTerms:
        """One optimiser step on the global minibatch x ``(m, d)``; no host synchronisation.

        A step whose loss or gradient is not finite changes nothing (weights, optimiser moments
        and step count as they were: the fused optimiser's ``found_inf``) but is counted in ``step``.
        """
        cfg = self.config
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True) if y is not None else None
        if cfg.binarize == "dynamic":
            x = binarize(x, self.generator)
        m = len(x)
        eps = torch.randn(
            (cfg.samples, m, self.module.noise_dim), generator=self.generator, device=self.device
        )
        rows = shard(m, self.rank, self.world)
        x, eps = x[rows], eps[:, rows]
        y = y[rows] if y is not None else None
        if not self.module.training:  # Module.train() walks every submodule (67 us a call);
            self.module.train()  # only evaluation between epochs switches it off
        scale = len(x) * self.world / m  # makes DDP's mean over processes the global batch mean
        self.flat.attach_grads()
        if self.fused:
            beta = beta_at(self.step, cfg.beta, cfg.warmup_steps)
            terms, loss = fused.elbo_step(self.module, x, eps, beta, scale)
        else:
            loss, recon, kl = self.objective(x, y, eps, self.step)
            terms = ELBOTerms(recon, kl)
            # an empty shard (a global batch smaller than the world) contributes a zero gradient
            loss = loss * scale if len(x) else recon.sum() * 0.0
            self.flat.theta.grad.zero_()
            loss.backward()  # accumulates into the views of theta.grad
        # a sum holding NaN or inf is not finite: one reduction checks every gradient
        bad = (~torch.isfinite(loss.detach() + self.flat.theta.grad.sum())).float()
        if self.world > 1:  # every process skips the step if any one's loss or gradient is not finite
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        for group in self.optimizer.param_groups:
            group["lr"] = scheduled_lr(cfg, self.step, self.total_steps, self.monitor.lr_scale)
        self.optimizer.found_inf = bad  # type: ignore[attr-defined]  # the fused step skips itself if 1
        self.optimizer.step()
        self._bad_run = (self._bad_run + 1.0) * bad
        self._worst_run = torch.maximum(self._worst_run, self._bad_run)
        self.step += 1
        return ELBOTerms(terms.recon.detach(), terms.kl.detach())

    def _check_bad_steps(self) -> None:
        """Stop (one host read) if the loss or gradient was non-finite for MAX_BAD_STEPS steps in a row."""
        if float(self._worst_run) >= MAX_BAD_STEPS:
            raise VaekitError(
                f"the loss or its gradient was not finite for {MAX_BAD_STEPS} steps in a row "
                f"(by step {self.step}); try a lower learning rate than {self.config.lr:g}"
            )
        self._worst_run.zero_()

    def _check_finite_state(self) -> None:
        """Stop (one host read) if a weight or the optimiser's state is no longer finite: steps with
        finite losses can still overflow them (a far too high learning rate), and then every later
        step, checkpoint and evaluation would be NaN."""
        state = [t for s in self.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        finite = torch.stack([torch.isfinite(t).all() for t in (self.flat.theta, *state)]).all()
        if not bool(finite):
            raise VaekitError(
                f"training diverged by step {self.step}: the weights or the optimiser's moments are no "
                f"longer finite; try a lower learning rate than {self.config.lr:g}"
            )

    def train_step(self, x: Tensor, y: Tensor | None = None) -> ELBOTerms:
        """One optimiser step on the minibatch x ``(m, d)``; returns this process's detached terms.

        On the CPU the run of non-finite steps is checked every step; on a GPU (where that
        read would synchronise) at checkpoints and epoch ends.
        """
        terms = self._step(x, y)
        if self.device.type == "cpu":
            self._check_bad_steps()
        return terms

    def batches(self, x: Tensor | ByteRows, y: Tensor | None) -> Iterator[tuple[Tensor, Tensor | None]]:
        """The epoch's remaining global minibatches: a fresh permutation at its start, then
        gathered a batch at a time."""
        if self._perm is None:
            self._perm = torch.randperm(len(x), generator=self.generator, device=self.device)
        elif len(self._perm) != len(x):
            raise VaekitError(
                f"the training data have {len(x)} rows but the checkpoint's epoch has {len(self._perm)}; "
                "resume with the data the run started with"
            )
        size = self.config.batch_size
        for i in range(self._batch * size, len(x), size):
            idx = self._perm[i : i + size]
            yield gather(x, idx), (y.index_select(0, idx) if y is not None else None)

    def train_epoch(
        self, x: Tensor | ByteRows, y: Tensor | None = None, on_checkpoint: Callable[[], None] | None = None
    ) -> dict[str, float]:
        """One pass over x ``(n, d)`` (or the rest of one, after a resume); returns its mean
        train ELBO, recon and KL (nats). Under torchrun the means are over all processes' shards
        (one all-reduce per epoch).

        on_checkpoint : called every ``config.checkpoint_every`` optimiser steps inside the
            epoch and, once ``stop_requested`` is set, before KeyboardInterrupt is raised
        """
        start = time.perf_counter()
        x = on_device(x, self.device)
        y = y.to(self.device) if y is not None else None
        n_batches = -(-len(x) // self.config.batch_size)
        every = self.config.checkpoint_every
        self.total_steps = n_batches * self.config.epochs
        bar = tqdm(
            self.batches(x, y),
            total=n_batches,
            initial=self._batch,
            disable=not self.config.verbose or self.rank != 0,
            leave=False,
            desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
        )
        for xb, yb in bar:
            terms = self.train_step(xb, yb)
            sums = torch.stack((terms.recon.sum(), terms.kl.sum(), terms.kl.new_tensor(len(terms.kl))))
            self._sums += sums.nan_to_num_() * (self._bad_run == 0)  # a skipped step (run > 0) does not count
            self._batch += 1
            if self.config.verbose and self._batch % 25 == 0:  # a host read: verbose only
                recon, kl, seen = self._sums.tolist()
                bar.set_postfix(elbo=f"{(recon - kl) / max(seen, 1):.2f}")
            due = every and self.step % every == 0 and self._batch < n_batches
            self._checkpoint_or_stop(on_checkpoint, bool(due))
        total = self._sums
        self._perm, self._batch = None, 0
        self._sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(total)
        self._check_bad_steps()
        self._check_finite_state()
        recon, kl, seen = total.tolist()
        if not seen and n_batches:
            raise VaekitError(
                f"every step of epoch {self.epoch + 1} had a non-finite loss or gradient and was "
                f"skipped; try a lower learning rate than {self.config.lr:g}"
            )
        self.epoch += 1
        seen = max(seen, 1.0)
        return {
            "epoch": self.epoch,
            "step": self.step,
            "train_elbo": (recon - kl) / seen,
            "train_recon": recon / seen,
            "train_kl": kl / seen,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - start,
        }

    def fit(
        self,
        x: Tensor | ByteRows,
        y: Tensor | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
        on_checkpoint: Callable[[], None] | None = None,
        validate: Callable[[], dict[str, float | None]] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``config.epochs`` epochs are done (continuing from ``self.epoch``) or early
        stopping ends the run; then the module holds the best epoch's weights when
        ``config.patience`` is on (:class:`vaekit.stopping.Monitor`), else the last epoch's.

        on_checkpoint : called every ``config.checkpoint_every`` steps, after each epoch's
            ``on_epoch_end``, and before stopping with KeyboardInterrupt on ``stop_requested``
        validate : the metrics of the validation split (elbo, recon, kl) after an epoch; they join
            the epoch's row as val_elbo, ... before the monitor and ``on_epoch_end`` see it
        """
        history = []
        x = on_device(x, self.device)  # resident on the device for the whole run (bytes: when they fit)
        y = y.to(self.device) if y is not None else None
        while self.epoch < self.config.epochs and not self.monitor.stopped:
            row = self.train_epoch(x, y, on_checkpoint)
            if validate is not None:
                row.update({VALIDATION_PREFIX + k: v for k, v in validate().items()})
            self.monitor.epoch_end(row, self.module)
            if on_epoch_end is not None:
                on_epoch_end(row)
            history.append(row)
            self._checkpoint_or_stop(on_checkpoint, True)
        self.monitor.restore_best(self.module)  # after the last checkpoint, which keeps the last weights
        return history

    def _checkpoint_or_stop(self, on_checkpoint: Callable[[], None] | None, due: bool) -> None:
        """Checkpoint when due or asked to stop; then honour the stop request."""
        if due:
            self._check_bad_steps()
            self._check_finite_state()
        if on_checkpoint is not None and (due or self.stop_requested):
            on_checkpoint()
        if self.stop_requested:
            raise KeyboardInterrupt

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything a bit-exact resume needs: named tensors and JSON-able values.

        Tensors: ``module.*`` weights, ``optimizer.<param index>.<name>`` (e.g. Adam's
        exp_avg), ``generator`` (the RNG state), ``epoch.perm`` and ``epoch.sums`` (the
        current epoch's order and running sums of recon, kl and examples), ``bad_run`` (the
        current run of non-finite steps), ``best.*`` (the best epoch's weights, with patience).
        Values: step, epoch and position counters, the optimiser's param_groups and ``monitor``
        (:meth:`vaekit.stopping.Monitor.state_dict`).
        """
        tensors = {f"module.{k}": v for k, v in self.module.state_dict().items()}
        opt = self.optimizer.state_dict()
        values: dict[str, Any] = {"optimizer_scalars": {}}
        for index, state in opt["state"].items():
            for name, value in state.items():
                if isinstance(value, Tensor):
                    tensors[f"optimizer.{index}.{name}"] = value
                else:
                    values["optimizer_scalars"][f"{index}.{name}"] = value
        tensors["generator"] = self.generator.get_state()
        tensors["epoch.sums"] = self._sums
        tensors["bad_run"] = self._bad_run
        if self._perm is not None:
            tensors["epoch.perm"] = self._perm
        best, monitor = self.monitor.state_dict()
        tensors.update(best)
        values.update(
            step=self.step,
            epoch=self.epoch,
            batch=self._batch,
            param_groups=opt["param_groups"],
            monitor=monitor,
        )
        return tensors, values

    def load_state_dict(self, tensors: dict[str, Tensor], values: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; KeyError/ValueError/RuntimeError if it does not fit."""
        module = {k.removeprefix("module."): v for k, v in tensors.items() if k.startswith("module.")}
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        for key, value in values["optimizer_scalars"].items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        groups = [
            {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
            for g in values["param_groups"]
        ]
        self.module.load_state_dict(module)  # strict: missing, extra or mis-shaped weights raise
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        self.generator.set_state(tensors["generator"])
        perm = tensors.get("epoch.perm")
        self._perm = perm.to(self.device) if perm is not None else None
        self._sums = tensors["epoch.sums"].to(self.device, torch.float64)
        self._bad_run = tensors["bad_run"].to(self.device)
        self.step, self.epoch, self._batch = int(values["step"]), int(values["epoch"]), int(values["batch"])
        self.monitor.load_state_dict(tensors, values.get("monitor"))  # absent in older checkpoints


def _compile_mode(device: torch.device) -> str:
    """'reduce-overhead' (CUDA graphs: one launch per step for small batches) on CUDA, else the default."""
    return "reduce-overhead" if device.type == "cuda" else "default"
