"""The discretized mixture of logistics (PixelCNN++ form) against direct computations and its own samples."""

import math

import pytest
import torch

from vaekit import VaekitError
from vaekit.config import ModelConfig
from vaekit.evaluate import evaluate
from vaekit.likelihoods import LOG_PROBABILITY, make_likelihood
from vaekit.logistic_mixture import NAME
from vaekit.networks import VAEModule

RGB = 3


def _mixture(components, channels=RGB):
    return make_likelihood(NAME, {"components": components}, channels)


def _pixel_params(logits, mu, log_s, coupling):
    """One pixel's parameter vector from per-component lists: mu and log_s (C, K), coupling (pairs, K)."""
    rows = [torch.as_tensor(t, dtype=torch.float64).flatten() for t in (logits, mu, log_s, coupling)]
    return torch.cat(rows)


def _bin(x, m, s):
    """P(v) of one value x = v / 255 under a logistic (m, s), edge bins taking the tails: a difference
    of CDFs below m, of survival functions above it (the smaller numbers, so that nothing cancels)."""
    sf = lambda t: 1 / (1 + math.exp((t - m) / s))  # noqa: E731
    upper = 0.0 if x > 254.5 / 255 else sf(x + 0.5 / 255)
    lower = 1.0 if x < 0.5 / 255 else sf(x - 0.5 / 255)
    if x <= m:
        cdf = lambda t: 1 / (1 + math.exp(-(t - m) / s))  # noqa: E731
        upper = 1.0 if x > 254.5 / 255 else cdf(x + 0.5 / 255)
        lower = 0.0 if x < 0.5 / 255 else cdf(x - 0.5 / 255)
        return upper - lower
    return lower - upper


def _naive_log_prob(x, params, k, hw):
    """log P of one RGB image row x ``(3 * hw,)``, a pixel and a component at a time in Python floats."""
    at = lambda block, pixel: float(params[block * hw + pixel])  # noqa: E731
    total = 0.0
    for p in range(hw):
        r, g, b = (float(x[c * hw + p]) for c in range(RGB))
        logits = [at(j, p) for j in range(k)]
        z = sum(math.exp(v) for v in logits)
        prob = 0.0
        for j in range(k):
            mu = [at(k + c * k + j, p) for c in range(RGB)]
            s = [math.exp(max(at(k + RGB * k + c * k + j, p), -7.0)) for c in range(RGB)]
            a_rg, a_rb, a_gb = (math.tanh(at(k + 2 * RGB * k + pair * k + j, p)) for pair in range(3))
            means = [mu[0], mu[1] + a_rg * r, mu[2] + a_rb * r + a_gb * g]
            prob += (
                math.exp(logits[j])
                / z
                * math.prod(_bin(v, m, sc) for v, m, sc in zip((r, g, b), means, s, strict=True))
            )
        total += math.log(prob)
    return total


def test_the_probabilities_of_all_256_cubed_colours_of_a_pixel_sum_to_one():
    """All 16.7 million colours, in float32 (float64 takes 3x longer; log_prob is checked in float64
    below): locations near the edges give the edge bins' tails a share of the mass."""
    lik = _mixture(2)
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([[0.02, 0.5], [0.3, 0.97], [0.6, 0.1]])
    log_s = torch.randn(RGB, 2, generator=g) - 3
    params = _pixel_params([0.4, -0.3], mu, log_s, torch.randn(3, 2, generator=g)).float()[None]
    levels = torch.arange(256) / 255
    gb = torch.cartesian_prod(levels, levels)  # (65536, 2)
    total = torch.zeros((), dtype=torch.float64)
    for reds in levels.split(16):  # 16 * 65536 colours a pass
        x = torch.cat([reds.repeat_interleave(len(gb))[:, None], gb.repeat(len(reds), 1)], dim=1)
        total += lik.log_prob(x, params).exp().double().sum()
    assert abs(float(total) - 1.0) < 1e-5


def test_log_prob_equals_a_pixel_by_pixel_computation():
    k, hw, n = 2, 4, 3  # 2x2 RGB images
    lik = _mixture(k)
    g = torch.Generator().manual_seed(1)
    params = torch.randn(2, n, lik.params_per_pixel * hw, generator=g, dtype=torch.float64)  # 2 samples of z
    params[..., k * hw : 3 * k * hw] = params[..., k * hw : 3 * k * hw] * 0.3 + 0.5  # locations inside [0, 1]
    x = torch.randint(0, 256, (n, RGB * hw), generator=g).double() / 255
    x[0, :3] = torch.tensor([0.0, 1.0, 1.0])  # edge bins, in several channels
    x[1, ::hw] = 0.0
    got = lik.log_prob(x, params)
    want = torch.tensor(
        [[_naive_log_prob(x[i], params[j, i], k, hw) for i in range(n)] for j in range(2)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert (
        got.float().dtype == torch.float32 and torch.isfinite(lik.log_prob(x.float(), params.float())).all()
    )


def test_one_component_without_coupling_is_the_discretized_logistic_per_channel():
    hw, n = 6, 4
    g = torch.Generator().manual_seed(2)
    mu = torch.rand(n, RGB * hw, generator=g)
    log_s = torch.randn(n, RGB * hw, generator=g) - 4
    x = torch.randint(0, 256, (n, RGB * hw), generator=g).float() / 255
    x[0, :2] = torch.tensor([0.0, 1.0])
    logit = torch.randn(n, hw, generator=g)  # one component: its weight is 1 whatever the logit
    params = torch.cat([logit, mu, log_s, torch.zeros(n, 3 * hw)], dim=-1)
    single = make_likelihood("discretized_logistic")
    torch.testing.assert_close(
        _mixture(1).log_prob(x, params), single.log_prob(x, torch.cat([mu, log_s], -1))
    )
    torch.testing.assert_close(_mixture(1).mean(params), single.mean(torch.cat([mu, log_s], -1)))


# two components, strongly coupled channels, about a level wide: some 400 colours carry the mass
_SMALL = dict(
    logits=[0.3, -0.2],
    mu=[[0.6, 0.2], [-0.3, 0.5], [0.2, 0.9]],
    log_s=[[-5.5, -5.0], [-6.0, -5.5], [-5.0, -6.0]],
    coupling=[[2.0, -0.5], [-1.0, 1.0], [0.5, -2.0]],  # tanh: a_rg, a_rb, a_gb of each component
)


def test_sample_frequencies_match_the_probabilities():
    lik, n = _mixture(2), 200_000
    params = _pixel_params(**_SMALL)[None]
    draws = lik.sample(params.expand(n, -1), torch.Generator().manual_seed(3))
    assert ((draws * 255).round() == draws * 255).all()
    colours, counts = torch.unique(draws, dim=0, return_counts=True)
    expected = lik.log_prob(colours, params).exp() * n
    big = expected >= 5
    observed = torch.cat([counts[big].double(), (n - counts[big].sum()).double()[None]])
    expect = torch.cat([expected[big], n - expected[big].sum()[None]])
    chi2 = float(((observed - expect) ** 2 / expect).sum())
    df = int(big.sum())
    assert df > 100 and expected.sum() > 0.99 * n  # many colours, and the draws found nearly all the mass
    assert chi2 < df + 5 * math.sqrt(2 * df)  # a 5-sigma bound on a chi-square of df degrees of freedom


def test_mean_is_the_mixture_mean():
    lik, n = _mixture(2), 100_000
    inside = dict(_SMALL, mu=[[0.6, 0.2], [-0.2, 0.5], [0.5, 0.6]])  # every coupled location in (0, 1)
    params = _pixel_params(**inside)[None]
    draws = lik.sample(params.expand(n, -1), torch.Generator().manual_seed(4))
    sem = draws.std(0) / math.sqrt(n)
    assert ((draws.mean(0) - lik.mean(params)[0]).abs() < 4 * sem + 1e-4).all()
    pi = torch.tensor(inside["logits"], dtype=torch.float64).softmax(0)  # red: sum_k pi_k mu_k, no coupling
    assert float(lik.mean(params)[0, 0]) == pytest.approx(float(0.6 * pi[0] + 0.2 * pi[1]), abs=1e-9)


def test_a_pixel_has_10_k_numbers_in_rgb_and_3_k_in_grey():
    assert _mixture(5).params_per_pixel == 50 and _mixture(5, channels=1).params_per_pixel == 15
    assert _mixture(1, channels=4).params_per_pixel == 1 + 8 + 6  # RGBA: six channel pairs


@pytest.mark.parametrize("components", [0, 2.5, 10_000, True])
def test_components_must_be_a_whole_number_in_range(components):
    with pytest.raises(VaekitError, match="components") as e:
        ModelConfig(likelihood=NAME, likelihood_options={"components": components})
    assert "\n" not in str(e.value)


def test_it_needs_8_bit_values():
    lik = _mixture(2)
    assert lik.check_data(torch.tensor([[0.5, 0.2, 0.1]])) is not None
    assert NAME in lik.check_data(torch.tensor([[0.5, 0.2, 0.1]]))
    assert lik.check_data(torch.tensor([[0.0, 128 / 255, 1.0]])) is None


def test_evaluation_reports_a_code_length_in_bits_per_dim():
    torch.manual_seed(0)
    shape = (RGB, 4, 4)
    config = ModelConfig(latent_dim=2, hidden=(16,), likelihood=NAME, likelihood_options={"components": 2})
    module = VAEModule(48, config, image_shape=shape)
    x = torch.randint(0, 256, (20, 48), generator=torch.Generator().manual_seed(5)).float() / 255
    result = evaluate(module, x, k=10, levels=256)  # a probability already: nothing to dequantize
    assert result["measure"] == LOG_PROBABILITY and result["dequantized_log_px"] is None
    assert result["bits_per_dim"] == pytest.approx(-result["log_px"] / (48 * math.log(2)))
    assert "bits/dim = -log p(x) / (d log 2)" in result["note"]
