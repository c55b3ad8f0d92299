"""What `vaekit eval` prints and records: standard errors, the k/10 check from the same draws, and
labels that say what each number is (log-probability, log-density, cross-entropy, dequantized)."""

import json
import math

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.config import ModelConfig
from vaekit.evaluate import (
    DEQUANTIZE_SEED,
    _batches,
    dequantize,
    elbo_summary,
    eval_table,
    evaluate,
    importance_log_likelihood,
    importance_log_likelihoods,
    on_level_grid,
    standard_error,
)
from vaekit.likelihoods import CROSS_ENTROPY, LIKELIHOODS, LOG_DENSITY, LOG_PROBABILITY, make_likelihood
from vaekit.networks import VAEModule
from vaekit.objectives import elbo, log_weights


def _module(likelihood="bernoulli", d=8, seed=0):  # hidden no wider than d: chunks as given
    torch.manual_seed(seed)
    return VAEModule(d, ModelConfig(latent_dim=2, hidden=(8,), activation="tanh", likelihood=likelihood))


def _binary(n=40, d=8, seed=1):
    return torch.bernoulli(torch.full((n, d), 0.4), generator=torch.Generator().manual_seed(seed))


def _bytes(n=40, d=8, seed=1):
    """8-bit values v / 255 as float32."""
    v = torch.randint(0, 256, (n, d), generator=torch.Generator().manual_seed(seed))
    return v.float() / 255


def test_standard_error_is_the_sample_sd_over_root_n():
    values = np.array([-101.5, -99.0, -98.25, -103.0, -97.75, -100.0])
    expected = np.std(values, ddof=1) / np.sqrt(len(values))
    assert standard_error(torch.tensor(values)) == pytest.approx(expected, rel=1e-12)
    assert standard_error(torch.tensor([3.0, 3.0, 3.0])) == 0.0
    assert standard_error(torch.tensor([1.0])) is None  # one value has no spread to measure


def test_elbo_and_estimate_standard_errors_match_numpy_on_the_per_example_values():
    module, x = _module(), _binary()
    with torch.no_grad():  # the per-example ELBOs, drawn as elbo_summary draws them (one batch)
        per_example = elbo(module, x, None, 3, "analytic", torch.Generator().manual_seed(5)).elbo.numpy()
    summary = elbo_summary(module, x, samples=3, seed=5)
    assert summary["elbo"] == pytest.approx(per_example.mean(), rel=1e-6)
    assert summary["elbo_sem"] == pytest.approx(np.std(per_example, ddof=1) / np.sqrt(len(x)), rel=1e-6)

    result = evaluate(module, x, k=50, samples=3, seed=5)
    log_px = importance_log_likelihood(module, x, k=50, seed=5).numpy()
    assert result["elbo_sem"] == summary["elbo_sem"]
    assert result["iw_estimate"] == pytest.approx(log_px.mean(), rel=1e-12)
    assert result["iw_estimate_sem"] == pytest.approx(np.std(log_px, ddof=1) / np.sqrt(len(x)), rel=1e-9)


def _reference_estimates(module, x, k, k_check, seed, rows, per_pass):
    """The estimates with k and k_check written out: every log-weight of each block of ``rows``
    examples drawn in passes of ``per_pass`` samples from one generator, as the evaluator draws them."""
    generator = torch.Generator().manual_seed(seed)
    full, check = [], []
    for xb, _ in _batches(x, None, rows, torch.device("cpu")):
        lw = torch.cat(
            [log_weights(module, xb, None, min(per_pass, k - j), generator) for j in range(0, k, per_pass)]
        ).double()  # (k, rows)
        full.append(torch.logsumexp(lw, 0) - math.log(k))
        check.append(torch.logsumexp(lw[:k_check], 0) - math.log(k_check))
    return torch.cat(full), torch.cat(check)


@pytest.mark.parametrize(
    ("chunk", "rows", "per_pass"),
    [
        (40 * 60, 40, 60),
        (3, 1, 3),
        (2 * 60, 2, 60),
    ],  # one pass; 3 samples a pass (k/10 = 6 spans two); 2 rows
)
def test_the_k_over_10_check_is_the_estimate_from_the_first_draws(chunk, rows, per_pass):
    module, x = _module(), _binary()
    with torch.no_grad():
        full, check = importance_log_likelihoods(module, x, None, (60, 6), seed=3, chunk=chunk)
        ref_full, ref_check = _reference_estimates(module, x, 60, 6, 3, rows, per_pass)
        alone = importance_log_likelihood(module, x, k=60, seed=3, chunk=chunk)
    torch.testing.assert_close(check, ref_check, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(full, ref_full, rtol=1e-12, atol=1e-12)
    assert torch.equal(full, alone)  # tracking the check leaves the k-sample number exactly as it was
    assert not torch.equal(full, check)


def test_the_check_with_k_over_10_from_one_draw_equals_an_independent_k_over_10_estimate():
    """With every sample of every example in one pass, the first k/10 log-weights of the generator's
    state are exactly what an independent k/10 computation from the same seed draws first."""
    module, x = _module(), _binary(n=10)
    with torch.no_grad():
        _, check = importance_log_likelihoods(module, x, None, (100, 10), seed=4, chunk=10 * 100)
        lw = log_weights(module, x, None, 100, torch.Generator().manual_seed(4)).double()  # (100, 10)
    torch.testing.assert_close(check, torch.logsumexp(lw[:10], 0) - math.log(10), rtol=1e-12, atol=1e-12)
    result = evaluate(module, x, k=100, seed=4)
    assert result["k_check"] == 10
    assert result["iw_check"] == pytest.approx(float(check.mean()), rel=1e-12)


def test_the_gain_from_k_over_10_to_k_is_positive_on_average():
    """E[estimate_k] rises with k (Burda et al. 2015, Thm 1): from k/10 to k the mean gain is positive.

    The decoder's weights are multiplied by 5 so that its posterior is far from q and the gain is large.
    """
    module, x = _module(seed=2), _binary(n=300)
    with torch.no_grad():
        for p in module.decoder.parameters():
            p.mul_(5.0)
    result = evaluate(module, x, k=200, seed=0)
    assert result["k_gain"] > 4 * result["k_gain_sem"] > 0
    assert result["k_gain"] == pytest.approx(result["iw_estimate"] - result["iw_check"], abs=1e-9)


def test_likelihood_kinds():
    assert {name: cls.discrete for name, cls in LIKELIHOODS.items()} == {
        "bernoulli": True,
        "gaussian": False,
        "gaussian_fixed": False,
        "discretized_logistic": True,
        "discretized_logistic_mixture": True,
    }
    bernoulli = make_likelihood("bernoulli")
    assert bernoulli.measure(_binary()) == LOG_PROBABILITY
    assert bernoulli.measure(_bytes()) == CROSS_ENTROPY
    assert make_likelihood("discretized_logistic").measure(_bytes()) == LOG_PROBABILITY
    assert make_likelihood("gaussian").measure(_binary()) == LOG_DENSITY


def test_bernoulli_on_binary_data_is_a_code_length_in_bits_per_dim():
    module, x = _module(), _binary()
    result = evaluate(module, x, k=20)
    assert result["measure"] == LOG_PROBABILITY and result["log_px"] == result["iw_estimate"]
    assert result["bits_per_dim"] == pytest.approx(-result["log_px"] / (8 * math.log(2)))
    table = eval_table(result)
    assert "log p(x) lower bound, k=20" in table and "same draws, k=2" in table and "bits/dim" in table
    assert "stochastic lower bound on log p(x)" in table


def test_bernoulli_on_grey_levels_is_a_cross_entropy_without_log_px_or_bits():
    module, x = _module(), _bytes()
    result = evaluate(module, x, k=20, levels=256)  # 8-bit data, but a Bernoulli gives them no probability
    assert result["measure"] == CROSS_ENTROPY
    assert result["log_px"] is None and result["log_px_sem"] is None and result["bits_per_dim"] is None
    assert result["dequantized_log_px"] is None and math.isfinite(result["iw_estimate"])
    table = eval_table(result)
    assert "log p(x)" not in table and "bits/dim" not in table and "cross-entropy" in table
    assert len([line for line in table.splitlines() if "cross-entropies" in line]) == 1  # said in one line


def test_density_without_known_levels_is_nats_only():
    module, x = _module("gaussian"), _bytes()
    result = evaluate(module, x, k=20)  # levels unknown
    assert result["measure"] == LOG_DENSITY and result["log_px"] == result["iw_estimate"]
    assert result["bits_per_dim"] is None and result["dequantized_log_px"] is None
    assert "bits/dim" not in eval_table(result) and "p(x) is a density" in eval_table(result)
    off_grid = x + 0.3 / 255  # claimed 8-bit, but the values are not on the grid: no claim
    assert evaluate(module, off_grid, k=20, levels=256)["bits_per_dim"] is None


def test_density_on_8_bit_data_is_dequantized_for_bits_per_dim():
    module, x = _module("gaussian"), _bytes()
    result = evaluate(module, x, k=20, seed=2, levels=256)
    with torch.no_grad():
        x_deq = dequantize(x, 256, torch.Generator().manual_seed(2 + DEQUANTIZE_SEED))
        expected = importance_log_likelihood(module, x_deq, k=20, seed=2) - 8 * math.log(256)
    assert result["levels"] == 256
    assert result["dequantized_log_px"] == pytest.approx(float(expected.mean()), rel=1e-9)
    assert result["bits_per_dim"] == pytest.approx(-float(expected.mean()) / (8 * math.log(2)), rel=1e-9)
    table = eval_table(result)
    assert "log P(v), dequantized, k=20" in table and "- d log 256" in table and "bits/dim" in table


def test_dequantize_moves_each_level_into_its_own_bin():
    v = torch.arange(256, dtype=torch.float64).repeat(50)
    x = (v / 255).float()[:, None]
    assert on_level_grid(x, 256) and not on_level_grid(x + 0.4 / 255, 256)
    y = dequantize(x, 256, torch.Generator().manual_seed(0)).double()[:, 0]
    assert ((y >= v / 256) & (y < (v + 1) / 256)).all()
    u = y * 256 - v  # the uniform noise in [0, 1)
    assert abs(float(u.mean()) - 0.5) < 0.02 and abs(float(u.var()) - 1 / 12) < 0.005


def test_dequantized_bound_on_a_gaussian_density_matches_its_closed_form_and_stays_below_log_P():
    """For p = N(mu, s^2) on one dimension and L levels, log P(v) = log(Phi(b) - Phi(a)) over v's bin
    [a, b) = [v / L, (v + 1) / L); the dequantized number E_u[log p((v + u) / L)] - log L is, in
    closed form, -log(2 pi s^2) / 2 - E[(y - mu)^2] / (2 s^2) - log L with y uniform on the bin, and
    is below log P(v) by Jensen's inequality, by little when the bin is narrow against s."""
    levels, mu, s = 16, 0.4, 0.3
    normal = torch.distributions.Normal(
        torch.tensor(mu, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)
    )
    v = torch.arange(levels, dtype=torch.float64)
    a, b = v / levels, (v + 1) / levels
    log_p_bin = (normal.cdf(b) - normal.cdf(a)).log()
    mean_sq = ((b - mu) ** 3 - (a - mu) ** 3) / (3 * (b - a))  # E[(y - mu)^2], y ~ U[a, b)
    closed = -0.5 * math.log(2 * math.pi * s**2) - mean_sq / (2 * s**2) - math.log(levels)
    # Monte Carlo through dequantize: 20,000 draws of each level
    x = (v / (levels - 1)).repeat(20_000)[:, None].float()
    y = dequantize(x, levels, torch.Generator().manual_seed(1)).double()[:, 0]
    mc = (normal.log_prob(y) - math.log(levels)).view(20_000, levels)
    sem = mc.std(0) / math.sqrt(20_000)
    assert ((mc.mean(0) - closed).abs() < 4 * sem + 1e-9).all()
    assert (closed < log_p_bin).all() and (log_p_bin - closed).max() < 0.02
    # and a density of 1 on [0, 1) (no information) costs exactly log2(L) bits per dimension
    assert -(0.0 - math.log(256)) / math.log(2) == pytest.approx(8.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_subset):
    """Two 1-epoch runs on the subset: grey levels (binarize none) and dynamically binarized."""
    out = {}
    for binarize in ("none", "dynamic"):
        folder = tmp_path_factory.mktemp("runs") / binarize
        argv = ["train", "--data", str(mnist_subset), "--epochs", "1", "--latent-dim", "4", "--hidden", "32"]
        assert main([*argv, "--binarize", binarize, "--quiet", "-o", str(folder)]) == 0
        out[binarize] = folder
    return out


def test_eval_of_a_grey_level_run_prints_no_log_px_and_no_bits(runs, mnist_subset, capsys):
    capsys.readouterr()
    assert main(["eval", str(runs["none"]), "--data", str(mnist_subset), "--k", "50", "-n", "60"]) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err  # the table and the progress bar
    assert "log p(x)" not in printed and "bits/dim" not in printed and "bits per" not in printed
    assert "cross-entropy" in captured.out and "60/60" in captured.err
    record = json.loads((runs["none"] / "eval.json").read_text())
    assert (
        record["measure"] == "cross_entropy" and record["log_px"] is None and record["bits_per_dim"] is None
    )
    assert record["elbo"] < record["iw_estimate"] < 0 and record["k_check"] == 5


def test_eval_of_a_binarized_run_prints_the_bound_its_check_and_bits(runs, mnist_subset, capsys):
    assert main(["eval", str(runs["dynamic"]), "--data", str(mnist_subset), "--k", "50", "--quiet"]) == 0
    out = capsys.readouterr().out
    record = json.loads((runs["dynamic"] / "eval.json").read_text())
    assert record["measure"] == "log_probability" and record["binarization_seed"] is not None
    assert record["elbo"] < record["iw_check"] < record["log_px"] < 0  # k = 5 then k = 50, same draws
    assert record["bits_per_dim"] == pytest.approx(-record["log_px"] / (784 * math.log(2)))
    for sem in ("elbo_sem", "log_px_sem", "iw_check_sem", "k_gain_sem"):
        assert 0 < record[sem] < 10
    assert "log p(x) lower bound, k=50" in out and "same draws, k=5" in out and "bits/dim" in out
    assert f"{record['log_px']:.2f}" in out and f"{record['log_px_sem']:.2f}" in out
