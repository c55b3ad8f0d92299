"""Evaluation of a trained model on a data split: ELBO terms, per data point, in nats."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from vaekit.byterows import ByteRows
from vaekit.likelihoods import CROSS_ENTROPY, LOG_DENSITY, LOG_PROBABILITY
from vaekit.networks import VAEModule
from vaekit.objectives import elbo, log_weights

EVAL_BATCH = 1000  # rows per forward pass; bounds memory, not results
#: importance samples x examples per pass of :func:`importance_log_likelihood`: on a CPU a pass
#: whose logits (1000 x 784 floats, 3 MB) stay in cache is fastest (784-400-20, k = 5000, 2-core
#: EPYC, 2026-11-24: 1000 per pass 197k samples/s, 2500 145k, 500 160k; 1 thread 106k, 93k, 104k);
#: on a GPU a large one fills the device
IMPORTANCE_CHUNK = {"cpu": 1000, "cuda": 500_000}


def _batches(
    x: Tensor, y: Tensor | None, size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Consecutive blocks of ``size`` rows of x (and y), moved to ``device`` one block at a time."""
    for i in range(0, len(x), size):
        yield x[i : i + size].to(device), (y[i : i + size].to(device) if y is not None else None)


def standard_error(values: Tensor) -> float | None:
    """Standard error of the mean of per-example values ``(n,)``: sd (n - 1 in the divisor) / sqrt(n).

    None for fewer than 2 values, whose spread is unknown.
    """
    if len(values) < 2:
        return None
    return float(values.double().std(correction=1) / math.sqrt(len(values)))


@torch.inference_mode()
def elbo_summary(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None = None,
    samples: int = 1,
    estimator: str = "analytic",
    seed: int = 0,
) -> dict[str, float | None]:
    """Mean ELBO, reconstruction term and KL over the rows of x ``(n, d)``, nats per example, and
    ``elbo_sem``, the ELBO's standard error over the examples (:func:`standard_error`).

    The Monte Carlo draws are seeded, so the same model and data give the same numbers.
    """
    module.eval()
    device = module_device(module)
    generator = torch.Generator(device).manual_seed(seed)
    total = torch.zeros(3, dtype=torch.float64, device=device)
    per_example = []
    for xb, yb in _batches(x, y, EVAL_BATCH, device):
        terms = elbo(module, xb, yb, samples, estimator, generator)
        total += torch.stack([terms.elbo.sum(), terms.recon.sum(), terms.kl.sum()]).double()
        per_example.append(terms.elbo.double())
    elbo_mean, recon, kl = (total / len(x)).tolist()
    return {"elbo": elbo_mean, "recon": recon, "kl": kl, "elbo_sem": standard_error(torch.cat(per_example))}


@torch.inference_mode()
def importance_log_likelihoods(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None = None,
    ks: tuple[int, ...] = (5000,),
    seed: int = 0,
    chunk: int | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
    done: Tensor | None = None,
    on_chunk: Callable[[Tensor], None] | None = None,
) -> Tensor:
    """Importance-sampled log p(x) with each k in ``ks``, all from the same draws: ``(len(ks), n)`` nats.

    max(ks) samples z_i ~ q(z|x) are drawn per example; the estimate with k uses the first k of
    them, log (1/k) sum_{i <= k} p(x, z_i) / q(z_i|x) (Burda et al. 2015), so the smaller ks cost
    nothing extra and the estimate with max(ks) is the one :func:`importance_log_likelihood` gives.
    Each is a stochastic lower bound on log p(x): its mean rises with k. Computed with running
    log-sum-exps over chunks of samples so memory stays near ``chunk`` (examples x samples, default
    :data:`IMPORTANCE_CHUNK` for the module's device) whatever k and n are.
    progress : show a progress bar over the examples (on stderr)
    generator : the draws' generator (default: a new one seeded with ``seed``)
    done : the values ``(len(ks), m)`` of the first m examples, computed before with ``generator``
        in the state it has now (a resumed evaluation continues with example m)
    on_chunk : called with the values ``(len(ks), m)`` of the m examples finished so far after
        each pass over a block of examples
    """
    module.eval()
    device = module_device(module)
    if generator is None:
        generator = torch.Generator(device).manual_seed(seed)
    k = max(ks)
    chunk = chunk or IMPORTANCE_CHUNK.get(device.type, IMPORTANCE_CHUNK["cuda"])
    # chunk assumes layers about as wide as the data; a wider (convolutional) decoder gets fewer samples
    chunk = max(1, chunk * module.data_dim // max(module.data_dim, module.decode_floats))
    rows = max(1, min(len(x), chunk // k))  # examples per pass
    per_pass = max(1, min(k, chunk // rows))  # samples per pass
    out = [done.to(torch.float64)] if done is not None else []
    start = out[0].shape[1] if out else 0
    logs = torch.tensor([math.log(k_i) for k_i in ks], dtype=torch.float64, device=device)[:, None]
    bar = tqdm(
        total=len(x), initial=start, disable=not progress, unit="example", desc=f"importance sampling, k={k}"
    )
    for xb, yb in _batches(x[start:], y[start:] if y is not None else None, rows, device):
        acc = torch.full((len(ks), len(xb)), -torch.inf, dtype=torch.float64, device=device)
        for j in range(0, k, per_pass):
            lw = log_weights(module, xb, yb, min(per_pass, k - j), generator).double()  # (m, rows)
            for i, k_i in enumerate(ks):
                if j < k_i:  # samples j, j+1, ... of this pass that are among the first k_i
                    acc[i] = torch.logaddexp(acc[i], torch.logsumexp(lw[: k_i - j], dim=0))
        out.append((acc - logs).cpu())
        bar.update(len(xb))
        if on_chunk is not None:
            on_chunk(torch.cat(out, dim=1))
    bar.close()
    return torch.cat(out, dim=1) if out else torch.zeros(len(ks), 0, dtype=torch.float64)


def importance_log_likelihood(
    module: VAEModule,
    x: Tensor,
    y: Tensor | None = None,
    k: int = 5000,
    seed: int = 0,
    chunk: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Importance-sampled log p(x) = log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x): ``(n,)`` nats.

    Burda et al. (2015); see :func:`importance_log_likelihoods`.
    """
    return importance_log_likelihoods(module, x, y, (k,), seed, chunk, progress)[0]


@torch.inference_mode()
def latent_usage(module: VAEModule, x: Tensor, y: Tensor | None = None, seed: int = 0) -> dict[str, object]:
    """Active units and mean KL per latent dimension over the rows of x ``(n, d)``.

    A unit u is active when Cov_x(E_q[z_u]) > 0.01 (Burda et al. 2015, section 5.2). With more
    than one stochastic layer both count the units of all layers (z_1 first), and ``layers`` gives
    each layer's units, active units and mean KL (nats); the expectations over the lower layers'
    draws are Monte Carlo, seeded (:meth:`vaekit.hierarchy.HierarchicalVAE.layer_usage`).
    """
    module.eval()
    device = module_device(module)
    generator = torch.Generator(device).manual_seed(seed)
    layers = module.layer_usage(x.to(device), y.to(device) if y is not None else None, generator)
    active = [int((mean.var(dim=0) > 0.01).sum()) for mean, _, _ in layers]  # Cov_x(E_q[z_u]) > 0.01
    usage: dict[str, object] = {
        "active_units": sum(active),
        "kl_per_dim": torch.cat([dims.mean(0) for _, dims, _ in layers]).tolist(),
    }
    if len(layers) > 1:
        usage["layers"] = [
            {"units": dims.shape[1], "active_units": a, "kl": float(kl.mean())}
            for (_, dims, kl), a in zip(layers, active, strict=True)
        ]
    return usage


@torch.no_grad()
def anomaly_scores(
    module: VAEModule, x: Tensor, y: Tensor | None = None, k: int = 1000, seed: int = 0
) -> dict[str, Tensor]:
    """Per-example anomaly scores of the rows of x ``(n, d)``, each ``(n,)``; higher is more anomalous.

    nll : -log p(x), importance-sampled with k samples (:func:`importance_log_likelihood`), nats
    recon_error : ||x - E[x | z = mu(x)]||^2, the squared error of the decoder mean at the posterior mean
    """
    nll = -importance_log_likelihood(module, x, y, k, seed)
    device = module_device(module)
    errors = []
    for xb, yb in _batches(x, y, EVAL_BATCH, device):
        mean = module.likelihood.mean(module.decode(module.encode(xb, yb)[0], yb))
        errors.append((xb - mean).square().sum(-1))
    return {"nll": nll, "recon_error": torch.cat(errors).double().cpu()}


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of separating positives (higher scores) from negatives.

    Equals P(score of a random positive > score of a random negative) + P(tie) / 2,
    computed as the Mann-Whitney U statistic from average ranks: O(n log n).
    """
    neg, pos = np.asarray(negatives, dtype=np.float64), np.asarray(positives, dtype=np.float64)
    if neg.size == 0 or pos.size == 0:
        raise ValueError("auroc needs at least one negative and one positive score")
    scores = np.concatenate([neg, pos])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse = np.unique(scores, return_inverse=True)  # average the ranks of tied scores
    ranks = (np.bincount(inverse, weights=ranks) / np.bincount(inverse))[inverse]
    u = ranks[len(neg) :].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (neg.size * pos.size))


def module_device(module: VAEModule) -> torch.device:
    """Where the module's weights are; data are moved there a chunk at a time."""
    return next(module.parameters()).device


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniformly dequantized data: x = v / (levels - 1), v in {0..levels-1} -> (v + u) / levels, u ~ U[0, 1).

    Each value moves into its own bin [v / levels, (v + 1) / levels) of [0, 1); with a density p
    on [0, 1)^d, P(v) = integral of p over v's bin = levels^-d E_u[p((v + u) / levels)], so by
    Jensen log P(v) >= E_u[log p((v + u) / levels)] - d log(levels) (Theis, van den Oord & Bethge
    2016): a code length for the discrete data. Returns ``(n, d)`` like x.
    """
    v = (x.double() * (levels - 1)).round()
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
    return ((v + u) / levels).to(x.dtype)


def on_level_grid(x: Tensor, levels: int) -> bool:
    """Whether every value of x is v / (levels - 1), v an integer in {0..levels-1} (within 1e-3)."""
    v = x.double() * (levels - 1)
    return bool(v.min() >= -1e-3 and v.max() <= levels - 1 + 1e-3 and (v - v.round()).abs().max() <= 1e-3)


#: seed offset of the uniform noise of :func:`dequantize` (beside the model seed of the draws of z)
DEQUANTIZE_SEED = 7


def _note(measure: str, k: int, dequantized: bool, levels: int | None) -> str:
    """One line saying what the importance-sampled number is."""
    if measure == CROSS_ENTROPY:
        return (
            "grey levels under a Bernoulli decoder: these numbers are minus cross-entropies of the grey "
            "levels, not a likelihood of the data, so no log-likelihood and no code length is reported"
        )
    bound = (
        f"the k={k} estimate is a stochastic lower bound on log p(x) "
        "(importance-weighted; its mean rises with k)"
    )
    if measure == LOG_PROBABILITY:
        return f"{bound}; bits/dim = -log p(x) / (d log 2)"
    if dequantized:
        return (
            f"p(x) is a density; {bound}; log P(v) of the {levels}-level data v is "
            f"E_u[log p((v + u) / {levels})] - d log {levels}, u ~ U[0, 1)^d (uniform dequantization), "
            "and bits/dim = -log P(v) / (d log 2)"
        )
    return (
        f"p(x) is a density; {bound}: nats that depend on the data's scale, and no code length "
        "(the data are not known to be stored as 8-bit levels)"
    )


def evaluate(
    module: VAEModule,
    x: Tensor,
    k: int = 5000,
    samples: int = 1,
    estimator: str = "analytic",
    seed: int = 0,
    y: Tensor | None = None,
    progress: bool = False,
    *,
    levels: int | None = None,
    estimates: Tensor | None = None,
) -> dict[str, object]:
    """Everything ``vaekit eval`` reports on the rows of x ``(n, d)`` (conditions y), per example, in nats.

    levels : how many values each dimension of the data was stored with (256 for 8-bit pixels
        scaled by 255), or None when that is unknown; used only by a density (Gaussian decoders):
        with levels, the data are also evaluated dequantized (:func:`dequantize`) for a code length.
    estimates : ``(2, n)``, the k- and (k // 10)-sample estimates of :func:`importance_log_likelihoods`
        on x with ``seed``, when computed already (e.g. by a resumable evaluation)

    Returns
    -------
    elbo, recon, kl, elbo_sem : :func:`elbo_summary`
    measure : what the likelihood's numbers are on x, one of :data:`vaekit.likelihoods.MEASURES`
    iw_estimate, iw_estimate_sem : the k-sample importance-weighted estimate (mean and standard
        error over examples), :func:`importance_log_likelihoods`
    log_px, log_px_sem : the same, when it is a log-likelihood (measure is not 'cross_entropy'), else None
    k_check, iw_check, iw_check_sem : the estimate from the first k_check = k // 10 of the same draws
    k_gain, k_gain_sem : mean (and paired standard error) of how much each example's estimate rose
        from k_check to k samples: how much k still matters
    levels, dequantized_log_px, dequantized_log_px_sem : log P(v) of the discrete data from
        dequantized draws, for a density on data stored with ``levels`` levels, else None
    bits_per_dim : -log P / (d log 2) where log P is a code length (a discrete likelihood on values
        it gives probability to, or the dequantized density), else None
    note : one line saying what the numbers are
    active_units, kl_per_dim : :func:`latent_usage`
    """
    x = x.to("cpu") if isinstance(x, ByteRows) else x  # the n rows evaluated, as float32
    terms = elbo_summary(module, x, y, samples, estimator, seed)
    k_check = max(1, k // 10)
    if estimates is None:
        estimates = importance_log_likelihoods(module, x, y, (k, k_check), seed, progress=progress)
    full, check = estimates
    measure = module.likelihood.measure(x)
    likelihood = measure != CROSS_ENTROPY
    d = x.shape[1]
    dequantized = measure == LOG_DENSITY and levels is not None and on_level_grid(x, levels)
    deq_log_px: Tensor | None = None
    if dequantized:
        noise = torch.Generator().manual_seed(seed + DEQUANTIZE_SEED)
        x_deq = dequantize(x, levels, noise)  # type: ignore[arg-type]
        deq_log_px = importance_log_likelihood(module, x_deq, y, k, seed, progress=progress)
        deq_log_px = deq_log_px - d * math.log(levels)  # type: ignore[arg-type]
    code_length = full if measure == LOG_PROBABILITY else deq_log_px
    estimate, sem = float(full.mean()), standard_error(full)
    return {
        "n": len(x),
        "k": k,
        **terms,
        "measure": measure,
        "iw_estimate": estimate,
        "iw_estimate_sem": sem,
        "log_px": estimate if likelihood else None,
        "log_px_sem": sem if likelihood else None,
        "k_check": k_check,
        "iw_check": float(check.mean()),
        "iw_check_sem": standard_error(check),
        "k_gain": float((full - check).mean()),
        "k_gain_sem": standard_error(full - check),
        "levels": levels if dequantized else None,
        "dequantized_log_px": float(deq_log_px.mean()) if deq_log_px is not None else None,
        "dequantized_log_px_sem": standard_error(deq_log_px) if deq_log_px is not None else None,
        "bits_per_dim": -float(code_length.mean()) / (d * math.log(2)) if code_length is not None else None,
        "note": _note(measure, k, dequantized, levels),
        **latent_usage(module, x, y),
    }


def _row(name: str, value: float, sem: float | None = None) -> str:
    se = f"{sem:>10.2f}" if sem is not None else ""
    return f"{name:<34}{value:>18.2f}{se}"


def eval_table(result: dict[str, object], samples: int = 1) -> str:
    """The terminal table of an :func:`evaluate` result: values, standard errors, and a line saying
    what they are."""
    r: dict[str, Any] = dict(result)
    name = "log p(x) lower bound" if r["log_px"] is not None else "-cross-entropy bound"
    lines = [
        f"{'estimator':<34}{'nats per example':>18}{'s.e.':>10}",
        _row(f"ELBO (L={samples})", r["elbo"], r.get("elbo_sem")),
        _row("  reconstruction term", r["recon"]),
        _row("  KL(q(z|x) || p(z))", r["kl"]),
        _row(f"{name}, k={r['k']}", r["iw_estimate"], r["iw_estimate_sem"]),
        _row(f"  same draws, k={r['k_check']}", r["iw_check"], r["iw_check_sem"]),
        _row(f"  gain from k={r['k_check']} to {r['k']}", r["k_gain"], r["k_gain_sem"]),
    ]
    if r["dequantized_log_px"] is not None:
        lines.append(
            _row(f"log P(v), dequantized, k={r['k']}", r["dequantized_log_px"], r["dequantized_log_px_sem"])
        )
    bits = f"bits/dim {r['bits_per_dim']:.4f}; " if r["bits_per_dim"] is not None else ""
    lines.append(f"{bits}{r['active_units']} of {len(r['kl_per_dim'])} units active")
    for i, layer in enumerate(r.get("layers") or [], 1):
        lines.append(f"  z{i}: {layer['active_units']} of {layer['units']} active, KL {layer['kl']:.2f} nats")
    lines.append(r["note"])
    return "\n".join(lines)
