"""Evaluation of a trained model on a data split: ELBO terms, per data point, in nats."""

from __future__ import annotations

import torch
from torch import Tensor

from vaekit.networks import VAEModule
from vaekit.objectives import elbo

EVAL_BATCH = 1000  # rows per forward pass; bounds memory, not results


@torch.no_grad()
def elbo_summary(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None = None,
    samples: int = 1,
    estimator: str = "analytic",
    seed: int = 0,
) -> dict[str, float]:
    """Mean ELBO, reconstruction term and KL over the rows of x ``(n, d)``, nats per example.

    The Monte Carlo draws are seeded, so the same model and data give the same numbers.
    """
    module.eval()
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(3, dtype=torch.float64)
    for i in range(0, len(x), EVAL_BATCH):
        yb = y[i : i + EVAL_BATCH] if y is not None else None
        terms = elbo(module, x[i : i + EVAL_BATCH], yb, samples, estimator, generator)
        total += torch.stack([terms.elbo.sum(), terms.recon.sum(), terms.kl.sum()]).double()
    elbo_mean, recon, kl = (total / len(x)).tolist()
    return {"elbo": elbo_mean, "recon": recon, "kl": kl}
