"""VAE as a scikit-learn estimator: its common checks, GridSearchCV, Pipeline, clone, set_output,
and vaekit without scikit-learn."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", minversion="1.6")
pd = pytest.importorskip("pandas")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import estimator_checks  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from vaekit import VAE, VaekitError  # noqa: E402


def small_vae(**params):
    """A VAE that fits the checks' small real-valued data in milliseconds (a Gaussian decoder:
    the checks' data are not in [0, 1], the default Bernoulli decoder's support)."""
    return VAE(
        **{"latent_dim": 2, "hidden": (8,), "likelihood": "gaussian", "epochs": 2, "batch_size": 16, **params}
    )


#: checks VAE fails by design, and why
EXPECTED_FAILED = {
    "check_methods_subset_invariance": "score_samples is an importance-sampled estimate of log p(x) whose "
    "draws are one seeded stream over the rows in order, so a row's value depends on the rows before it",
    "check_methods_sample_order_invariance": "the same: score_samples of a row depends on the rows before it",
}


with warnings.catch_warnings():  # VAE does not inherit BaseEstimator on purpose (vaekit.sklearn_compat)
    warnings.filterwarnings("ignore", "Estimator VAE does not inherit from")
    with_checks = parametrize_with_checks([small_vae()], expected_failed_checks=lambda est: EXPECTED_FAILED)


@with_checks
def test_check_estimator(estimator, check):
    check(estimator)


#: checks of feature names and set_output that check_estimator does not yield for estimators
#: outside scikit-learn (it runs them on its own transformers only)
TRANSFORMER_CHECKS = [
    "check_dataframe_column_names_consistency",
    "check_transformer_get_feature_names_out",
    "check_transformer_get_feature_names_out_pandas",
    "check_get_feature_names_out_error",
    "check_set_output_transform",
    "check_set_output_transform_pandas",
    "check_global_output_transform_pandas",
]


@pytest.mark.filterwarnings("ignore:X (does not have valid|has) feature names")  # what the checks provoke
@pytest.mark.parametrize("name", TRANSFORMER_CHECKS)
def test_transformer_checks(name):
    getattr(estimator_checks, name)("VAE", small_vae())


def blobs(n=240, d=10, seed=0):
    """Two Gaussian blobs in d dimensions, 3 standard deviations apart along every axis."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return rng.normal(size=(n, d)) + 3.0 * y[:, None], y


def test_grid_search_picks_the_higher_elbo():
    """GridSearchCV's score is VAE.score, the mean test ELBO: longer training scores higher and wins."""
    X, _ = blobs()
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(small_vae(hidden=(16,)), {"epochs": [1, 40]}, cv=cv).fit(X)
    assert search.best_params_ == {"epochs": 40}
    train, test = next(cv.split(X))
    by_hand = small_vae(hidden=(16,), epochs=40).fit(X[train]).score(X[test])
    assert search.cv_results_["split0_test_score"][1] == pytest.approx(by_hand, rel=1e-6)
    assert search.cv_results_["mean_test_score"][1] > search.cv_results_["mean_test_score"][0]


def test_pipeline_classifies_on_the_latent_means():
    """StandardScaler -> VAE -> LogisticRegression, passing pandas frames (set_output) between steps."""
    X, y = blobs()
    pipe = make_pipeline(StandardScaler(), small_vae(epochs=20), LogisticRegression()).set_output(
        transform="pandas"
    )
    pipe.fit(X[:160], y[:160])
    assert pipe.score(X[160:], y[160:]) > 0.95  # the blobs stay apart in the 2-D latent space
    latent = pipe[:-1].transform(X[160:])
    assert list(latent.columns) == ["vae0", "vae1"] and list(pipe[1].feature_names_in_) == [
        f"x{i}" for i in range(10)
    ]
    scaled = pipe[0].transform(X[160:])
    np.testing.assert_array_equal(
        latent.to_numpy(), pipe[1].set_output(transform="default").transform(scaled)
    )


def test_clone_fit_transform_and_names():
    X, _ = blobs(60)
    vae = small_vae().fit(X)
    twin = clone(vae)
    assert twin.get_params() == vae.get_params() and not hasattr(twin, "module_")
    np.testing.assert_array_equal(twin.fit_transform(X), vae.transform(X))  # same seed, same model
    np.testing.assert_array_equal(vae.get_feature_names_out(), np.array(["vae0", "vae1"], dtype=object))
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(10)], index=range(100, 160))
    out = small_vae().set_output(transform="pandas").fit(frame).transform(frame)
    assert list(out.index) == list(range(100, 160)) and out.dtypes.iloc[0] == np.float32
    assert list(small_vae().fit(frame).feature_names_in_) == list(frame.columns)


def test_unfitted_and_bad_input_errors_are_both_kinds():
    """A vaekit error (the CLI prints it in one line) and the type scikit-learn expects."""
    with pytest.raises(NotFittedError) as caught:
        small_vae().transform(np.zeros((2, 3)))
    assert isinstance(caught.value, VaekitError)
    with pytest.raises(ValueError, match="X has 2 features, but VAE is expecting 10 features as input"):
        small_vae().fit(blobs(30)[0]).transform(np.zeros((2, 2)))
    with pytest.raises(VaekitError, match="set_output: transform must be one of"):
        small_vae().set_output(transform="polars")
    with pytest.raises(ValueError, match="VAE has no parameter 'latent'"):
        small_vae().set_params(latent=3)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_vaekit_works_without_sklearn():
    """Fitting arrays does not import scikit-learn (a second's import); with it blocked from import,
    the estimator still fits, transforms and names its outputs."""
    code = """
import sys
import numpy as np
from vaekit import VAE, VaekitError
X = np.random.default_rng(0).normal(size=(40, 3))
VAE(latent_dim=2, hidden=(4,), likelihood="gaussian", epochs=1).fit(X).transform(X)
assert "sklearn" not in sys.modules, "imported sklearn"
sys.modules["sklearn"] = None  # import sklearn now raises ImportError
vae = VAE(latent_dim=2, hidden=(4,), likelihood="gaussian", epochs=1)
try:
    vae.transform(X)
except VaekitError as e:
    assert type(e) is VaekitError, type(e)
Z = vae.fit_transform(X)
assert isinstance(Z, np.ndarray) and Z.shape == (40, 2), Z
assert list(vae.get_feature_names_out()) == ["vae0", "vae1"]
try:
    vae.__sklearn_tags__()
except ImportError:
    print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr
