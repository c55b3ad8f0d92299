"""The fast training loop computes what a plain one does; torchrun data parallelism matches one process."""

import itertools
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from vaekit import VaekitError
from vaekit.cli import main
from vaekit.config import ModelConfig, TrainConfig
from vaekit.networks import VAEModule
from vaekit.objectives import elbo
from vaekit.parallel import shard
from vaekit.train import MAX_BAD_STEPS, Trainer


def _module(seed=0, hidden=(32,), latent_dim=4):
    torch.manual_seed(seed)
    return VAEModule(784, ModelConfig(latent_dim=latent_dim, hidden=hidden))


@pytest.mark.parametrize("m, world", [(128, 2), (63, 2), (10, 3), (1, 2), (7, 7)])
def test_shards_partition_the_batch_in_rank_order(m, world):
    rows = [shard(m, r, world) for r in range(world)]
    sizes = [s.stop - s.start for s in rows]
    assert rows[0].start == 0 and rows[-1].stop == m
    assert all(a.stop == b.start for a, b in itertools.pairwise(rows))
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("kw", [{}, {"optimizer": "adagrad", "lr": 0.02, "samples": 3, "beta": 2.0}])
def test_trainer_steps_equal_a_plain_pytorch_loop(mnist, kw):
    """Fused optimiser, pre-drawn eps: the parameters of torch's for-loop optimiser with elbo's own draws."""
    cfg = TrainConfig(seed=5, **kw)
    fast = Trainer(_module(), cfg)
    plain = _module()
    cls = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}[cfg.optimizer]
    opt = cls(plain.parameters(), lr=cfg.lr, foreach=False)
    gen = torch.Generator().manual_seed(cfg.seed)
    for i in range(5):
        x = mnist.x_train[i * 50 : (i + 1) * 50]
        fast.train_step(x)
        loss = elbo(plain, x, None, cfg.samples, cfg.estimator, gen).loss(cfg.beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Adam divides by sqrt(v): where a gradient is ~0 (border pixels) float rounding (the
    # hand-derived backward sums in another order) moves a weight by up to ~lr/100 in 5 steps
    for a, b in zip(fast.module.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-5)


def test_a_non_finite_step_leaves_the_weights_and_repeated_ones_stop_training(mnist):
    trainer = Trainer(_module(), TrainConfig(batch_size=10))
    x = mnist.x_train[:10]
    trainer.train_step(x)
    before = [p.detach().clone() for p in trainer.module.parameters()]
    adam_step = float(trainer.optimizer.state[trainer.flat.theta]["step"])
    trainer.train_step(torch.full_like(x, float("nan")))
    for a, b in zip(trainer.module.parameters(), before, strict=True):
        assert torch.equal(a, b)
    assert float(trainer.optimizer.state[trainer.flat.theta]["step"]) == adam_step
    trainer.train_step(x)
    assert not torch.equal(next(trainer.module.parameters()), before[0])
    with pytest.raises(VaekitError, match=f"not finite for {MAX_BAD_STEPS} steps"):
        trainer.train_epoch(torch.full((10 * MAX_BAD_STEPS, 784), float("nan")))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(VaekitError, match="no CUDA GPU"):
        Trainer(_module(), TrainConfig(device="cuda"))
    assert main(["train", "--device", "cuda", "-o", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith("vaekit: error: device 'cuda'")
    assert not (tmp_path / "run").exists()  # refused before touching disk


def _train(tmp_path, name, data, launcher):
    out = tmp_path / name
    flags = ["--data", str(data), "--epochs", "2", "--hidden", "32", "--latent-dim", "4"]
    flags += ["--batch-size", "63", "--binarize", "dynamic", "--quiet", "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, *launcher, "-m", "vaekit", "train", *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, rows, proc.stdout


def test_torchrun_two_processes_match_one_process(tmp_path, mnist_subset):
    """2 gloo processes, global batch 63 (shards of 32 and 31), dynamic binarization: the same run.

    Every process draws the global batch's permutation, binarization and eps and keeps
    its shard, and the losses are weighted so that DDP's mean gradient is the global
    batch mean: the only difference left is float summation order, so weights agree
    to 1e-5 and metrics to 1e-3 nats after 32 steps (two full epochs). Over hundreds of
    steps a rounding-level difference eventually tips a decision and the weights part
    (README: 0.09 after a full MNIST epoch, the test ELBOs 0.013 nats apart).
    """
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    one, rows1, _ = _train(tmp_path, "one", mnist_subset, [])
    two, rows2, stdout = _train(tmp_path, "two", mnist_subset, torchrun)
    assert len(rows2) == 2 and stdout.count("run folder:") == 1  # only rank 0 logs and writes
    for a, b in zip(rows1, rows2, strict=True):
        assert a["step"] == b["step"] == 16 * a["epoch"]
        for key in ("train_elbo", "train_kl", "test_elbo"):
            assert abs(a[key] - b[key]) < 1e-3, (key, a[key], b[key])
    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=0, atol=1e-5)
    assert rows1[-1]["train_elbo"] > rows1[0]["train_elbo"]  # it learned


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_objective_trains_the_same_weights(mnist):
    """--compile (inductor on CPU, about 30 s to compile) gives the eager run's weights to float rounding."""
    x = mnist.x_train[:200]
    runs = []
    for compile in (False, True):
        trainer = Trainer(_module(), TrainConfig(batch_size=50, epochs=2, compile=compile))
        history = trainer.fit(x)
        runs.append((history[-1]["train_elbo"], [p.detach() for p in trainer.module.parameters()]))
    assert runs[0][0] == pytest.approx(runs[1][0], abs=1e-4)
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
