"""The one training loop of vaekit: minibatch AEVB over tensors held on the training device.

Each epoch permutes the training rows once and gathers each minibatch by index
(no per-item Python work); each step takes one optimiser step on
:func:`vaekit.objectives.training_loss` (the beta-weighted ELBO or the IWAE bound).

Why it is fast (benchmarks/run.py measures it): for the common MLP/Bernoulli/analytic-KL
model the gradients come from the hand-derived backward pass of :mod:`vaekit.fused` (no
autograd graph: small batches are dominated by per-operation overhead); the optimiser is
torch's fused Adam/Adagrad (one kernel for all parameters instead of ~10 per tensor); the epoch's
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

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from vaekit import fused
from vaekit.config import TrainConfig
from vaekit.data import binarize
from vaekit.errors import VaekitError
from vaekit.networks import VAEModule
from vaekit.objectives import ELBOTerms, beta_at, training_loss
from vaekit.parallel import process_group, resolve_device, shard

#: consecutive non-finite losses after which training stops
MAX_BAD_STEPS = 20


def make_optimizer(module: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (default) or Adagrad (the paper's) over all parameters of ``module``, fused implementation."""
    cls = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}[config.optimizer]
    return cls(module.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)


class Objective(nn.Module):
    """The training objective as a module, so that DDP and torch.compile can wrap it.

    forward(x ``(m, d)``, y ``(m, c)`` or None, eps ``(L, m, J)``, step) -> (loss, recon, kl):
    :func:`vaekit.objectives.training_loss` (the batch-mean loss) and the per-example terms ``(m,)``.
    """

    def __init__(self, module: VAEModule, config: TrainConfig) -> None:
        super().__init__()
        self.module, self.config = module, config

    def forward(self, x: Tensor, y: Tensor | None, eps: Tensor, step: int) -> tuple[Tensor, Tensor, Tensor]:
        loss, terms = training_loss(self.module, x, y, self.config, step, eps=eps)
        return loss, terms.recon, terms.kl


class Trainer:
    """Optimises a :class:`VAEModule`; holds everything a checkpoint must restore.

    The module is moved to ``config.device``. generator (on that device) seeds data
    order, eps and dynamic binarization, so that a run is reproducible given
    ``config.seed``; all processes of a torchrun job share it.
    """

    def __init__(self, module: VAEModule, config: TrainConfig) -> None:
        self.device = resolve_device(config.device)
        self.rank, self.world = process_group(self.device)
        self.module, self.config = module.to(self.device), config
        self.optimizer = make_optimizer(module, config)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.step = 0  # minibatch steps taken (a step with a non-finite loss leaves the weights as they were)
        self.epoch = 0  # epochs completed
        self._bad_run = torch.zeros((), device=self.device)  # current run of non-finite losses
        self._worst_run = torch.zeros((), device=self.device)  # longest such run since the last check
        objective: nn.Module = Objective(module, config)
        if self.world > 1:
            ids = [self.device] if self.device.type == "cuda" else None
            objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids)
        if config.compile:
            objective = torch.compile(objective, mode=_compile_mode(self.device))
        self.objective = objective
        # the hand-derived backward of vaekit.fused where it computes exactly the same (one process)
        self.fused = fused.supports(module, config) and self.world == 1 and not config.compile

    def _step(self, x: Tensor, y: Tensor | None) -> ELBOTerms:
        """One optimiser step on the global minibatch x ``(m, d)``; no host synchronisation."""
        cfg = self.config
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True) if y is not None else None
        if cfg.binarize == "dynamic":
            x = binarize(x, self.generator)
        m = len(x)
        eps = torch.randn(
            (cfg.samples, m, self.module.latent_dim), generator=self.generator, device=self.device
        )
        rows = shard(m, self.rank, self.world)
        x, eps = x[rows], eps[:, rows]
        y = y[rows] if y is not None else None
        self.module.train()
        scale = len(x) * self.world / m  # makes DDP's mean over processes the global batch mean
        if self.fused:
            beta = beta_at(self.step, cfg.beta, cfg.warmup_steps)
            terms, loss = fused.elbo_step(self.module, x, eps, beta, scale)
        else:
            loss, recon, kl = self.objective(x, y, eps, self.step)
            terms = ELBOTerms(recon, kl)
            # an empty shard (a global batch smaller than the world) contributes a zero gradient
            loss = loss * scale if len(x) else recon.sum() * 0.0
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        bad = (~torch.isfinite(loss)).float()
        if self.world > 1:  # every process skips the step if any one's loss is not finite
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        self.optimizer.found_inf = bad  # type: ignore[attr-defined]  # the fused step skips itself if 1
        self.optimizer.step()
        self._bad_run = (self._bad_run + 1.0) * bad
        self._worst_run = torch.maximum(self._worst_run, self._bad_run)
        self.step += 1
        return ELBOTerms(terms.recon.detach(), terms.kl.detach())

    def _check_bad_steps(self) -> None:
        """Stop (one host read) if the loss was non-finite for MAX_BAD_STEPS steps in a row."""
        if float(self._worst_run) >= MAX_BAD_STEPS:
            raise VaekitError(
                f"the loss was not finite for {MAX_BAD_STEPS} steps in a row (by step {self.step}); "
                f"try a lower learning rate than {self.config.lr:g}"
            )
        self._worst_run.zero_()

    def train_step(self, x: Tensor, y: Tensor | None = None) -> ELBOTerms:
        """One optimiser step on the minibatch x ``(m, d)``; returns this process's detached terms."""
        terms = self._step(x, y)
        self._check_bad_steps()
        return terms

    def batches(self, x: Tensor, y: Tensor | None) -> Iterator[tuple[Tensor, Tensor | None]]:
        """One epoch of global minibatches: a fresh permutation, gathered a batch at a time."""
        perm = torch.randperm(len(x), generator=self.generator, device=self.device)
        size = self.config.batch_size
        for i in range(0, len(x), size):
            idx = perm[i : i + size]
            yield x[idx], (y[idx] if y is not None else None)

    def train_epoch(self, x: Tensor, y: Tensor | None = None) -> dict[str, float]:
        """One pass over x ``(n, d)``; returns the epoch's mean train ELBO, recon and KL (nats).

        Under torchrun the means are over all processes' shards (one all-reduce per epoch).
        """
        start = time.perf_counter()
        x = x.to(self.device)
        y = y.to(self.device) if y is not None else None
        # sums of recon and kl, then the number of examples (float64: 60k sums of ~100 nats)
        total = torch.zeros(3, dtype=torch.float64, device=self.device)
        seen = 0
        n_batches = -(-len(x) // self.config.batch_size)
        bar = tqdm(
            self.batches(x, y),
            total=n_batches,
            disable=not self.config.verbose or self.rank != 0,
            leave=False,
            desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
        )
        for i, (xb, yb) in enumerate(bar):
            terms = self._step(xb, yb)
            total[:2] += torch.stack((terms.recon.sum(), terms.kl.sum()))
            seen += len(terms.kl)
            if self.config.verbose and i % 25 == 0:  # a host read: verbose only
                bar.set_postfix(elbo=f"{float(total[0] - total[1]) / max(seen, 1):.2f}")
        total[2] = seen
        if self.world > 1:
            dist.all_reduce(total)
        self._check_bad_steps()
        self.epoch += 1
        recon, kl, seen = total.tolist()
        seen = max(seen, 1.0)
        return {
            "epoch": self.epoch,
            "step": self.step,
            "train_elbo": (recon - kl) / seen,
            "train_recon": recon / seen,
            "train_kl": kl / seen,
            "seconds": time.perf_counter() - start,
        }

    def fit(
        self,
        x: Tensor,
        y: Tensor | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``config.epochs`` epochs are done (continuing from ``self.epoch``)."""
        history = []
        x = x.to(self.device)  # resident on the device for the whole run
        y = y.to(self.device) if y is not None else None
        while self.epoch < self.config.epochs:
            row = self.train_epoch(x, y)
            if on_epoch_end is not None:
                on_epoch_end(row)
            history.append(row)
        return history


def _compile_mode(device: torch.device) -> str:
    """'reduce-overhead' (CUDA graphs: one launch per step for small batches) on CUDA, else the default."""
    return "reduce-overhead" if device.type == "cuda" else "default"
