"""Training that stops well: the validation split, early stopping with the best epoch's weights,
the cosine and plateau learning-rate schedules, and bit-exact resume with all of them."""

import json
import math

import numpy as np
import pytest
import torch

from vaekit import VAE, storage
from vaekit.cli import main
from vaekit.config import VALIDATION_SEED, TrainConfig
from vaekit.errors import VaekitError
from vaekit.optim import scheduled_lr
from vaekit.runs import CHECKPOINT, CONFIG, METRICS, WEIGHTS
from vaekit.stopping import Monitor, hold_out
from vaekit.train import Trainer

#: 60 digits, 15 of them for validation, and a model big enough to overfit the other 45 within
#: ~15 epochs: the validation ELBO peaks (epoch 15 here) and then falls
OVERFIT = dict(latent_dim=10, hidden=(200,), epochs=60, batch_size=10, lr=1e-2, validation=0.25, seed=0)


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _validation_rows(x, fraction, seed):
    return hold_out(x, None, fraction, torch.Generator().manual_seed(seed + VALIDATION_SEED), False, "X")[2]


def test_hold_out_is_seeded_disjoint_in_order_and_binarized_once():
    x = torch.arange(40.0).unsqueeze(1) / 40  # (40, 1): each row names itself
    y = torch.arange(40).unsqueeze(1)
    x_train, y_train, x_val, y_val = hold_out(x, y, 0.25, torch.Generator().manual_seed(5), False, "X")
    assert len(x_val) == 10 and len(x_train) == 30
    rows = torch.cat([x_train, x_val]).squeeze(1) * 40
    assert sorted(rows.round().int().tolist()) == list(range(40))  # each row in exactly one part
    assert torch.equal(x_train.squeeze(1) * 40, (y_train.squeeze(1)).float())  # y follows x
    assert torch.equal(x_val.squeeze(1) * 40, (y_val.squeeze(1)).float())
    assert (x_train.diff(dim=0) > 0).all() and (x_val.diff(dim=0) > 0).all()  # order kept
    again = hold_out(x, y, 0.25, torch.Generator().manual_seed(5), False, "X")[2]
    other = hold_out(x, y, 0.25, torch.Generator().manual_seed(6), False, "X")[2]
    assert torch.equal(again, x_val) and not torch.equal(other, x_val)
    drawn = hold_out(x, None, 0.25, torch.Generator().manual_seed(5), True, "X")[2]
    assert set(drawn.unique().tolist()) <= {0.0, 1.0}  # fixed 0/1 targets, like a test split's
    assert len(hold_out(x, None, 0.001, torch.Generator(), False, "X")[2]) == 1  # at least one row
    with pytest.raises(VaekitError, match=r"X: validation=0\.5 of 1 rows leaves none to train on"):
        hold_out(x[:1], None, 0.5, torch.Generator(), False, "X")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"patience": 3}, "patience needs a validation split"),
        ({"validation": 1.0}, "validation must be a fraction"),
        ({"validation": -0.1}, "validation must be a fraction"),
        ({"lr_schedule": "plateau", "plateau_factor": 1.0}, "plateau_factor in \\(0, 1\\)"),
        ({"lr_schedule": "plateau", "plateau_patience": 0}, "plateau_patience must be at least 1"),
        ({"validation": 0.1, "patience": -1}, "patience must be non-negative"),
    ],
)
def test_bad_stopping_settings_are_refused(params, message):
    with pytest.raises(VaekitError, match=message):
        TrainConfig(**params)


def test_early_stopping_stops_and_keeps_the_best_epochs_weights(mnist):
    x = mnist.x_train[:60]
    snapshots = {}
    vae = VAE(**OVERFIT, patience=3)
    vae.fit(x, on_epoch_end=lambda row: snapshots.update({row["epoch"]: _weights(vae.module_)}))
    rows, best = vae.history_, vae.best_epoch_
    assert vae.stopped_early_ and len(rows) < OVERFIT["epochs"]
    assert best == len(rows) - 3  # three epochs without a better validation ELBO, then stop
    val = [r["val_elbo"] for r in rows]
    assert max(val) == val[best - 1] and all(v < val[best - 1] for v in val[best:])
    assert [r["best_epoch"] for r in rows][best - 1 :] == [best] * 4
    assert rows[-1]["train_elbo"] > rows[best - 1]["train_elbo"]  # it overfits: train still improves
    for name, value in snapshots[best].items():
        assert torch.equal(vae.module_.state_dict()[name], value), name
    # the model's ELBO on the held-out rows is the one recorded for the best epoch
    assert vae.score(_validation_rows(x, 0.25, 0)) == val[best - 1]
    assert vae.source_["validation"]["rows"] == 15
    # without patience the run goes on and keeps its last weights, recording the best epoch
    plain = VAE(**{**OVERFIT, "epochs": best + 3}).fit(x)
    assert not plain.stopped_early_ and plain.best_epoch_ == best
    assert [r["val_elbo"] for r in plain.history_] == val[: best + 3]  # validation changes no step
    last = plain.module_.state_dict()
    assert any(not torch.equal(last[k], v) for k, v in snapshots[best].items())  # the last epoch's


def test_cosine_schedule_matches_the_closed_form_step_by_step():
    config = TrainConfig(lr=0.5, lr_schedule="cosine", epochs=2, batch_size=10)
    # lr (1 + cos(pi t / T)) / 2 for T = 8 steps, worked out by hand
    expected = [0.5, 0.48096988, 0.42677670, 0.34567086, 0.25, 0.15432914, 0.07322330, 0.01903012]
    assert [scheduled_lr(config, t, 8) for t in range(8)] == pytest.approx(expected, abs=1e-8)
    assert scheduled_lr(config, 8, 8) == 0.0 and config.length_dependent
    vae = VAE(latent_dim=2, hidden=(8,), lr=0.5, lr_schedule="cosine", epochs=2, batch_size=10)
    vae._build(4, None, (0, None))
    trainer, seen = vae.trainer_, []
    step = trainer.optimizer.step
    trainer.optimizer.step = lambda: (seen.append(trainer.optimizer.param_groups[0]["lr"]), step())[1]
    trainer.fit(torch.rand(40, 4).round())  # 2 epochs x 4 batches = 8 steps
    assert seen == [scheduled_lr(config, t, 8) for t in range(8)]


def test_plateau_cuts_the_rate_after_its_patience():
    config = TrainConfig(lr_schedule="plateau", plateau_factor=0.5, plateau_patience=2)
    monitor, module = Monitor(config), torch.nn.Linear(1, 1)
    elbos = [-10, -9, -9.5, -9.2, -9.3, -9.4, -8, -8.5, -8.6]
    scales = []
    for epoch, elbo in enumerate(elbos, start=1):
        monitor.epoch_end({"epoch": epoch, "train_elbo": elbo}, module)  # no validation: train ELBO
        scales.append(monitor.lr_scale)
    # best at 2; no better at 3, 4: cut after 4; 5, 6: cut after 6; best at 7; 8, 9: cut after 9
    assert scales == [1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]
    assert monitor.best_epoch == 7 and monitor.last_cut == 9 and not monitor.stopped
    # a trainer steps with the cut rate from the epoch after the cut
    vae = VAE(latent_dim=2, hidden=(8,), lr=0.1, lr_schedule="plateau", plateau_patience=1, epochs=6)
    vae.fit(np.random.default_rng(0).random((30, 4)).round())
    rows, scale, best = vae.history_, 1.0, -math.inf
    for row in rows:
        assert row["lr"] == 0.1 * scale
        improved, best = row["train_elbo"] > best, max(best, row["train_elbo"])
        scale *= 1 if improved else 0.5
    assert rows[-1]["lr"] < 0.1  # the train ELBO of these epochs stalled at least once


def test_cli_prints_validation_elbo_and_saves_the_best_epochs_weights(tmp_path, mnist, capsys):
    x = mnist.x_train[:60]
    data = tmp_path / "small.npz"
    np.savez(data, x_train=x.numpy(), x_test=mnist.x_test[:20].numpy())
    snapshots = {}
    vae = VAE(**OVERFIT, patience=3)
    vae.fit(x, on_epoch_end=lambda row: snapshots.update({row["epoch"]: _weights(vae.module_)}))
    flags = ["--latent-dim", "10", "--hidden", "200", "--epochs", "60", "--batch-size", "10"]
    flags += ["--lr", "0.01", "--validation", "0.25", "--patience", "3", "--seed", "0", "--quiet"]
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), *flags, "-o", str(run)]) == 0
    out = capsys.readouterr().out
    best = vae.best_epoch_
    assert f"validation ELBO {vae.history_[0]['val_elbo']:.2f} (best: epoch 1)" in out
    assert f"early stopping: no better validation ELBO for 3 epochs; the model keeps epoch {best}'s" in out
    rows = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
    assert [r["val_elbo"] for r in rows] == [r["val_elbo"] for r in vae.history_]
    assert rows[-1]["best_epoch"] == best and len(rows) == best + 3
    assert f"test ELBO {rows[best - 1]['test_elbo']:.2f} nats" in out  # the kept epoch's test ELBO
    saved = storage.load_tensors(run / WEIGHTS)
    assert saved.keys() == snapshots[best].keys()
    assert all(torch.equal(saved[k], v) for k, v in snapshots[best].items())
    assert json.loads((run / CONFIG).read_text())["source"]["validation"]["rows"] == 15


#: the stopping run of the resume tests (5 steps an epoch): its best epoch is 15, the plateau schedule
#: halves the rate after epoch 17 and early stopping ends the run after epoch 18
RESUMED = dict(OVERFIT, patience=3, lr_schedule="plateau", plateau_patience=2, checkpoint_every=3)


def _stop_at(monkeypatch, step):
    train_step = Trainer.train_step

    def stop(trainer, *args):
        terms = train_step(trainer, *args)
        trainer.stop_requested = trainer.step == step
        return terms

    monkeypatch.setattr(Trainer, "train_step", stop)


def _assert_same(vae, reference):
    for name, value in reference.module_.state_dict().items():
        assert torch.equal(vae.module_.state_dict()[name], value), name  # bit for bit
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(vae.history_) == strip(reference.history_)
    assert (vae.best_epoch_, vae.stopped_early_) == (reference.best_epoch_, reference.stopped_early_)


@pytest.fixture(scope="module")
def stopping_reference(mnist):
    return VAE(**RESUMED).fit(mnist.x_train[:60])


# at the end of epoch 4; in epoch 16 (the best weights are epoch 15's); in epoch 18 (after the cut)
@pytest.mark.parametrize("step", [20, 77, 87])
def test_resume_with_validation_patience_and_plateau_is_bit_exact(
    tmp_path, mnist, monkeypatch, stopping_reference, step
):
    reference, x = stopping_reference, mnist.x_train[:60]
    lrs = [r["lr"] for r in reference.history_]
    assert (reference.best_epoch_, len(lrs), lrs[-1], lrs[-2]) == (15, 18, 0.005, 0.01)
    _stop_at(monkeypatch, step)
    with pytest.raises(KeyboardInterrupt):
        VAE(**RESUMED).fit(x, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    state = json.loads(storage.load_tensors_and_metadata(tmp_path / CHECKPOINT)[1]["vaekit"])["state"]
    assert state["step"] == step and state["monitor"]["best_epoch"] > 0
    again = VAE(**RESUMED).fit(x, checkpoint_dir=tmp_path, resume=True)
    _assert_same(again, reference)
    # a finished, early-stopped run resumes to the same result (and trains no further)
    _assert_same(VAE(**RESUMED).fit(x, checkpoint_dir=tmp_path, resume=True), reference)


def test_a_checkpoint_written_before_validation_and_patience_existed_still_resumes(
    tmp_path, mnist, monkeypatch
):
    params = dict(latent_dim=2, hidden=(16,), epochs=3, batch_size=40, checkpoint_every=5, seed=3)
    x = mnist.x_train[:300]
    reference = VAE(**params).fit(x)
    _stop_at(monkeypatch, 11)
    with pytest.raises(KeyboardInterrupt):
        VAE(**params).fit(x, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    path = tmp_path / CHECKPOINT
    tensors, metadata = storage.load_tensors_and_metadata(path)
    meta = json.loads(metadata["vaekit"])
    del meta["state"]["monitor"]  # as vaekit wrote it before this module
    for name in ("validation", "patience", "plateau_factor", "plateau_patience"):
        del meta["record"]["params"][name]
    storage.save_tensors(path, tensors, {"vaekit": json.dumps(meta)})
    again = VAE(**params).fit(x, checkpoint_dir=tmp_path, resume=True)
    for name, value in reference.module_.state_dict().items():
        assert torch.equal(again.module_.state_dict()[name], value), name
