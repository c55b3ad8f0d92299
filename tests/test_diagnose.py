"""End-of-training warnings from the per-epoch metrics (vaekit.diagnose)."""

import numpy as np
import pytest

from vaekit.cli import main
from vaekit.diagnose import FALLING_EPOCHS, KL_NATS_PER_DIM, RunFacts, diagnose

FACTS = RunFacts(data_dim=10, lr=1e-3)


def _history(test_elbo, test_kl=None, train_elbo=None, recon=-50.0):
    """Metric rows with the given per-epoch test ELBOs (and KLs, train ELBOs)."""
    n = len(test_elbo)
    test_kl = test_kl or [5.0] * n
    train_elbo = train_elbo or [e + 1 for e in test_elbo]
    return [
        {
            "epoch": i + 1,
            "train_elbo": train_elbo[i],
            "train_recon": recon,
            "train_kl": test_kl[i],
            "test_elbo": test_elbo[i],
            "test_recon": recon,
            "test_kl": test_kl[i],
        }
        for i in range(n)
    ]


def test_a_healthy_run_gets_no_warning():
    assert diagnose(_history([-90, -80, -75, -74, -74.5, -73]), FACTS) == []
    assert diagnose([], FACTS) == []


def test_kl_beyond_float32_resolution_per_dimension_is_an_explosion():
    limit = KL_NATS_PER_DIM * FACTS.data_dim
    assert diagnose(_history([-90, -80], test_kl=[5, limit * 0.99]), FACTS) == []
    (warning,) = diagnose(_history([-90, -80], test_kl=[5, 3.7e5]), FACTS)
    assert "KL grew to 3.7e+05 nats" in warning and "lower --lr (now 0.001)" in warning
    (warning,) = diagnose(_history([-90, -80], test_kl=[5, 3.7e5]), RunFacts(10, 1e-3, raw_scale=661.0))
    assert "the data are on a large scale" in warning and "661" in warning and "--standardize auto" in warning


def test_exploded_reconstruction_term():
    (warning,) = diagnose(_history([-90, -80], recon=-5e6), FACTS)
    assert "reconstruction term fell to -5e+06 nats (-5e+05 per dimension)" in warning


def test_a_test_elbo_falling_at_the_end_is_reported_with_its_cause():
    rising_train = [-100, -90, -80, -70, -60, -50]
    falling = [-60, -55, -56, -57, -58, -59]
    (warning,) = diagnose(_history(falling, train_elbo=rising_train), FACTS)
    assert (
        f"fell in each of the last {4} epochs, from -55.00 to -59.00" in warning and "overfitting" in warning
    )
    # fewer epochs than FALLING_EPOCHS, or a fall that recovered, is no warning
    short = falling[: 1 + FALLING_EPOCHS]
    assert diagnose(_history(short, train_elbo=rising_train[: len(short)]), FACTS) == []
    assert diagnose(_history([*falling, -50], train_elbo=[*rising_train, -40]), FACTS) == []
    # the KL term growing by most of the fall
    (warning,) = diagnose(_history(falling, test_kl=[5, 5, 6, 7, 8, 9]), FACTS)
    assert "as its KL term grew by 4" in warning
    # train and test falling together
    (warning,) = diagnose(_history(falling, train_elbo=[e + 1 for e in falling]), FACTS)
    assert "and the train ELBO with it: training is unstable" in warning


def test_findings_with_one_cause_share_one_line():
    history = _history([-1e5, -2e5, -3e5, -4e5], test_kl=[1e5, 2e5, 3e5, 4e5])
    warnings = diagnose(history, RunFacts(30, 1e-3, raw_scale=500.0))
    assert (
        len(warnings) == 1
        and "KL grew to 4e+05" in warnings[0]
        and "fell in each of the last 3" in warnings[0]
    )


@pytest.fixture(scope="module")
def large_scale_csv(tmp_path_factory):
    """Correlated positive columns on scales 1e-3 .. 1e3, as in a CSV of unscaled measurements."""
    rng = np.random.default_rng(0)
    u = 0.8 * rng.normal(size=(300, 1)) + 0.6 * rng.normal(size=(300, 8))
    scales = np.logspace(-3, 3, 8)
    path = tmp_path_factory.mktemp("csv") / "measurements.csv"
    np.savetxt(path, np.abs(u * scales + 3 * scales), delimiter=",")
    return path


@pytest.mark.parametrize("standardize", ["off", "auto"])
def test_a_real_run_on_raw_large_scale_columns_says_why_it_failed(
    large_scale_csv, tmp_path, capsys, standardize
):
    flags = ["--likelihood", "gaussian", "--hidden", "16", "--epochs", "8", "--standardize", standardize]
    assert (
        main(["train", "--data", str(large_scale_csv), *flags, "--quiet", "-o", str(tmp_path / "run")]) == 0
    )
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    if standardize == "off":
        assert "not standardized: column scales from 0.00105 to 1.02e+03" in out
        assert len(warnings) == 1 and "KL grew to" in warnings[0] and "--standardize auto" in warnings[0]
    else:
        assert "standardized 8 columns; scales from 0.00105 to 1.02e+03" in out and warnings == []
