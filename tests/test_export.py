"""vaekit export: the ONNX and TorchScript files give vaekit's own encoder and decoder outputs."""

import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from vaekit import VAE, VaekitError
from vaekit.cli import main
from vaekit.export import SIGNATURE, export

#: ONNX tests need the extra vaekit[onnx] (the test extra installs it, so CI runs them)
needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="needs pip install 'vaekit[onnx]'",
)

#: small models covering both architectures, every likelihood and both kinds of condition
MODELS = {
    "mlp-bernoulli": {},
    "conv-labels-logistic": {"arch": "conv", "conditional": True, "likelihood": "discretized_logistic"},
    "mlp-gaussian": {"likelihood": "gaussian"},
    "vectors-gaussian_fixed": {
        "conditional": True,
        "likelihood": "gaussian_fixed",
        "likelihood_options": {"sigma": 0.5},
    },
}
TOL = 1e-5


@pytest.fixture(scope="module")
def model(mnist):
    """model(name) -> a VAE of MODELS fitted for 1 epoch on 300 MNIST digits (each fitted once)."""
    fitted = {}

    def get(name):
        if name not in fitted:
            kw = MODELS[name]
            y = mnist.y_train[:300].numpy()
            y = np.eye(10, dtype=np.float32)[y][:, :3] * 2 - 1 if name.startswith("vectors") else y
            vae = VAE(latent_dim=3, hidden=(32,), epochs=1, batch_size=50, verbose=False, **kw)
            fitted[name] = vae.fit(
                mnist.x_train[:300].numpy(), y if kw.get("conditional") else None, image_shape=(1, 28, 28)
            )
        return fitted[name]

    return get


def _inputs(vae, mnist, n):
    """n test rows, their condition as the signature describes it (labels one-hot), n latents."""
    x = mnist.x_test[:n].numpy()
    labels = mnist.y_test[:n].numpy()
    if not vae.conditional:
        return x, None, None, np.random.default_rng(n).standard_normal((n, vae.latent_dim), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[labels]
    given = labels if vae.n_classes_ else y[:, :3] * 2 - 1  # what vaekit takes: labels or vectors
    y = y if vae.n_classes_ else given
    z = np.random.default_rng(n).standard_normal((n, vae.latent_dim), dtype=np.float32)
    return x, y, given, z


def _vaekit_outputs(vae, x, given, z):
    """mu, logvar of q(z|x) and the decoder means, from vaekit itself."""
    cond = None if given is None else vae._cond(given, len(x))
    with torch.no_grad():
        logvar = vae.module_.eval().encode(torch.from_numpy(x), cond)[1].numpy()
    return vae.transform(x, given), logvar, vae.inverse_transform(z, given)


def _check_onnx(folder, vae, mnist):
    """Both ONNX files run with onnxruntime give vaekit's outputs for 1 and 7 rows (dynamic batch)."""
    import onnxruntime as ort

    spec = json.loads((folder / SIGNATURE).read_text())
    sessions = {
        part: ort.InferenceSession(str(folder / spec[part]["file"])) for part in ("encoder", "decoder")
    }
    for part, session in sessions.items():  # the names and shapes the JSON promises are the graph's
        for promised, actual in (
            (spec[part]["inputs"], session.get_inputs()),
            (spec[part]["outputs"], session.get_outputs()),
        ):
            assert [(t["name"], t["shape"]) for t in promised] == [(a.name, a.shape) for a in actual]
    for n in (1, 7):
        x, y, given, z = _inputs(vae, mnist, n)
        cond = {} if y is None else {"y": y}
        mu, logvar = sessions["encoder"].run(None, {"x": x, **cond})
        (mean,) = sessions["decoder"].run(None, {"z": z, **cond})
        want = _vaekit_outputs(vae, x, given, z)
        for got, expected in zip((mu, logvar, mean), want, strict=True):
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    return spec


@needs_onnx
@pytest.mark.parametrize("name", ["conv-labels-logistic", "mlp-gaussian"])
def test_onnx_files_run_with_onnxruntime_give_vaekits_outputs(name, model, mnist, tmp_path):
    vae = model(name)
    written = export(vae, tmp_path, "onnx")
    assert sorted(p.name for p in written) == sorted(["encoder.onnx", "decoder.onnx", SIGNATURE])
    spec = _check_onnx(tmp_path, vae, mnist)
    assert spec["likelihood"] == vae.likelihood and spec["image_shape"] == [1, 28, 28]
    if vae.conditional:
        assert spec["encoder"]["inputs"][1] == spec["decoder"]["inputs"][1]
        assert spec["decoder"]["inputs"][1]["encoding"] == "one-hot"
        assert spec["decoder"]["inputs"][1]["n_classes"] == 10


@needs_onnx
def test_cli_export_decoder_equals_vaekit_decode(model, mnist, tmp_path, capsys):
    """The reviewer's check: the exported ONNX decoder against ``vaekit decode`` on the same latents."""
    import onnxruntime as ort

    vae = model("mlp-bernoulli")
    vae.save(tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--format", "onnx", "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    assert printed.out.split() == [
        str(tmp_path / "out" / f) for f in ("encoder.onnx", "decoder.onnx", SIGNATURE)
    ]
    assert printed.err == ""  # the exporter's own logging stays quiet
    _check_onnx(tmp_path / "out", vae, mnist)
    z = np.random.default_rng(0).standard_normal((50, 3), dtype=np.float32) * 2
    np.save(tmp_path / "z.npy", z)
    assert (
        main(
            [
                "decode",
                str(tmp_path / "run"),
                "--latents",
                str(tmp_path / "z.npy"),
                "-o",
                str(tmp_path / "x.npy"),
            ]
        )
        == 0
    )
    (onnx_x,) = ort.InferenceSession(str(tmp_path / "out" / "decoder.onnx")).run(None, {"z": z})
    np.testing.assert_allclose(onnx_x, np.load(tmp_path / "x.npy"), rtol=0, atol=TOL)
    # probabilities, not logits: the sigmoid of the decoder's raw output
    with torch.no_grad():
        logits = vae.module_.decode(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(onnx_x, 1 / (1 + np.exp(-logits)), rtol=0, atol=TOL)


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np, torch
    for folder in map(Path, sys.argv[1:]):
        spec = json.loads((folder / "signature.json").read_text())
        feeds = dict(np.load(folder / "inputs.npz"))
        out = {}
        for part in ("encoder", "decoder"):
            net = torch.jit.load(folder / spec[part]["file"])
            args = [torch.from_numpy(feeds[t["name"]]) for t in spec[part]["inputs"]]
            result = net(*args)
            result = result if isinstance(result, tuple) else (result,)
            for t, value in zip(spec[part]["outputs"], result):
                out[t["name"]] = value.detach().numpy()
        np.savez(folder / "outputs.npz", **out)
    print("vaekit imported:", any(m.split(".")[0] == "vaekit" for m in sys.modules))
    """
)


def test_torchscript_files_give_the_same_outputs_in_a_fresh_process(model, mnist, tmp_path):
    names = ["conv-labels-logistic", "vectors-gaussian_fixed", "mlp-bernoulli"]
    expected = {}
    for name in names:
        vae, folder = model(name), tmp_path / name
        export(vae, folder, "torchscript")
        x, y, given, z = _inputs(vae, mnist, 5)
        np.savez(folder / "inputs.npz", x=x, z=z, **({} if y is None else {"y": y}))
        expected[name] = _vaekit_outputs(vae, x, given, z)
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "vaekit imported: False" in done.stdout  # the files stand alone
    for name in names:
        got = np.load(tmp_path / name / "outputs.npz")
        for key, want in zip(("mu", "logvar", "x_mean"), expected[name], strict=True):
            np.testing.assert_allclose(got[key], want, rtol=0, atol=TOL)
    spec = json.loads((tmp_path / "vectors-gaussian_fixed" / SIGNATURE).read_text())
    assert spec["format"] == "torchscript" and spec["encoder"]["file"] == "encoder.pt"
    assert spec["decoder"]["inputs"][1]["encoding"] == "vectors"
    assert spec["decoder"]["inputs"][1]["shape"] == ["n", 3]


def test_missing_onnx_packages_are_one_line_naming_the_extra(model, tmp_path, monkeypatch, capsys):
    vae = model("mlp-bernoulli")
    vae.save(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now raises ImportError
    with pytest.raises(VaekitError, match=r"^onnxscript: not installed; .*pip install 'vaekit\[onnx\]'$"):
        export(vae, tmp_path / "out", "onnx")
    assert not (tmp_path / "out" / "encoder.onnx").exists()
    assert main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaekit: error: onnxscript: not installed") and err.count("\n") == 1


def test_bad_export_requests(model, tmp_path, capsys):
    with pytest.raises(VaekitError, match="unknown export format 'tflite'"):
        export(model("mlp-bernoulli"), tmp_path, "tflite")
    with pytest.raises(VaekitError, match="not fitted"):
        export(VAE(), tmp_path, "torchscript")
    model("mlp-bernoulli").save(tmp_path / "run")
    (tmp_path / "file").write_text("not a folder")
    assert (
        main(["export", str(tmp_path / "run"), "--format", "torchscript", "-o", str(tmp_path / "file")]) == 2
    )
    assert capsys.readouterr().err.startswith(
        f"vaekit: error: {tmp_path / 'file'}: cannot create the export folder"
    )
    assert main(["export", str(tmp_path / "nothing"), "-o", str(tmp_path / "out")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


BLOCKED = textwrap.dedent(
    """
    import sys
    from importlib.machinery import PathFinder

    class Uninstalled(PathFinder):  # finds every module but the optional packages, as if not installed
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.split(".")[0] in {"onnx", "onnxscript", "onnxruntime", "tensorboard"}:
                return None
            return super().find_spec(name, path, target)

    sys.meta_path[sys.meta_path.index(PathFinder)] = Uninstalled
    import vaekit, vaekit.export, vaekit.tensorboard
    from vaekit.cli import main
    run, out = sys.argv[1:]
    assert main(["sample", run, "-n", "4", "-o", out + "/s.png"]) == 0
    assert main(["export", run, "--format", "torchscript", "-o", out]) == 0
    sys.exit(main(["export", run, "--format", "onnx", "-o", out]))
    """
)


def test_vaekit_works_without_the_optional_packages(model, tmp_path):
    model("mlp-bernoulli").save(tmp_path / "run")
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(tmp_path / "run"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert (tmp_path / "s.png").exists() and (tmp_path / "decoder.pt").exists()
    assert done.stderr.strip().splitlines()[-1].startswith("vaekit: error: onnx: not installed")
