"""Property-based: malformed arrays, files, paths, parameters and flags get vaekit's own one-line
error (VaekitError in Python, exit code 2 and one stderr line on the command line), never another
exception, and leave existing files unchanged."""

import hashlib
import io
import math
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vaekit import VAE, VaekitError
from vaekit.cli import main
from vaekit.data import load_data, load_rows

# hypothesis itself warns when it casts generated values into float16 arrays
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# ---------------------------------------------------------------------------- strategies

DTYPES = st.sampled_from(
    [np.float32, np.float64, np.float16, np.uint8, np.int64, np.bool_, np.complex64, "U3", "S2", object,
     "datetime64[s]", "timedelta64[s]", [("a", "f4"), ("b", "i4")]]
)  # fmt: skip
SHAPES = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from([-1.0, 0.0, 0.5, 1e30])


@st.composite
def arrays(draw):
    """Any array: every dtype family, 0-5 dimensions (empty ones too), NaN, infinities, huge values."""
    dtype = np.dtype(draw(DTYPES))
    shape = draw(SHAPES)
    if dtype.kind == "f":
        return draw(hnp.arrays(dtype, shape, elements=FLOATS))
    if dtype.kind in "biuc":
        return draw(hnp.arrays(dtype, shape))
    if dtype.kind == "O":
        values = st.one_of(st.none(), st.text(max_size=2), st.floats(), st.lists(st.integers(), max_size=2))
        out = np.empty(shape, dtype=object)
        for index in np.ndindex(shape):
            out[index] = draw(values)
        return out
    return np.zeros(shape, dtype=dtype)  # strings, dates, records


def malformed(x: np.ndarray) -> bool:
    """Whether vaekit must refuse x as data (for the bernoulli likelihood)."""
    if x.dtype.kind not in "biuf" or x.ndim < 2 or x.ndim > 4 or x.size == 0:
        return True
    if x.ndim == 4 and x.shape[-1] not in (1, 3, 4):
        return True
    values = x.astype(np.float64)
    if x.dtype == np.uint8:
        values /= 255
    return not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1)


RAGGED = st.sampled_from([[[0.0, 1.0], [1.0]], [[0.5]] * 3 + [None], "not an array", {"x": 1}, 3.0, None])


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, mnist):
    """A folder with a fitted model and a good data file, which no bad input may change."""
    root = tmp_path_factory.mktemp("fuzz")
    vae = VAE(latent_dim=2, hidden=(8,), epochs=1, batch_size=50).fit(mnist.x_train[:100])
    vae.save(root / "run")
    np.save(root / "good.npy", mnist.x_test[:20].numpy())
    return root, vae


# ---------------------------------------------------------------------------- loaders


FILE_KINDS = st.sampled_from([".npy", ".npz", ".csv", ".png", ".gz", ""])


@SETTINGS
@given(x=arrays(), kind=FILE_KINDS, garbage=st.binary(max_size=64), cut=st.integers(0, 200))
def test_loaders_refuse_malformed_files(workspace, tmp_path_factory, x, kind, garbage, cut):
    root, _ = workspace
    before = _digest(root)
    folder = tmp_path_factory.mktemp("f")
    path = folder / f"data{kind}"
    buffer = io.BytesIO()
    if kind in (".npy", ".npz") and x.dtype.kind != "O":
        (np.save if kind == ".npy" else np.savez)(buffer, x)
        raw = buffer.getvalue()
        raw = raw[:cut] if cut < len(raw) and garbage else raw  # truncated, sometimes
    elif kind == ".npy":
        np.save(buffer, x, allow_pickle=True)  # an object array: a pickle inside
        raw = buffer.getvalue()
    elif kind == ".csv" and x.ndim == 2 and x.dtype.kind in "biuf":
        raw = "\n".join(",".join(map(str, row)) for row in x.tolist()).encode()
    else:
        raw = garbage
    path.write_bytes(raw)
    for load in (load_data, load_rows):
        try:
            found = load(str(path))
        except VaekitError as e:
            assert "\n" not in str(e) and str(path) in str(e)
            continue
        rows = found.x_train if hasattr(found, "x_train") else found[0]
        rows = rows.to("cpu")  # the float32 rows of memory-mapped bytes (vaekit.byterows) too
        assert rows.dtype == torch.float32 and rows.ndim == 2 and len(rows) > 0
        assert torch.isfinite(rows).all()
    assert _digest(root) == before


@SETTINGS
@given(name=st.text(min_size=1, max_size=12).filter(lambda s: s not in ("mnist", "fashion-mnist")))
def test_loaders_refuse_wrong_paths(workspace, name):
    path = workspace[0] / "missing" / name.replace("\x00", "")
    for load in (load_data, load_rows):
        with pytest.raises(VaekitError):
            load(str(path))


# ---------------------------------------------------------------------------- estimator


@SETTINGS
@given(x=arrays() | RAGGED)
def test_estimator_refuses_malformed_arrays(workspace, x):
    root, fitted = workspace
    before = _digest(root)
    if isinstance(x, np.ndarray) and not malformed(x):
        return  # well-formed data: covered by the training tests
    with pytest.raises(VaekitError):
        VAE(epochs=1, hidden=(4,), latent_dim=2).fit(x)
    for method in (fitted.transform, fitted.score, fitted.reconstruct, fitted.partial_fit):
        with pytest.raises(VaekitError):
            method(x)
    with pytest.raises(VaekitError):
        fitted.score_samples(x, k=2)
    assert _digest(root) == before


@SETTINGS
@given(z=arrays() | RAGGED)
def test_decoder_refuses_malformed_latents(workspace, z):
    _, fitted = workspace
    try:
        out = fitted.inverse_transform(z)
    except VaekitError:
        return
    assert out.shape == (len(z), 784) and np.isfinite(out).all()


BAD_VALUES = st.sampled_from(
    [0, -1, -0.5, math.nan, math.inf, "3", None, True, [2], (0,), "gelu", 1.5, b"x", {}]
)
HUGE = 2**70  # not a valid seed or sample count; as a float, a learning rate that diverges
PARAMS = st.sampled_from(sorted(VAE().get_params()))


@SETTINGS
@given(
    param=st.tuples(PARAMS, BAD_VALUES) | st.tuples(st.sampled_from(["seed", "lr", "beta"]), st.just(HUGE)),
    n=BAD_VALUES | st.just(HUGE),
)
def test_estimator_refuses_bad_parameters_and_arguments(workspace, mnist, param, n):
    name, value = param
    _, fitted = workspace
    x = mnist.x_train[:8].numpy()
    vae = VAE(epochs=1, hidden=(4,), latent_dim=2).set_params(**{name: value})
    try:
        vae.fit(x)
    except VaekitError as e:
        assert "\n" not in str(e)
    else:  # a value that happens to be valid for this parameter (lr = 2**70 included: no crash)
        assert vae.transform(x).shape == (8, 2) and vae.get_params()[name] == value
    for call in (lambda: fitted.sample(n), lambda: fitted.score_samples(x, k=n)):
        try:
            call()
        except VaekitError:
            continue
        assert isinstance(n, int) and not isinstance(n, bool) and 0 < n < 2**31  # only valid n may pass


# ---------------------------------------------------------------------------- command line


FLAG_VALUES = st.sampled_from(["0", "-3", "nan", "inf", "1e400", "x", "", "2x", "3,a", "10" * 12, "0.5", "7"])
FLAGS = st.sampled_from(
    ["--latent-dim", "--hidden", "--activation", "--likelihood", "--sigma", "--epochs", "--batch-size",
     "--optimizer", "--lr", "--weight-decay", "--estimator", "--samples", "--beta", "--binarize", "--seed",
     "--checkpoint-every", "--resize", "--resume", "--nope"]
)  # fmt: skip


def _run_cli(argv):
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(argv)  # returns the exit code, also for a flag refused while parsing
    return code, err.getvalue().strip()


@SETTINGS
@given(
    flags=st.lists(st.tuples(FLAGS, FLAG_VALUES), max_size=4), data=st.sampled_from(["bad", "missing", "dir"])
)
def test_cli_train_refuses_bad_flags_and_data(workspace, tmp_path_factory, flags, data):
    root, _ = workspace
    before = _digest(root)
    bad = tmp_path_factory.mktemp("bad") / "bad.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    source = {"bad": bad, "missing": root / "nope.npz", "dir": root / "run"}[data]
    argv = ["train", "--quiet", "-o", str(root / "out"), "--data", str(source)]
    for flag, value in flags:
        argv += [flag, value]
    code, err = _run_cli(argv)
    assert code == 2
    assert err.startswith("vaekit: error:") and "\n" not in err and "Traceback" not in err
    assert _digest(root) == before


COMMANDS = st.sampled_from(["sample", "encode", "decode", "reconstruct", "eval", "frobnicate"])


@SETTINGS
@given(
    command=COMMANDS,
    run=st.sampled_from(["run", "missing", "good.npy", ""]),
    n=st.sampled_from(["0", "-2", "x", "1.5", ""]),
    data=st.sampled_from(["good.npy", "missing.npy", "run"]),
)
def test_cli_commands_refuse_bad_runs_and_values(workspace, tmp_path_factory, command, run, n, data):
    root, _ = workspace
    before = _digest(root)
    out = tmp_path_factory.mktemp("o") / "out.png"
    argv = [command, str(root / run) if run else ""]
    argv += {"decode": ["--latents", str(root / data)], "sample": ["-n", n]}.get(
        command, ["--data", str(root / data), "-n", n]
    )
    argv += ["-o", str(out)] if command != "eval" else ["--k", "2"]
    code, err = _run_cli(argv)
    assert code == 2, err
    assert err.startswith("vaekit: error:") and "\n" not in err
    assert _digest(root) == before and not out.exists()


@pytest.mark.parametrize("value", ["-2", "0", "1.5"])
@pytest.mark.parametrize(
    "args",
    [
        ["reconstruct", "RUN", "--data", "mnist", "-n", "V", "-o", "OUT"],
        ["sample", "RUN", "-n", "V", "-o", "OUT"],
        ["eval", "RUN", "-n", "V"],
        ["eval", "RUN", "--k", "V"],
        ["score", "RUN", "--data", "mnist", "-n", "V", "-o", "OUT"],
        ["score", "RUN", "--data", "mnist", "--k", "V", "-o", "OUT"],
        ["plot", "scatter", "RUN", "-n", "V", "-o", "OUT"],
    ],
)
def test_every_count_flag_refuses_what_is_not_a_positive_integer(workspace, tmp_path, args, value):
    """Found by hypothesis: `reconstruct -n -2` drew all but the last two rows and exited 0."""
    root, _ = workspace
    before = _digest(root)
    out = tmp_path / "out.png"
    code, err = _run_cli([{"RUN": str(root / "run"), "V": value, "OUT": str(out)}.get(a, a) for a in args])
    assert code == 2, err
    assert err.startswith("vaekit: error:") and "positive integer" in err and "\n" not in err
    assert _digest(root) == before and not out.exists()
