"""A hand-derived backward pass for the common MLP VAE: the same loss and gradients, no autograd graph.

For small minibatches a training step is dominated by per-operation overhead:
autograd records and replays ~40 nodes for a two-hidden-layer VAE, each costing
more than its arithmetic at batch 20. For the configuration most runs use (MLP
encoder and decoder with ReLU or tanh, Bernoulli decoder, analytic KL = the paper's
estimator B, the ELBO objective with or without KL warm-up, no free bits, no
condition) :func:`elbo_step` computes the values with the library's own functions
(``likelihood.log_prob``, :func:`~vaekit.objectives.gaussian_kl`) and writes the
gradients of

    loss = scale * mean_n [beta * kl_n - (1/L) sum_l log p(x_n | z_ln)],  z = mu + exp(logvar / 2) * eps

into ``p.grad`` with explicit matrix products. tests/test_fused.py checks them
against autograd on :func:`vaekit.objectives.elbo`. Anything else uses autograd.
"""

from __future__ import annotations

from dataclasses import fields

import torch
from torch import Tensor, nn

from vaekit.config import TrainConfig
from vaekit.likelihoods import Bernoulli
from vaekit.networks import LOGVAR_RANGE, Decoder, GaussianEncoder, VAEModule
from vaekit.objectives import ELBOTerms, gaussian_kl

#: the TrainConfig fields this module knows the meaning of; any other field (added later)
#: away from its default sends training back to autograd, so no option is silently ignored
KNOWN_FIELDS = frozenset(
    {"epochs", "batch_size", "optimizer", "lr", "weight_decay", "estimator", "samples", "beta"}
    | {"binarize", "seed", "verbose", "device", "compile", "lr_schedule", "adam_eps", "checkpoint_every"}
    | {"objective", "free_bits", "warmup_steps"}  # checked below / warm-up only sets beta
)


def _linears(trunk: nn.Sequential) -> list[nn.Linear] | None:
    """The Linear layers of an mlp() trunk (Linear, activation, ...), or None if it is anything else."""
    layers = list(trunk)
    linears = layers[0::2]
    ok = all(type(m) is nn.Linear for m in linears) and all(
        type(m) in (nn.ReLU, nn.Tanh) for m in layers[1::2]
    )
    return linears if ok and len(layers) % 2 == 0 else None


def supports(module: nn.Module, config: TrainConfig) -> bool:
    """Whether :func:`elbo_step` computes exactly what autograd on ``objectives.elbo`` would."""
    if type(module) is not VAEModule or module.cond_dim or type(module.likelihood) is not Bernoulli:
        return False
    if type(module.encoder) is not GaussianEncoder or type(module.decoder) is not Decoder:  # mlp only
        return False
    if config.estimator != "analytic" or config.objective != "elbo" or config.free_bits:
        return False
    unknown = [f for f in fields(config) if f.name not in KNOWN_FIELDS]
    if any(getattr(config, f.name) != f.default for f in unknown):
        return False
    trunks = (module.encoder.trunk, module.decoder.trunk)
    acts = {type(m) for t in trunks for m in list(t)[1::2]}
    return all(_linears(t) is not None for t in trunks) and len(acts) <= 1


def _act(h: Tensor, relu: bool) -> Tensor:
    return torch.relu_(h) if relu else torch.tanh_(h)


def _act_grad(grad: Tensor, out: Tensor, relu: bool) -> Tensor:
    """d loss / d pre-activation from d loss / d out and the activation's output (autograd's kernels)."""
    if relu:
        return torch.ops.aten.threshold_backward(grad, out, 0)  # grad where out > 0
    return torch.ops.aten.tanh_backward(grad, out)  # grad * (1 - out^2)


def _forward(linears: list[nn.Linear], h: Tensor, relu: bool) -> list[Tensor]:
    """Inputs of every layer and the last output: [h0, h1, ..., hK]."""
    outs = [h]
    for lin in linears:
        outs.append(_act(torch.addmm(lin.bias, outs[-1], lin.weight.t()), relu))
    return outs


def _grad(p: nn.Parameter) -> Tensor:
    """Where p's gradient is written: ``p.grad`` (the trainer's view of its flat buffer), made if None."""
    if p.grad is None:
        p.grad = torch.empty_like(p)
    return p.grad


def _linear_grads(lin: nn.Linear, pre: Tensor, inp: Tensor) -> None:
    """dW = pre^T inp ``(out, in)``, db = sum_n pre ``(out,)``, written in place into the gradients."""
    torch.mm(pre.t(), inp, out=_grad(lin.weight))
    torch.sum(pre, 0, out=_grad(lin.bias))


def _backward(
    linears: list[nn.Linear], outs: list[Tensor], grad: Tensor, relu: bool, need_input: bool
) -> Tensor:
    """Write the layers' weight and bias gradients; return d loss / d outs[0] (or grad if not needed)."""
    for i in range(len(linears) - 1, -1, -1):
        lin = linears[i]
        pre = _act_grad(grad, outs[i + 1], relu)
        _linear_grads(lin, pre, outs[i])
        if i or need_input:
            grad = pre @ lin.weight
    return grad


@torch.no_grad()
def elbo_step(
    module: VAEModule, x: Tensor, eps: Tensor, beta: float, scale: float = 1.0
) -> tuple[ELBOTerms, Tensor]:
    """Terms (recon, kl per example, nats) and the scaled loss for x ``(n, d)`` and eps ``(L, n, J)``;
    writes the loss's gradient into ``p.grad`` of every parameter (in place where it exists, as the
    trainer's flat gradient buffer needs; as ``loss.backward()`` after ``zero_grad()`` would)."""
    enc, dec = _linears(module.encoder.trunk), _linears(module.decoder.trunk)
    assert enc is not None and dec is not None
    relu = any(type(m) is nn.ReLU for m in (*module.encoder.trunk, *module.decoder.trunk))
    L, n, J = eps.shape
    hs = _forward(enc, x, relu)
    h = hs[-1]
    mu = torch.addmm(module.encoder.mu.bias, h, module.encoder.mu.weight.t())  # (n, J)
    raw = torch.addmm(module.encoder.logvar.bias, h, module.encoder.logvar.weight.t())
    logvar = raw.clamp(*LOGVAR_RANGE)
    std = torch.exp(0.5 * logvar)
    z = (mu + std * eps).reshape(L * n, J)
    gs = _forward(dec, z, relu)
    out = module.decoder.out
    logits = torch.addmm(out.bias, gs[-1], out.weight.t())  # (L n, d)
    recon = module.likelihood.log_prob(x, logits.view(L, n, -1)).mean(0)  # (n,)
    kl = gaussian_kl(mu, logvar).sum(-1)  # (n,)
    loss = (beta * kl - recon).mean() * scale
    c = scale / n
    # d loss / d logits = -(c / L) (x - sigmoid(logits)): Bernoulli log p = x l - softplus(l)
    dlogits = torch.sigmoid(logits).view(L, n, -1).sub_(x).mul_(c / L).view(L * n, -1)
    _linear_grads(out, dlogits, gs[-1])
    dz = _backward(dec, gs, dlogits @ out.weight, relu, need_input=True).view(L, n, J)
    dmu = dz.sum(0) + (beta * c) * mu  # d kl / d mu = mu
    # d z / d logvar = eps * std / 2; d kl / d logvar = (exp(logvar) - 1) / 2; clamp passes inside its range
    dlogvar = (dz * eps).sum(0) * (0.5 * std) + (0.5 * beta * c) * (torch.exp(logvar) - 1)
    dlogvar *= (raw >= LOGVAR_RANGE[0]) & (raw <= LOGVAR_RANGE[1])
    _linear_grads(module.encoder.mu, dmu, h)
    _linear_grads(module.encoder.logvar, dlogvar, h)
    dh = dmu @ module.encoder.mu.weight + dlogvar @ module.encoder.logvar.weight
    _backward(enc, hs, dh, relu, need_input=False)
    return ELBOTerms(recon, kl), loss
