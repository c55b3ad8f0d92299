"""Divergence handling and safe loading: non-finite steps are skipped and never saved; corrupt,
mismatched, pickled or foreign files get one clear error and never run code."""

import errno
import json
import os
import pickle

import numpy as np
import pytest
import torch

from vaekit import VAE, VaekitError, fused, runs, storage
from vaekit.cli import main
from vaekit.config import ModelConfig, TrainConfig
from vaekit.networks import LOGVAR_RANGE, VAEModule
from vaekit.runs import CHECKPOINT
from vaekit.train import MAX_BAD_STEPS, Trainer


def _trainer(**kw):
    torch.manual_seed(0)
    module = VAEModule(6, ModelConfig(latent_dim=2, hidden=(8,)))
    return Trainer(module, TrainConfig(batch_size=4, **kw))


def _snapshot(trainer):
    weights = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    moments = {
        (i, k): v.clone()
        for i, s in trainer.optimizer.state.items()
        for k, v in s.items()
        if torch.is_tensor(v)
    }
    return weights, moments


def _poison(trainer, monkeypatch, bad: float) -> None:
    """Make every following step's gradient of the decoder's output weights non-finite, on both the
    autograd path (a hook) and the hand-derived one of vaekit.fused (a wrapper)."""
    trainer.module.decoder.out.weight.register_hook(lambda g: g.index_fill(0, torch.tensor([0]), bad))
    elbo_step = fused.elbo_step

    def poisoned(module, *args, **kw):
        out = elbo_step(module, *args, **kw)
        module.decoder.out.weight.grad[0] = bad
        return out

    monkeypatch.setattr(fused, "elbo_step", poisoned)


@pytest.mark.parametrize("estimator", ["analytic", "mc"])  # the fused path and autograd
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_gradient_skips_the_step_without_touching_weights_or_adam(bad, estimator, monkeypatch):
    trainer = _trainer(estimator=estimator)
    assert trainer.fused == (estimator == "analytic")
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(1))
    trainer.train_step(x)  # one good step, so Adam has moments to protect
    weights, moments = _snapshot(trainer)
    with monkeypatch.context() as m:
        _poison(trainer, m, bad)
        trainer.train_step(x)
        trainer.module.decoder.out.weight._backward_hooks.clear()
    after_weights, after_moments = _snapshot(trainer)
    assert weights.keys() == after_weights.keys() and moments.keys() == after_moments.keys()
    assert all(torch.equal(weights[k], after_weights[k]) for k in weights)
    assert all(torch.equal(moments[k], after_moments[k]) for k in moments)
    trainer.train_step(x)  # and training carries on from the last finite state
    assert not torch.equal(weights["decoder.out.weight"], trainer.module.state_dict()["decoder.out.weight"])
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())


@pytest.mark.parametrize("estimator", ["analytic", "mc"])
def test_repeated_non_finite_steps_stop_with_the_step_and_a_lower_learning_rate(estimator, monkeypatch):
    trainer = _trainer(lr=0.5, estimator=estimator)
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        trainer.train_step(x)
    _poison(trainer, monkeypatch, float("nan"))
    for _ in range(MAX_BAD_STEPS - 1):
        trainer.train_step(x)  # skipped, not yet fatal
    with pytest.raises(
        VaekitError, match=r"not finite for 20 steps in a row \(by step 23\).*lower learning rate than 0.5"
    ):
        trainer.train_step(x)


def test_a_non_finite_loss_is_skipped_too():
    trainer = _trainer()
    x = torch.full((4, 6), float("nan"))  # bypasses input validation: the loss itself is NaN
    weights, _ = _snapshot(trainer)
    trainer.train_step(x)
    assert all(torch.equal(v, trainer.module.state_dict()[k]) for k, v in weights.items())


def test_non_finite_tensors_never_reach_a_file(tmp_path):
    path = tmp_path / "w.safetensors"
    storage.save_tensors(path, {"a": torch.ones(3)})
    good = path.read_bytes()
    with pytest.raises(VaekitError, match=r"w\.safetensors: not written: a holds NaN"):
        storage.save_tensors(path, {"a": torch.tensor([1.0, float("nan"), 2.0])})
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["w.safetensors"]


def test_logvar_is_clamped_to_the_documented_range():
    module = VAEModule(3, ModelConfig(latent_dim=2, hidden=(4,)))
    with torch.no_grad():
        module.encoder.logvar.bias.fill_(1e6)
        assert module.encode(torch.zeros(1, 3))[1].max().item() == LOGVAR_RANGE[1]
        module.encoder.logvar.bias.fill_(-1e6)
        assert module.encode(torch.zeros(1, 3))[1].min().item() == LOGVAR_RANGE[0]


# ---------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def saved(tmp_path_factory, mnist):
    folder = tmp_path_factory.mktemp("saved") / "m"
    VAE(latent_dim=2, hidden=(16,), epochs=1).fit(mnist.x_train[:200]).save(folder)
    return folder


def _copy(saved, dest):
    dest.mkdir()
    for p in saved.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


class _Payload:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaekit: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_a_pickle_renamed_to_safetensors_is_refused_and_never_run(tmp_path, saved, capsys):
    marker = tmp_path / "code-ran"
    payload = pickle.dumps({"encoder.mu.weight": _Payload(marker)})
    pickle.loads(payload)  # the payload is live: unpickling it does run code
    assert marker.is_dir()
    marker.rmdir()
    run = _copy(saved, tmp_path / "run")
    (run / "model.safetensors").write_bytes(payload)
    assert "model.safetensors: not a valid safetensors file" in _one_line_error(capsys, ["sample", str(run)])
    # torch.save's zip format holds a pickle too
    torch.save({"w": _Payload(marker)}, run / "model.safetensors")
    assert "not a valid safetensors file" in _one_line_error(capsys, ["sample", str(run)])
    with pytest.raises(VaekitError):
        VAE.load(run)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 7, 8, 100, -1])
def test_truncated_weights_are_refused(tmp_path, saved, capsys, cut):
    run = _copy(saved, tmp_path / "run")
    raw = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(raw[:cut] if cut >= 0 else raw[:-1])
    assert "model.safetensors" in _one_line_error(capsys, ["sample", str(run)])


def test_config_and_tensors_that_disagree_are_refused(tmp_path, saved, capsys):
    run = _copy(saved, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["params"]["hidden"] = [32]
    (run / "config.json").write_text(json.dumps(config))
    assert "do not match the model in config.json" in _one_line_error(capsys, ["sample", str(run)])
    config["params"]["hidden"] = "many"
    (run / "config.json").write_text(json.dumps(config))
    assert "config.json" in _one_line_error(capsys, ["sample", str(run)])
    (run / "config.json").write_text('{"params": ')  # truncated JSON
    assert "config.json: not a readable JSON file" in _one_line_error(capsys, ["sample", str(run)])


# ---------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, mnist):
    """A run folder with a checkpoint and a config.json, as a killed `vaekit train` leaves it."""
    data = tmp_path_factory.mktemp("d") / "d.npz"
    np.savez(data, x_train=mnist.x_train[:100].numpy(), x_test=mnist.x_test[:20].numpy())
    run = tmp_path_factory.mktemp("r") / "run"
    argv = ["train", "--data", str(data), "--epochs", "1", "--hidden", "8", "--latent-dim", "2", "--quiet"]
    assert main([*argv, "-o", str(run)]) == 0
    (run / "model.safetensors").unlink()
    return run


def _rewrite_checkpoint(run, change):
    tensors, metadata = storage.load_tensors_and_metadata(run / CHECKPOINT)
    meta = json.loads(metadata["vaekit"])
    change(tensors, meta)
    storage.save_tensors(run / CHECKPOINT, tensors, {"vaekit": json.dumps(meta)})


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t, m: m.update(format=99), "checkpoint format 99"),
        (
            lambda t, m: m["record"]["params"].update(latent_dim=5),
            "latent_dim=5 but this run has latent_dim=2",
        ),
        (lambda t, m: t.pop("generator"), "not a usable vaekit checkpoint"),
        (
            lambda t, m: t.update({"module.decoder.out.bias": torch.zeros(3)}),
            "not a usable vaekit checkpoint",
        ),
        (lambda t, m: m["state"].pop("step"), "not a usable vaekit checkpoint"),
        (lambda t, m: m.pop("record"), "no model record"),
    ],
)
def test_foreign_or_damaged_checkpoints_are_refused(tmp_path, interrupted, capsys, change, message):
    run = _copy(interrupted, tmp_path / "run")
    _rewrite_checkpoint(run, change)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert message in _one_line_error(capsys, ["train", "--resume", str(run)])
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_truncated_or_pickled_checkpoint_is_refused(tmp_path, interrupted, capsys):
    run = _copy(interrupted, tmp_path / "run")
    raw = (run / CHECKPOINT).read_bytes()
    (run / CHECKPOINT).write_bytes(raw[: len(raw) // 2])
    assert "checkpoint.safetensors: not a valid safetensors file" in _one_line_error(
        capsys, ["train", "--resume", str(run)]
    )
    (run / CHECKPOINT).write_bytes(pickle.dumps(_Payload(tmp_path / "ran")))
    assert "not a valid safetensors file" in _one_line_error(capsys, ["train", "--resume", str(run)])
    assert not (tmp_path / "ran").exists()
    (run / CHECKPOINT).write_bytes((run / "config.json").read_bytes())
    assert "not a valid safetensors file" in _one_line_error(capsys, ["train", "--resume", str(run)])
    storage.save_tensors(run / CHECKPOINT, {"x": torch.zeros(1)})  # valid safetensors, not ours
    assert "not a vaekit checkpoint" in _one_line_error(capsys, ["train", "--resume", str(run)])


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    assert "no such run folder" in _one_line_error(capsys, ["train", "--resume", str(tmp_path / "none")])
    assert "config.json: no such file" in _one_line_error(capsys, ["train", "--resume", str(tmp_path)])
    (tmp_path / "config.json").write_text('{"params": {"latent_dim": 2, "warp": 9}, "source": {}}')
    assert "config.json" in _one_line_error(capsys, ["train", "--resume", str(tmp_path)])


def test_an_unwritable_run_folder_is_reported_before_any_work(tmp_path, capsys, monkeypatch):
    """Permission bits do not stop root, so the check writes a probe file; here the write is refused."""

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "open", refuse)
    err = _one_line_error(capsys, ["train", "--quiet", "-o", str(tmp_path / "run")])
    assert f"{tmp_path / 'run'}: cannot write here (Read-only file system)" in err
    assert "train /" not in capsys.readouterr().out  # the data were not even loaded
    (tmp_path / "file").write_text("x")
    under_a_file = str(tmp_path / "file" / "r")
    assert "cannot create the run folder" in _one_line_error(capsys, ["train", "-o", under_a_file])


def test_resume_on_other_data_is_refused(tmp_path, interrupted, capsys):
    """A checkpoint taken inside an epoch holds that epoch's order, which fixes the number of rows."""
    run = _copy(interrupted, tmp_path / "run")

    def inside_epoch_1_of_7_rows(tensors, meta):
        tensors["epoch.perm"] = torch.arange(7)
        meta["state"].update(epoch=0, batch=1)

    _rewrite_checkpoint(run, inside_epoch_1_of_7_rows)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    err = _one_line_error(capsys, ["train", "--resume", str(run), "--quiet"])
    assert "100 rows but the checkpoint's epoch has 7" in err and "--resume" not in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_on_changed_data_is_refused(tmp_path, interrupted, capsys):
    run = _copy(interrupted, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    data = dict(np.load(config["source"]["data"]))
    data["x_train"][0, 0] = 1 - data["x_train"][0, 0]  # one pixel
    np.savez(tmp_path / "changed.npz", **data)
    config["source"]["data"] = str(tmp_path / "changed.npz")
    (run / "config.json").write_text(json.dumps(config))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    err = _one_line_error(capsys, ["train", "--resume", str(run), "--quiet"])
    assert "changed.npz: the training data changed since the run" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_fit_creates_its_checkpoint_folder_or_says_why_it_cannot(tmp_path):
    x = np.random.default_rng(0).random((40, 6)).astype(np.float32)
    run = tmp_path / "new" / "run"
    VAE(latent_dim=2, hidden=(8,), epochs=1, batch_size=8).fit(x, checkpoint_dir=run)
    assert (run / CHECKPOINT).is_file() and (run / runs.CONFIG).is_file()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(VaekitError, match=r"file/run: cannot create the folder"):
        VAE(latent_dim=2, hidden=(8,), epochs=1).fit(x, checkpoint_dir=tmp_path / "file" / "run")
    assert (tmp_path / "file").read_text() == "not a folder"
