"""The papers' protocols: Burda et al.'s learning-rate schedule, budgets, and both reproductions end to end
on a small subset (the full protocols take days; their measured results are in benchmarks/RESULTS.md)."""

import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import VAE, VaekitError, reproduce, storage
from vaekit.cli import main
from vaekit.config import TrainConfig
from vaekit.data import load_data
from vaekit.optim import burda_stage, scheduled_lr
from vaekit.reproduce import (
    BURDA_FAST,
    BURDA_PARAMS,
    BURDA_TABLE,
    KINGMA_LATENTS,
    Budget,
    Cell,
    Settings,
    _epochs_within,
    kingma2013,
    parse_budget,
)
from vaekit.runs import Run

#: Burda et al. (2015): stage i ends after 1 + 3 + ... + 3^i epochs, at learning rate 1e-3 * 10^(-i/7)
STAGE_ENDS = [1, 4, 13, 40, 121, 364, 1093, 3280]
STAGE_LRS = [1e-3, 7.1969e-4, 5.1795e-4, 3.7276e-4, 2.6827e-4, 1.9307e-4, 1.3895e-4, 1e-4]


def test_burda_schedule_at_full_length_matches_the_paper_table():
    config = TrainConfig(lr=1e-3, lr_schedule="burda", epochs=3280)
    starts = [0, *STAGE_ENDS[:-1]]
    for i, (start, end) in enumerate(zip(starts, STAGE_ENDS, strict=True)):
        # one step per epoch: the first and last epoch of each stage
        assert burda_stage(start, 3280) == burda_stage(end - 1, 3280) == i
        assert scheduled_lr(config, end - 1, 3280) == pytest.approx(STAGE_LRS[i], rel=1e-4)
    assert [burda_stage(e, 3280) for e in STAGE_ENDS[:-1]] == list(range(1, 8))  # the next stage starts
    # a constant schedule, or a step outside a known run (partial_fit), keeps the base rate
    assert scheduled_lr(TrainConfig(lr=0.3), 5000, 3280) == 0.3
    assert scheduled_lr(config, 2000, None) == 1e-3


def test_burda_schedule_scaled_to_a_budget_keeps_the_proportions():
    total = 30 * 2000  # 30 epochs of 2000 steps
    counts = np.bincount([burda_stage(s, total) for s in range(total)], minlength=8)
    expected = total * np.array([3**i for i in range(8)]) / 3280
    assert counts.sum() == total and np.abs(counts - expected).max() < 1


def test_trainer_follows_the_schedule_step_by_step_and_uses_adam_eps():
    config = TrainConfig(lr_schedule="burda", adam_eps=1e-4, epochs=2, batch_size=10)
    vae = VAE(latent_dim=2, hidden=(8,), lr_schedule="burda", adam_eps=1e-4, epochs=2, batch_size=10)
    vae._build(4, None, (0, None))
    trainer = vae.trainer_
    assert trainer.optimizer.param_groups[0]["eps"] == 1e-4
    seen, step = [], trainer.optimizer.step
    trainer.optimizer.step = lambda: (seen.append(trainer.optimizer.param_groups[0]["lr"]), step())[1]
    trainer.fit(torch.rand(40, 4).round())  # 2 epochs x 4 batches = 8 steps
    assert seen == [scheduled_lr(config, s, 8) for s in range(8)]
    assert seen[0] == 1e-3 and seen[-1] == pytest.approx(1e-4) and len(set(seen)) > 2
    with pytest.raises(VaekitError, match="adam_eps"):
        TrainConfig(adam_eps=0.0)


@pytest.mark.parametrize(
    "text, budget",
    [
        ("30", Budget(epochs=30)),
        ("20m", Budget(minutes=20.0)),
        ("1.5h", Budget(minutes=90.0)),
        (None, Budget()),
    ],
)
def test_parse_budget(text, budget):
    assert parse_budget(text) == budget


@pytest.mark.parametrize("text", ["0", "2.5", "abc", "m", "-3", "10 s"])
def test_parse_budget_rejects(text):
    with pytest.raises(VaekitError, match="--budget"):
        parse_budget(text)


def test_minutes_become_whole_epochs_after_the_fixed_cost_up_to_the_protocol():
    assert _epochs_within(1.0, per_epoch=10.0, fixed=20.0, what="x", most=3280) == 4
    # an hour on small data: never more epochs than the paper's protocol (was 175,857 of 3280)
    assert _epochs_within(60.0, per_epoch=0.02, fixed=0.0, what="x", most=3280) == 3280
    with pytest.raises(VaekitError, match="too short"):
        _epochs_within(0.5, per_epoch=10.0, fixed=25.0, what="one epoch and the evaluation", most=3280)


def test_minute_budgets_are_timed_on_a_throwaway_model(mnist):
    from vaekit.reproduce import BURDA_PARAMS, _seconds_per_epoch, _seconds_to_evaluate

    x = mnist.x_train[:60]  # fewer rows than the timed steps need: they cycle
    per_epoch = _seconds_per_epoch(BURDA_PARAMS, x, mnist.x_test[:30])
    assert 0 < per_epoch < 60 and 0 < _seconds_to_evaluate(BURDA_PARAMS, mnist.x_test[:30], k=20) < 60


def _reproduce(capsys, *argv):
    assert main(["reproduce", *argv, "--quiet"]) == 0
    return capsys.readouterr().out


def test_burda2015_end_to_end_is_deterministic_and_agrees_with_vaekit_eval(tmp_path, mnist_subset, capsys):
    args = ["burda2015", "--budget", "1", "--data", str(mnist_subset), "--eval-k", "50"]
    out = _reproduce(capsys, *args, "-o", str(tmp_path / "a"))
    assert "SHORTENED: 1 of the paper's 3280 epochs" in out and "86.76" in out
    run = tmp_path / "a"
    record = json.loads((run / "reproduce.json").read_text())
    result = json.loads((run / "eval.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["epochs"] == 1 and record["shortened"] and record["params"]["adam_eps"] == 1e-4
    assert sum(record["stage_epochs"]) == pytest.approx(1, abs=1e-3)
    assert [r["epoch"] for r in rows] == [1] and rows[-1]["lr"] == pytest.approx(1e-4)
    assert result["n"] == 200 and result["k"] == 50 and result["binarization_seed"] == 2
    assert record["test_nll"] == pytest.approx(-result["log_px"]) and f"{-result['log_px']:.2f}" in out
    assert result["elbo"] < result["log_px"] < 0
    config = json.loads((run / "config.json").read_text())["params"]
    assert config["hidden"] == [200, 200] and config["latent_dim"] == 50 and config["batch_size"] == 20
    # the same budget and seed give the same number
    _reproduce(capsys, *args, "-o", str(tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "eval.json").read_text())["log_px"] == result["log_px"]
    # vaekit eval on the saved model, which records its data, measures the same thing
    assert main(["eval", str(run), "--k", "50", "--quiet"]) == 0
    assert json.loads((run / "eval.json").read_text())["log_px"] == pytest.approx(result["log_px"], abs=1e-4)
    assert VAE.load(run).lr_schedule == "burda"


def test_kingma2013_draws_figure_2_from_its_runs(tmp_path, mnist_subset):
    """Two of the five latent sizes (KINGMA_LATENTS), two epochs each, on 1000 digits."""
    run = tmp_path / "k"
    lines = []
    settings = Settings(Budget(epochs=2), data=str(mnist_subset))
    target = Run.create(run)
    curves = kingma2013(
        target, load_data(mnist_subset), settings, progress=False, echo=lines.append, latents=(3, 20)
    )
    assert KINGMA_LATENTS == (3, 5, 10, 20, 200) and any("SHORTENED" in line for line in lines)
    assert json.loads((run / "figure2.json").read_text()) == curves and list(curves) == [
        "N_z = 3",
        "N_z = 20",
    ]
    for j in (3, 20):
        rows = [json.loads(line) for line in (run / f"latent-{j}" / "metrics.jsonl").read_text().splitlines()]
        c = curves[f"N_z = {j}"]
        assert c["samples"] == [1000, 2000]
        assert c["train"] == [r["train_bound"] for r in rows] and c["test"] == [r["test_elbo"] for r in rows]
        assert c["test"][1] > c["test"][0] and c["train"][1] > c["train"][0]  # it learns
        config = json.loads((run / f"latent-{j}" / "config.json").read_text())["params"]
        assert (
            config["latent_dim"] == j and config["optimizer"] == "adagrad" and config["weight_decay"] == 1e-3
        )
    with Image.open(run / "figure2.png") as im:
        assert im.width > 1.5 * im.height  # two panels side by side
        assert im.text["Title"].endswith("784-500-J tanh MLP VAE, Adagrad, 2 epochs per latent size")


def test_reproduce_bad_budget_is_one_line_and_creates_nothing(tmp_path, capsys):
    assert main(["reproduce", "burda2015", "--budget", "soon", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaekit: error: --budget") and "\n" not in err
    assert not (tmp_path / "r").exists()


def _vaekit(*argv):
    return subprocess.Popen(
        [sys.executable, "-m", "vaekit", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run_killed(argv, run, kill_when, rng):
    """Run ``vaekit ARGV -o RUN``, SIGKILL it at each moment of ``kill_when`` (a predicate on the run
    folder, then a random delay), rerun the same command with --resume after each kill, and return the
    number of kills that hit a running command."""
    kills = 0
    proc = _vaekit(*argv, "-o", str(run))
    for ready in kill_when:
        deadline = time.monotonic() + 120
        while proc.poll() is None and not ready(run) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        proc = _vaekit(*argv, "-o", str(run), "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return kills


def _status(run):
    try:
        return json.loads((run / "reproduce.json").read_text())["status"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return ""


def _same_files(a, b, names):
    for name in names:
        if name.endswith(".safetensors"):
            x, y = storage.load_tensors(a / name), storage.load_tensors(b / name)
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
        else:
            assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_kingma2013_killed_at_random_moments_resumes_bit_for_bit(tmp_path, mnist_subset):
    argv = ["reproduce", "kingma2013", "--budget", "2", "--data", str(mnist_subset), "--quiet"]
    assert main([*argv, "-o", str(tmp_path / "ref")]) == 0
    moments = [
        lambda run: (run / "latent-3" / "checkpoint.safetensors").exists(),  # in the first latent size
        lambda run: (run / "latent-5" / "config.json").exists(),  # in the second
        lambda run: "latent size 10 done" in _status(run),  # a later one
    ]
    kills = _run_killed(argv, tmp_path / "run", moments, random.Random(0))
    assert kills >= 2
    for latent in KINGMA_LATENTS:
        _same_files(
            tmp_path / "run" / f"latent-{latent}",
            tmp_path / "ref" / f"latent-{latent}",
            ["model.safetensors"],
        )
    _same_files(tmp_path / "run", tmp_path / "ref", ["figure2.json"])
    assert _status(tmp_path / "run") == "done"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_burda2015_killed_in_training_and_in_evaluation_resumes_bit_for_bit(tmp_path, mnist_subset):
    argv = ["reproduce", "burda2015", "--budget", "1", "--eval-n", "200", "--eval-k", "1500"]
    argv += ["--data", str(mnist_subset), "--quiet"]
    assert main([*argv, "-o", str(tmp_path / "ref")]) == 0
    moments = [
        lambda run: (run / "config.json").exists(),  # training
        lambda run: (run / "eval-progress.safetensors").exists(),  # evaluating, some examples done
    ]
    kills = _run_killed(argv, tmp_path / "run", moments, random.Random(1))
    assert kills >= 1
    _same_files(tmp_path / "run", tmp_path / "ref", ["model.safetensors", "eval.json"])
    record = json.loads((tmp_path / "run" / "reproduce.json").read_text())
    assert record["status"] == "done" and record["eval_n"] == 200 and record["k"] == 1500


def test_reproduce_resume_refuses_other_settings_and_takes_the_lock(tmp_path, mnist_subset, capsys):
    argv = ["reproduce", "burda2015", "--budget", "1", "--eval-n", "20", "--eval-k", "10"]
    argv += ["--data", str(mnist_subset), "--quiet", "-o", str(tmp_path / "r")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv[:-2], "--eval-k", "20", "-o", str(tmp_path / "r"), "--resume"]) == 2
    assert "resume with the same command" in capsys.readouterr().err
    with storage.exclusive(tmp_path / "r"):  # another command holds the run folder
        assert main([*argv, "--resume"]) == 2
    assert "another vaekit command is writing this run folder" in capsys.readouterr().err
    assert main(["reproduce", "burda2015", "--resume", "--quiet"]) == 2
    assert "--resume needs the run folder" in capsys.readouterr().err


def test_a_shortened_evaluation_is_marked_and_a_minutes_budget_covers_it(
    tmp_path, mnist_subset, capsys, monkeypatch
):
    argv = ["reproduce", "burda2015", "--budget", "1", "--eval-n", "20", "--eval-k", "10", "--quiet"]
    assert main([*argv, "--data", str(mnist_subset), "-o", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "SHORTENED" in out and "evaluation with k = 10 on 20 test digits" in out
    result = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert result["n"] == 20 and result["k"] == 10
    # a minutes budget times the evaluation too: 0.2 min cannot hold k = 5000 on 200 digits and an epoch,
    # so it evaluates fewer digits (at most half the budget) rather than running far past it; the
    # evaluation's timing is fixed at 60 s for the 200 digits (a fast idle machine measured less than 6 s)
    monkeypatch.setattr(reproduce, "_seconds_to_evaluate", lambda params, x_test, k: 60.0)
    assert (
        main(
            [
                "reproduce",
                "burda2015",
                "--budget",
                "0.2m",
                "--data",
                str(mnist_subset),
                "--quiet",
                "-o",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "m" / "reproduce.json").read_text())
    assert record["eval_n"] < 200 and record["shortened"] and record["epochs"] >= 1


def test_burda2015_fast_trains_the_fast_recipe_and_says_so(tmp_path, mnist_subset, capsys):
    argv = ["burda2015", "--fast", "--budget", "2", "--eval-n", "20", "--eval-k", "10"]
    out = _reproduce(capsys, *argv, "--data", str(mnist_subset), "-o", str(tmp_path / "f"))
    assert "the fast recipe, not the paper's" in out
    assert f"2 of the fast recipe's {BURDA_FAST['epochs']} epochs" in out
    record = json.loads((tmp_path / "f" / "reproduce.json").read_text())
    assert record["protocol"] == "fast" and record["stage_epochs"] is None and record["epochs"] == 2
    assert record["settings"]["fast"] and record["shortened"]
    params = json.loads((tmp_path / "f" / "config.json").read_text())["params"]
    for name in ("batch_size", "lr", "lr_schedule"):
        assert params[name] == BURDA_FAST[name]
    assert params["hidden"] == [200, 200] and params["latent_dim"] == 50  # the paper's networks
    # the weights are those of VAE.fit with the recipe (what benchmarks/burda_fast.py --recipe fast trains)
    recipe = {k: v for k, v in BURDA_FAST.items() if k != "epochs"}
    fitted = VAE(**{**BURDA_PARAMS, **recipe, "epochs": 2, "verbose": False})
    fitted.fit(load_data(str(mnist_subset)).x_train)
    saved = storage.load_tensors(tmp_path / "f" / "model.safetensors")
    assert saved.keys() == fitted.module_.state_dict().keys()
    for name, value in fitted.module_.state_dict().items():
        assert torch.equal(saved[name], value), name
    # resuming without --fast asks for another protocol: refused, naming the settings
    assert (
        main(
            [
                "reproduce",
                "burda2015",
                "--budget",
                "2",
                "--eval-n",
                "20",
                "--eval-k",
                "10",
                "--quiet",
                "--data",
                str(mnist_subset),
                "-o",
                str(tmp_path / "f"),
                "--resume",
            ]
        )
        == 2
    )
    assert "'fast': True" in capsys.readouterr().err
    assert main(["reproduce", "kingma2013", "--fast", "--budget", "1"]) == 2
    assert "--fast: burda2015 only" in capsys.readouterr().err


def test_burda2015_table_trains_each_cell_beside_the_paper_and_resumes_past_finished_cells(
    tmp_path, mnist_subset, capsys
):
    """--table --layers 1: the five one-layer cells of Table 1 (VAE k = 1, 5, 50; IWAE k = 5, 50)."""
    argv = ["burda2015", "--table", "--layers", "1", "--budget", "1", "--eval-n", "30", "--eval-k", "20"]
    argv += ["--data", str(mnist_subset), "-o", str(tmp_path / "t")]
    out = _reproduce(capsys, *argv)
    table = json.loads((tmp_path / "t" / "table.json").read_text())
    assert list(table) == [str(c) for c in BURDA_TABLE if c.layers == 1]
    assert [row["paper_test_nll"] for row in table.values()] == [86.76, 86.47, 86.35, 85.54, 84.78]
    for cell in (c for c in BURDA_TABLE if c.layers == 1):
        sub = tmp_path / "t" / f"layers-1-{cell.objective}-k{cell.samples}"
        params = json.loads((sub / "config.json").read_text())["params"]
        assert (params["objective"], params["samples"]) == (cell.objective, cell.samples)
        row, result = table[str(cell)], json.loads((sub / "eval.json").read_text())
        assert row["test_nll"] == -result["log_px"] and result["k"] == 20 and result["n"] == 30
        assert row["shortened"] and f"{row['test_nll']:.2f} ± {row['test_nll_sem']:.2f}" in out
        assert f"{row['paper_test_nll']:.2f}" in out
    # a resumed table keeps its finished cells: nothing is retrained, the table is the same
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "t").glob("*/model.safetensors")}
    _reproduce(capsys, *argv, "--resume")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((tmp_path / "t" / "table.json").read_text()) == table


def test_burda2015_cell_flags_are_checked_and_old_records_resume(tmp_path, mnist_subset, capsys):
    assert Cell(1, "iwae", 1).paper_nll == 86.76  # the IWAE bound with k = 1 is the ELBO
    for argv, message in [
        (["kingma2013", "--samples", "5"], "--samples: burda2015 only"),
        (["burda2015", "--table", "--samples", "5"], "leave out --objective and --samples"),
    ]:
        assert main(["reproduce", *argv, "-o", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    # a run recorded before the cell's settings existed resumes as the default cell
    argv = ["burda2015", "--budget", "1", "--eval-n", "10", "--eval-k", "5", "--data", str(mnist_subset)]
    _reproduce(capsys, *argv, "-o", str(tmp_path / "old"))
    path = tmp_path / "old" / "reproduce.json"
    record = json.loads(path.read_text())
    for key in ("layers", "objective", "samples", "table"):
        del record["settings"][key]
    path.write_text(json.dumps(record))
    assert "test NLL" in _reproduce(capsys, *argv, "-o", str(tmp_path / "old"), "--resume")
    assert main(["reproduce", *argv, "--samples", "5", "-o", str(tmp_path / "old"), "--resume"]) == 2
    assert "resume with the same command" in capsys.readouterr().err


def test_burda2015_two_layer_cell_trains_burdas_hierarchy(tmp_path, mnist_subset, capsys):
    argv = ["burda2015", "--layers", "2", "--objective", "iwae", "--samples", "5", "--budget", "1"]
    argv += ["--eval-n", "20", "--eval-k", "10", "--data", str(mnist_subset), "-o", str(tmp_path / "two")]
    out = _reproduce(capsys, *argv)
    assert "(paper: 83.89 nats)" in out
    params = json.loads((tmp_path / "two" / "config.json").read_text())["params"]
    assert (params["hidden"], params["latent_dim"]) == ([200, 200], 100)
    assert (params["upper_latents"], params["upper_hidden"]) == ([50], [100, 100])
    assert (params["objective"], params["samples"]) == ("iwae", 5)
    result = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert result["elbo"] < result["log_px"] < 0
