"""Exact resume: `vaekit train` killed with SIGKILL (or stopped with Ctrl-C) and resumed ends
bit for bit where an uninterrupted run with the same seed ends."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from vaekit import VAE, storage
from vaekit.cli import main
from vaekit.runs import CHECKPOINT
from vaekit.train import Trainer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SETTINGS = ["--epochs", "3", "--hidden", "32", "--latent-dim", "2", "--batch-size", "10"]
SETTINGS += ["--binarize", "dynamic", "--checkpoint-every", "4", "--seed", "7", "--quiet"]
REFERENCE_SECONDS: list[float] = []  # how long the uninterrupted run took here


@pytest.fixture(scope="module")
def data(tmp_path_factory, mnist):
    """400 train and 100 test digits: 40 steps per epoch."""
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, x_train=mnist.x_train[:400].numpy(), x_test=mnist.x_test[:100].numpy())
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    """The uninterrupted run (in this process)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    start = time.perf_counter()
    assert main(["train", "--data", str(data), *SETTINGS, "-o", str(out)]) == 0
    REFERENCE_SECONDS.append(time.perf_counter() - start)
    return out


def _vaekit(*argv):
    return subprocess.Popen(
        [sys.executable, "-m", "vaekit", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _version(path):
    """Identifies one written file: each atomic write makes a new inode (whose number may be reused)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _wait_for_new_checkpoint(proc, path, before, timeout=60.0):
    """Until the process has replaced the checkpoint version ``before`` (or has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _version(path) not in (None, before):
            return
        time.sleep(0.005)


def _assert_same_run(run, reference):
    final = storage.load_tensors(run / "model.safetensors")
    expected = storage.load_tensors(reference / "model.safetensors")
    assert final.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(final[name], value), name  # bit for bit
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # no lost or repeated rows
    for row, ref in zip(rows, ref_rows, strict=True):
        row.pop("seconds"), ref.pop("seconds")
        assert row == ref  # train and test ELBO, recon, KL, step: exactly equal


def test_sigkill_at_random_moments_then_resume_is_bit_exact(tmp_path, data, reference):
    """Three SIGKILLs, each at a random moment after the process has written a new checkpoint
    (inside a step, an evaluation or a checkpoint write); a resume after each."""
    run = tmp_path / "run"
    ckpt = run / CHECKPOINT
    rng = random.Random(0)
    kills = 0
    proc = _vaekit("train", "--data", str(data), *SETTINGS, "-o", str(run))
    while kills < 3:
        _wait_for_new_checkpoint(proc, ckpt, _version(ckpt))
        time.sleep(rng.uniform(0.0, REFERENCE_SECONDS[0] / 4))  # a fraction of a whole run
        if proc.poll() is not None:  # finished first (a fast machine): start over, kill again
            proc.communicate()
            shutil.rmtree(run)
            kills = 0
            proc = _vaekit("train", "--data", str(data), *SETTINGS, "-o", str(run))
            continue
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        proc = _vaekit("train", "--resume", str(run), "--quiet")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills == 3
    assert not list(run.glob(".*.tmp"))  # half-written files of killed runs are cleared
    _assert_same_run(run, reference)


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path, data, reference):
    run = tmp_path / "run"
    proc = _vaekit("train", "--data", str(data), *SETTINGS, "-o", str(run))
    _wait_for_new_checkpoint(proc, run / CHECKPOINT, None)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"vaekit train --resume {run}" in err and str(run / CHECKPOINT) in err
    assert "Traceback" not in err
    state = json.loads(storage.load_tensors_and_metadata(run / CHECKPOINT)[1]["vaekit"])["state"]
    assert state["step"] < 120  # stopped early, and saved where it stopped
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _assert_same_run(run, reference)


def test_resume_refuses_conflicting_flags_and_keeps_the_run(tmp_path, data, reference, capsys):
    before = {p.name: p.read_bytes() for p in reference.iterdir()}
    for flags in (["--lr", "0.01"], ["--hidden", "64"], ["--data", "mnist"], ["-o", str(tmp_path)]):
        assert main(["train", "--resume", str(reference), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("vaekit: error:") and "\n" not in err
    # repeating the run's own settings is allowed; a finished run resumes to the same result
    assert main(["train", "--resume", str(reference), "--lr", "0.001", "--checkpoint-every", "5"]) == 0
    after = {p.name: p.read_bytes() for p in reference.iterdir()}
    assert after["model.safetensors"] == before["model.safetensors"]
    assert after["metrics.jsonl"] == before["metrics.jsonl"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names open files via /proc")
@pytest.mark.parametrize("target, good_writes", [(CHECKPOINT, 4), ("metrics.jsonl", 1)])
def test_full_disk_stops_the_run_and_keeps_a_resumable_checkpoint(
    tmp_path, data, reference, capsys, monkeypatch, target, good_writes
):
    """ENOSPC while writing a checkpoint or the metrics: a one-line error, the last good
    checkpoint intact, and resuming once there is space again ends exactly as the reference."""
    run = tmp_path / "run"
    real_fsync, writes = os.fsync, []

    def fsync(fd):
        if f".{target}." in os.readlink(f"/proc/self/fd/{fd}"):
            writes.append(fd)
            if len(writes) > good_writes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["train", "--data", str(data), *SETTINGS, "-o", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vaekit: error: {run / target}: cannot be written (No space left on device)")
    assert f"vaekit train --resume {run}" in err and "\n" not in err
    assert not list(run.glob(".*.tmp")) and not (run / "model.safetensors").exists()
    state = json.loads(storage.load_tensors_and_metadata(run / CHECKPOINT)[1]["vaekit"])["state"]
    assert state["step"] == (16 if target == CHECKPOINT else 76)  # the last checkpoint written
    monkeypatch.setattr(os, "fsync", real_fsync)  # space again
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _assert_same_run(run, reference)


@pytest.mark.parametrize("extra", [{}, {"conditional": True, "objective": "iwae", "samples": 3}])
def test_python_api_resume_after_a_stop_request_is_bit_exact(tmp_path, mnist, monkeypatch, extra):
    """VAE.fit(checkpoint_dir=...) asked to stop mid-epoch (as Ctrl-C does), then fit(resume=True);
    also for a conditional model (the labels follow the saved data order) trained on the IWAE bound."""
    x, x_test = mnist.x_train[:300], mnist.x_test[:50]
    labels = {"y": mnist.y_train[:300], "y_test": mnist.y_test[:50]} if extra else {}
    y, y_test = labels.get("y"), labels.get("y_test")
    params = dict(latent_dim=2, hidden=(16,), epochs=3, batch_size=40, checkpoint_every=5, seed=3, **extra)
    reference = VAE(**params).fit(x, y, X_test=x_test, y_test=y_test)
    train_step = Trainer.train_step

    def stop_at_step_11(trainer, *args):
        terms = train_step(trainer, *args)
        trainer.stop_requested = trainer.step == 11  # 8 batches per epoch: the 3rd of epoch 2
        return terms

    monkeypatch.setattr(Trainer, "train_step", stop_at_step_11)
    vae = VAE(**params)
    with pytest.raises(KeyboardInterrupt):
        vae.fit(x, y, X_test=x_test, y_test=y_test, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    state = json.loads(storage.load_tensors_and_metadata(tmp_path / CHECKPOINT)[1]["vaekit"])["state"]
    assert (state["epoch"], state["batch"], state["step"]) == (1, 3, 11)
    again = VAE(**params).fit(x, y, X_test=x_test, y_test=y_test, checkpoint_dir=tmp_path, resume=True)
    assert again.history_[0] == vae.history_[0]  # the first epoch came from the checkpoint
    for (name, value), (_, ref) in zip(
        again.module_.state_dict().items(), reference.module_.state_dict().items(), strict=True
    ):
        assert torch.equal(value, ref), name
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in again.history_]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in reference.history_]
