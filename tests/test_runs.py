"""The run as one object: one module spells the run folder, registries declared once, a finished run
extended bit for bit, a user's own architecture saved and loaded, and an evaluation that resumes."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import vaekit
from vaekit import VAE, VaekitError, runs, storage
from vaekit.cli import _parser, main
from vaekit.config import REGISTRIES, ModelConfig, TrainConfig
from vaekit.evaluate import importance_log_likelihoods
from vaekit.networks import ARCHITECTURES, Decoder, GaussianEncoder, NetworkSpec

SRC = Path(vaekit.__file__).parent
SMALL = dict(latent_dim=2, hidden=(16,), batch_size=50, seed=3, checkpoint_every=0)


def _sources() -> dict[Path, str]:
    return {path: path.read_text() for path in sorted(SRC.glob("*.py"))}


def test_no_module_but_runs_spells_a_run_folder_file_name():
    names = {getattr(runs, n) for n in dir(runs) if n.isupper() and isinstance(getattr(runs, n), str)}
    names |= set(runs.PICTURES) | {runs.plot_file("scatter"), runs.latent_run(3)}
    assert {"config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl"} <= names
    offenders = []
    for path, text in _sources().items():
        if path.name == "runs.py":
            continue
        strings = [n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant)]
        for value in (v for v in strings if isinstance(v, str)):
            # a file name anywhere in a string or docstring; a folder name (no suffix) as a path
            hits = [n for n in names if (n in value if "." in n else value == n or f"{n}/" in value)]
            offenders += [f"{path.name}: {name}" for name in hits]
    assert offenders == []


def test_nothing_outside_the_estimator_calls_a_private_method_of_a_vae():
    calls = []
    for path, text in _sources().items():
        if path.name == "estimator.py":
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and re.fullmatch(r"_[a-z]\w*", node.attr):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in {"vae", "probe", "model"}:
                    calls.append(f"{path.name}:{node.lineno} {owner.id}.{node.attr}")
    assert calls == []


def test_cli_choices_come_from_the_registries_and_config_types(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "made_up", lambda spec: None)
    train = _parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a for a in train._actions}
    for name, registry in REGISTRIES.items():
        assert list(flags[name].choices) == sorted(registry), name
    assert "made_up" in flags["arch"].choices
    assert list(flags["binarize"].choices) == ["none", "static", "dynamic"]  # the Literal's
    with pytest.raises(VaekitError, match="objective must be one of"):
        TrainConfig(objective="elbo2")


def test_likelihood_options_travel_as_one_mapping(mnist):
    x = mnist.x_train[:100]
    vae = VAE(likelihood="gaussian_fixed", likelihood_options={"sigma": 0.25}, epochs=1, **SMALL).fit(x)
    assert vae.module_.likelihood.sigma == 0.25
    with pytest.raises(VaekitError, match=r"\['sigma'\] are not options of Bernoulli"):
        ModelConfig(likelihood="bernoulli", likelihood_options={"sigma": 2.0})
    with pytest.raises(VaekitError, match="sigma must be a positive finite number"):
        ModelConfig(likelihood="gaussian_fixed", likelihood_options={"sigma": -1})


def _data(mnist, n=300):
    return mnist.x_train[:n], mnist.x_test[:100]


def test_a_finished_run_extended_equals_the_longer_run_bit_for_bit(tmp_path, mnist):
    x, x_test = _data(mnist)
    VAE(epochs=2, **SMALL).fit(x, X_test=x_test, checkpoint_dir=tmp_path / "short")
    extended = VAE(epochs=4, **SMALL).fit(x, X_test=x_test, checkpoint_dir=tmp_path / "short", resume=True)
    longer = VAE(epochs=4, **SMALL).fit(x, X_test=x_test, checkpoint_dir=tmp_path / "long")
    for name, value in longer.module_.state_dict().items():
        assert torch.equal(extended.module_.state_dict()[name], value), name
    assert [r["epoch"] for r in extended.history_] == [1, 2, 3, 4]
    assert [r["test_elbo"] for r in extended.history_] == [r["test_elbo"] for r in longer.history_]
    assert json.loads((tmp_path / "short" / runs.CONFIG).read_text())["params"]["epochs"] == 4
    # shortening is refused, and so is lengthening a schedule laid out over the run's length
    with pytest.raises(VaekitError, match="has done 4 epochs already"):
        VAE(epochs=3, **SMALL).fit(x, checkpoint_dir=tmp_path / "short", resume=True)
    VAE(epochs=2, lr_schedule="burda", **SMALL).fit(x, checkpoint_dir=tmp_path / "burda")
    with pytest.raises(VaekitError, match="schedule 'burda' is laid out over its 2 epochs"):
        VAE(epochs=3, lr_schedule="burda", **SMALL).fit(x, checkpoint_dir=tmp_path / "burda", resume=True)


def test_train_resume_with_more_epochs_extends_a_finished_run(tmp_path, mnist_subset, capsys):
    flags = ["--data", str(mnist_subset), "--hidden", "16", "--latent-dim", "2", "--quiet"]
    assert main(["train", *flags, "--epochs", "1", "-o", str(tmp_path / "a")]) == 0
    assert main(["train", "--resume", str(tmp_path / "a"), "--epochs", "2", "--quiet"]) == 0
    assert main(["train", *flags, "--epochs", "2", "-o", str(tmp_path / "b")]) == 0
    a, b = (storage.load_tensors(tmp_path / r / runs.WEIGHTS) for r in "ab")
    assert all(torch.equal(a[k], b[k]) for k in b)
    rows = [json.loads(line) for line in (tmp_path / "a" / runs.METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    flags += ["--lr-schedule", "burda"]
    assert main(["train", *flags, "--epochs", "1", "-o", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "c"), "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "laid out over its 1 epochs" in err and err.count("\n") == 0


@vaekit.register_architecture("tests_wide")
def _wide(spec: NetworkSpec, width: int = 8) -> tuple[nn.Module, nn.Module]:
    """A user's architecture: one hidden layer of ``width`` units each way."""
    j, c = spec.latent_dim, spec.cond_dim
    encoder = GaussianEncoder(spec.data_dim + c, (width,), j, spec.activation)
    return encoder, Decoder(j + c, (width,), spec.out_dim, spec.activation)


def test_a_registered_architecture_round_trips_and_is_named_when_missing(tmp_path, mnist, monkeypatch):
    x = mnist.x_train[:200]
    vae = VAE(arch="tests_wide", arch_options={"width": 12}, epochs=1, **SMALL).fit(x)
    assert vae.module_.encoder.trunk[0].out_features == 12
    vae.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / runs.CONFIG).read_text())
    assert config["params"]["arch"] == "tests_wide" and config["params"]["arch_options"] == {"width": 12}
    loaded = VAE.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.transform(x[:5]), vae.transform(x[:5]))
    with pytest.raises(VaekitError, match="do not fit architecture 'tests_wide'"):
        VAE(arch="tests_wide", arch_options={"depth": 3}).fit(x)
    monkeypatch.delitem(ARCHITECTURES, "tests_wide")
    with pytest.raises(VaekitError, match="architecture 'tests_wide' is not registered") as e:
        VAE.load(tmp_path / "m")
    assert "\n" not in str(e.value) and "register_architecture" in str(e.value)


def test_sample_can_draw_pixels_from_the_decoder(tmp_path, mnist, capsys):
    vae = VAE(epochs=1, binarize="dynamic", **SMALL).fit(mnist.x_train[:200])
    means, draws = vae.sample(32, seed=1), vae.sample(32, seed=1, mean=False)
    assert set(np.unique(draws)) <= {0.0, 1.0} and not set(np.unique(means)) <= {0.0, 1.0}
    np.testing.assert_array_equal(draws, vae.sample(32, seed=1, mean=False))  # seeded
    # the draws follow the means: pixel frequencies over many draws approach the probabilities
    many = np.stack([vae.inverse_transform(np.zeros((1, 2)), mean=False, seed=s)[0] for s in range(400)])
    p = vae.inverse_transform(np.zeros((1, 2)))[0]
    assert np.abs(many.mean(0) - p).max() < 0.1
    vae.save(tmp_path / "run")
    assert main(["sample", str(tmp_path / "run"), "--draw", "-n", "8", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


def test_a_killed_evaluation_keeps_its_finished_examples(tmp_path, mnist, monkeypatch):
    vae = VAE(epochs=1, **SMALL).fit(mnist.x_train[:200])
    vae.save(tmp_path)
    x = mnist.x_test[:40]
    whole = runs.Run(tmp_path / "copy")  # the reference: the same evaluation, uninterrupted, elsewhere
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / runs.WEIGHTS).write_bytes((tmp_path / runs.WEIGHTS).read_bytes())
    expected = whole.importance_estimates(vae.module_, x, None, (1000, 100), seed=5)  # a pass per example
    assert torch.equal(expected, importance_log_likelihoods(vae.module_, x, None, (1000, 100), seed=5))

    class Killed(Exception):
        pass

    passes, kill_at = [], [25]  # a kill in the 25th pass: after 24 examples, every 2nd of them saved
    original = vaekit.evaluate.log_weights

    def counting(*args, **kwargs):
        passes.append(len(args[1]))
        if len(passes) in kill_at:
            raise Killed
        return original(*args, **kwargs)

    monkeypatch.setattr(vaekit.evaluate, "log_weights", counting)
    run = runs.Run(tmp_path)
    with pytest.raises(Killed):
        run.importance_estimates(vae.module_, x, None, (1000, 100), seed=5)
    saved = storage.load_tensors(tmp_path / runs.EVAL_PROGRESS)["values"].shape[1]
    assert 20 <= saved <= 24
    passes.clear()
    kill_at.clear()
    resumed = run.importance_estimates(vae.module_, x, None, (1000, 100), seed=5)
    assert torch.equal(resumed, expected)  # bit for bit
    assert sum(passes) == len(x) - saved  # only the unfinished examples were computed again
    # another k (or other weights, or data) does not reuse that progress
    passes.clear()
    run.importance_estimates(vae.module_, x, None, (900, 90), seed=5)
    assert sum(passes) == len(x)


def test_successive_samples_are_new_draws_and_a_seed_repeats_them(tmp_path, mnist):
    vae = VAE(epochs=1, **SMALL).fit(mnist.x_train[:200])
    vae.save(tmp_path)
    first, second = vae.sample(4), vae.sample(4)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(vae.sample(4, seed=9), vae.sample(4, seed=9))
    again = VAE.load(tmp_path)  # a loaded model draws the same sequence
    np.testing.assert_array_equal(again.sample(4), first)
    np.testing.assert_array_equal(again.sample(4), second)


def _small_run(run, data, *flags):
    """A 1-epoch `vaekit train` run on ``data`` with a 16-unit hidden layer; returns its folder."""
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--epochs",
                "1",
                "--hidden",
                "16",
                *flags,
                "--quiet",
                "-o",
                str(run),
            ]
        )
        == 0
    )
    return run


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".png", ".txt"])
def test_encode_and_decode_write_what_their_file_names_say(tmp_path, mnist_subset, suffix, capsys):
    run = _small_run(tmp_path / "run", mnist_subset, "--latent-dim", "2")
    z_out, x_out = tmp_path / "new" / f"z{suffix}", tmp_path / "new" / f"x{suffix}"  # a new folder too
    code = main(["encode", str(run), "--data", str(mnist_subset), "-o", str(z_out)])
    if suffix in (".txt", ".png"):  # latents are no picture
        assert code == 2 and "unknown output type" in capsys.readouterr().err and not z_out.exists()
        z_out = tmp_path / "z.npy"
        assert main(["encode", str(run), "--data", str(mnist_subset), "-o", str(z_out)]) == 0
    z = VAE.load(run).transform(np.load(mnist_subset)["x_test"])
    if suffix == ".csv":
        lines = z_out.read_text().splitlines()
        assert lines[0] == "z1,z2" and np.allclose(np.loadtxt(z_out, delimiter=",", skiprows=1), z, atol=1e-6)
    else:
        np.testing.assert_array_equal(np.load(z_out), z)
    np.save(tmp_path / "latents.npy", z[:10])
    code = main(["decode", str(run), "--latents", str(tmp_path / "latents.npy"), "-o", str(x_out)])
    x = VAE.load(run).inverse_transform(z[:10])
    if suffix == ".txt":
        assert code == 2 and "['.npy', '.csv', '.png']" in capsys.readouterr().err
    elif suffix == ".png":
        from PIL import Image

        with Image.open(x_out) as im:
            assert im.format == "PNG" and im.width > 8 * 28  # a grid of 8 decoded images a row
    elif suffix == ".csv":
        assert np.allclose(np.loadtxt(x_out, delimiter=",", skiprows=1), x, atol=1e-6)
    else:
        np.testing.assert_array_equal(np.load(x_out), x)


def test_eval_of_other_data_keeps_the_runs_own_numbers(tmp_path, mnist_subset, capsys):
    run = _small_run(tmp_path / "run", mnist_subset)
    assert main(["eval", str(run), "--k", "5", "-n", "20", "--quiet"]) == 0
    own = json.loads((run / runs.EVAL).read_text())
    assert main(["eval", str(run), "--data", "mnist", "--k", "5", "-n", "20", "--quiet"]) == 0
    assert json.loads((run / runs.EVAL).read_text()) == own  # untouched
    other = json.loads((run / runs.eval_file("mnist")).read_text())
    assert other["data"] == "mnist" and other["n"] == 20
    capsys.readouterr()
    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"vaekit {vaekit.__version__}"
