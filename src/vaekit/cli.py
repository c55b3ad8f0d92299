"""The ``vaekit`` command line: a thin layer over the Python API.

Every user error ends with one line ``vaekit: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import typing
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from vaekit import checkpoint, parallel, plots, reproduce, runs, storage
from vaekit.config import CONDITIONAL_LATENT_DIM, ModelConfig, TrainConfig
from vaekit.data import DATASETS, load_data, load_rows
from vaekit.errors import VaekitError
from vaekit.estimator import VAE
from vaekit.evaluate import anomaly_scores, eval_table, evaluate
from vaekit.likelihoods import LIKELIHOODS

_OUT_HELP = "file to write (default: %(default)s, in the current folder)"
MAX_SIDE = 4096  # the largest --resize side: a 4096x4096 RGB image is 200 MB as float32 rows
PLOTS = {
    "manifold": "decoded grid of a 2-D latent space",
    "interpolate": "strip between two test images through the latent mean",
    "scatter": "test posterior means by label (first two principal components above 2-D)",
    "curves": "train and test ELBO per epoch from metrics.jsonl",
}
#: every file vaekit writes into a run folder; ``train --overwrite`` removes them all first, so that
#: no result of the old run (eval.json, manifold.png of another latent size...) sits beside the new one
RUN_OUTPUTS = (
    runs.CONFIG,
    runs.WEIGHTS,
    runs.CHECKPOINT,
    runs.METRICS,
    runs.EVAL,
    *runs.PICTURES,
    *(f"{kind}.png" for kind in PLOTS),  # vaekit plot's default outputs
)


# ---------------------------------------------------------------------------- argument parsing


def _size(text: str) -> tuple[int, int]:
    """'28x28' -> (28, 28)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected HxW such as 28x28, got {text!r}") from e
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise argparse.ArgumentTypeError(
            f"expected HxW such as 28x28, each from 1 to {MAX_SIDE}, got {text!r}"
        )
    return h, w


def _count(text: str) -> int:
    """A positive integer (-n, --k): 0, negatives and non-integers are refused while parsing."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _hidden(text: str) -> tuple[int, ...]:
    """'400' or '200,200' -> (400,) or (200, 200); '' for none."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected widths such as 200,200, got {text!r}") from e


def _add_hyperparameters(p: argparse.ArgumentParser) -> None:
    """One flag per config field; its default is None, meaning 'the config's default'."""
    defaults = {f.name: f.default for f in (*fields(ModelConfig), *fields(TrainConfig))}
    g = p.add_argument_group("model and training (defaults from vaekit.config)")

    def add(flag: str, name: str, help: str, **kw: Any) -> None:
        g.add_argument(flag, dest=name, default=None, help=f"{help} (default: {defaults[name]})", **kw)

    add("--latent-dim", "latent_dim", "size J of the latent z", type=int)
    add("--hidden", "hidden", "hidden widths, comma-separated", type=_hidden)
    add("--activation", "activation", "hidden activation", choices=["relu", "tanh"])
    add("--likelihood", "likelihood", "decoder p(x|z)", choices=sorted(LIKELIHOODS))
    add("--sigma", "sigma", "std of the gaussian_fixed likelihood", type=float)
    add("--epochs", "epochs", "training epochs", type=int)
    add("--batch-size", "batch_size", "minibatch size M", type=int)
    add("--optimizer", "optimizer", "optimiser", choices=["adam", "adagrad"])
    add("--lr", "lr", "learning rate", type=float)
    add("--lr-schedule", "lr_schedule", "learning-rate schedule", choices=["constant", "burda"])
    add("--adam-eps", "adam_eps", "epsilon of Adam", type=float)
    add("--weight-decay", "weight_decay", "L2 penalty on the weights", type=float)
    add(
        "--estimator",
        "estimator",
        "SGVB estimator: analytic KL (B) or all Monte Carlo (A)",
        choices=["analytic", "mc"],
    )
    add("--samples", "samples", "samples L of z per data point", type=int)
    add("--beta", "beta", "weight of the KL term", type=float)
    add("--objective", "objective", "training objective (iwae: k = --samples)", choices=["elbo", "iwae"])
    add("--warmup-steps", "warmup_steps", "KL warm-up: steps over which beta rises from 0", type=int)
    add("--free-bits", "free_bits", "per-dimension floor on the batch-mean KL, nats", type=float)
    add("--arch", "arch", "encoder/decoder networks", choices=["mlp", "conv"])
    g.add_argument(
        "--conditional",
        dest="conditional",
        action="store_const",
        const=True,
        help="condition encoder and decoder on the data set's labels (default: False; "
        f"then --latent-dim defaults to {CONDITIONAL_LATENT_DIM})",
    )
    add("--binarize", "binarize", "Bernoulli targets", choices=["none", "static", "dynamic"])
    add("--seed", "seed", "random seed", type=int)
    add("--device", "device", "where to train ('auto': cuda if available)", choices=["cpu", "cuda", "auto"])
    add("--compile", "compile", "torch.compile the objective (CUDA graphs on a GPU)", action="store_true")
    add("--checkpoint-every", "checkpoint_every", "steps between checkpoints, 0: epoch ends only", type=int)


class _Parser(argparse.ArgumentParser):
    """argparse with vaekit's one-line errors (no usage block); subcommand parsers inherit it."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"vaekit: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vaekit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a VAE and write a run folder")
    p.add_argument(
        "--data",
        help="mnist, fashion-mnist, or a .npy/.npz/.csv file or image folder (default: mnist)",
    )
    p.add_argument("--resize", type=_size, help="resize images of a folder to HxW")
    p.add_argument("-o", "--out", type=Path, help="run folder (default: runs/DATA-TIME)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing run folder")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the interrupted run in folder RUN with its own settings (from its config.json)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_hyperparameters(p)

    p = sub.add_parser("sample", help="decode draws from the prior into a picture")
    p.add_argument("run", type=Path)
    p.add_argument(
        "-n",
        type=_count,
        default=64,
        help="number of samples; a conditional run without --label draws "
        "one row per class of n // classes each (default: 64)",
    )
    p.add_argument("--label", type=int, help="class label to condition on (conditional runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", type=Path, default=Path("samples.png"), help=_OUT_HELP)

    p = sub.add_parser("reconstruct", help="picture of inputs above their reconstructions")
    p.add_argument("run", type=Path)
    p.add_argument("--data", required=True, help="mnist, fashion-mnist (test split) or a file")
    p.add_argument("-n", type=_count, default=32, help="number of inputs shown (default: 32)")
    p.add_argument("-o", "--out", type=Path, default=Path("reconstructions.png"), help=_OUT_HELP)

    p = sub.add_parser("encode", help="posterior means of data, saved as .npy")
    p.add_argument("run", type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("-o", "--out", type=Path, default=Path("z.npy"), help=_OUT_HELP)

    p = sub.add_parser("eval", help="test ELBO and importance-sampled log p(x); writes eval.json")
    p.add_argument("run", type=Path)
    p.add_argument("--data", help="data set or file whose test split is used (default: the run's data)")
    p.add_argument("--k", type=_count, default=5000, help="importance samples per example (default: 5000)")
    p.add_argument("-n", type=_count, help="evaluate only the first n test examples")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("reproduce", help="rerun a paper's MNIST experiment into a run folder")
    p.add_argument("paper", choices=sorted(reproduce.PAPERS))
    p.add_argument(
        "--budget", help="shorten the protocol: epochs (30), or minutes (20m) turned into epochs by timing"
    )
    p.add_argument("--data", default="mnist", help="data set or file (default: mnist, the paper's)")
    p.add_argument("--k", type=_count, default=reproduce.BURDA_K, help="burda2015: importance samples")
    p.add_argument("-o", "--out", type=Path, help="run folder (default: runs/PAPER-TIME)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("plot", help="a picture of a trained run, saved as PNG")
    p.add_argument("kind", choices=sorted(PLOTS), help="; ".join(f"{k}: {v}" for k, v in PLOTS.items()))
    p.add_argument("run", type=Path)
    p.add_argument("--data", help="data set or file whose test split is used (default: the run's data)")
    p.add_argument("--pair", type=int, nargs=2, default=(0, 1), metavar=("I", "J"), help="interpolate: rows")
    p.add_argument("--steps", type=int, default=10, help="interpolate: decoded points (default: 10)")
    p.add_argument("-n", type=_count, default=5000, help="scatter: test examples shown (default: 5000)")
    p.add_argument("-o", "--out", type=Path, help="PNG to write (default: RUN/KIND.png)")

    p = sub.add_parser("score", help="per-example anomaly scores (NLL, reconstruction error) as CSV")
    p.add_argument("run", type=Path)
    p.add_argument("--data", required=True, help="mnist, fashion-mnist (test split) or a file (every row)")
    p.add_argument("--k", type=_count, default=1000, help="importance samples per example (default: 1000)")
    p.add_argument("-n", type=_count, help="score only the first n examples")
    p.add_argument("-o", "--out", type=Path, default=Path("scores.csv"), help=_OUT_HELP)

    p = sub.add_parser("decode", help="decoder means of latents from a .npy file, saved as .npy")
    p.add_argument("run", type=Path)
    p.add_argument("--latents", type=Path, required=True)
    p.add_argument("--label", type=int, help="class label to condition on (conditional runs)")
    p.add_argument("-o", "--out", type=Path, default=Path("x.npy"), help=_OUT_HELP)
    return parser


# ---------------------------------------------------------------------------- run folders


def _prepare_run_folder(out: Path, overwrite: bool) -> Path:
    """Create the run folder, refusing to reuse a non-empty one unless asked; check it is writable."""
    if out.exists() and not out.is_dir():
        raise VaekitError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise VaekitError(f"{out}: run folder exists and is not empty; pass --overwrite to reuse it")
    storage.make_folder(out, "run folder")
    storage.check_writable(out)
    return out


def _require_images(vae: VAE, run: Path) -> tuple[int, ...]:
    if vae.image_shape_ is None:
        raise VaekitError(f"{run}: the model's data are not images, so there is no picture to draw")
    return vae.image_shape_


def _labels(vae: VAE, y: Any, data: object) -> Any:
    """The labels y of data for a conditional model (refusing unlabelled data), else None."""
    if not vae.conditional:
        return None
    if y is None:
        raise VaekitError(f"{data}: has no labels, but the model is conditional and needs them")
    return y


# ---------------------------------------------------------------------------- commands


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def _digest(x: Any) -> str:
    """SHA-256 of training rows ``(n, d)``: what a run records to know its data again."""
    return hashlib.sha256(x.numpy().tobytes()).hexdigest()


def _data_spec(data: str) -> str:
    """A data set's name, or a file's absolute path (so that --resume works from any folder)."""
    return data if data in DATASETS else str(Path(data).resolve())


def _resume_settings(
    args: argparse.Namespace, names: list[str]
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The run folder and the training settings of ``--resume RUN``; flags that would change them
    are refused (only --quiet and --checkpoint-every may be given)."""
    run = args.resume
    if args.out is not None or args.overwrite:
        raise VaekitError("--resume continues RUN in place; leave out -o/--out and --overwrite")
    if not run.is_dir():
        raise VaekitError(f"{run}: no such run folder")
    if (run / runs.WEIGHTS).exists() and not (run / runs.CHECKPOINT).exists():
        raise VaekitError(
            f"{run}: the run has finished (model.safetensors) and holds no checkpoint to resume"
        )
    config = storage.read_json(run / runs.CONFIG)
    try:
        params, source = dict(config["params"]), dict(config["source"])
        saved = {**params, "data": source["data"], "resize": source["resize"]}
        unknown = sorted(set(params) - set(VAE().get_params()))
    except (KeyError, TypeError, ValueError) as e:
        raise VaekitError(f"{run / runs.CONFIG}: not the config of a vaekit train run ({e})") from e
    if unknown:
        raise VaekitError(f"{run / runs.CONFIG}: unknown settings {unknown} (written by another vaekit?)")
    resize = source["resize"]
    if not isinstance(source["data"], str) or not (resize is None or _is_size(resize)):
        raise VaekitError(f"{run / runs.CONFIG}: its source {source} is not a data set and size")
    for name in [*names, "data", "resize"]:
        given = getattr(args, name, None)
        if given is None or name in checkpoint.RESUMABLE_CHANGES:
            continue
        ours = list(given) if isinstance(given, tuple) else _data_spec(given) if name == "data" else given
        if ours != saved.get(name):
            raise VaekitError(
                f"--{name.replace('_', '-')} {given} conflicts with {saved.get(name)!r} in "
                f"{run / runs.CONFIG}; a resumed run keeps its settings (start a new run to change them)"
            )
    if args.checkpoint_every is not None:
        params["checkpoint_every"] = args.checkpoint_every
    if isinstance(params.get("hidden"), list):
        params["hidden"] = tuple(params["hidden"])
    return run, params, source


def _is_size(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)


def _discard_new_run(run: Path, created: bool) -> None:
    """Remove the run folder this command created if a failure left nothing to resume in it
    (nothing, or only the config.json that fit() writes before the first step)."""
    if not (created and run.is_dir()):
        return
    if {p.name for p in run.iterdir()} <= {runs.CONFIG}:
        (run / runs.CONFIG).unlink(missing_ok=True)
        run.rmdir()


def cmd_train(args: argparse.Namespace) -> int:
    names = [f.name for f in (*fields(ModelConfig), *fields(TrainConfig))]
    if args.resume is not None:
        run, params, source = _resume_settings(args, names)
        storage.check_writable(run)
    else:
        params = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
        if params.get("conditional"):
            params.setdefault("latent_dim", CONDITIONAL_LATENT_DIM)
        resize = list(args.resize) if args.resize else None
        source = {"data": _data_spec(args.data or "mnist"), "resize": resize}
    params["verbose"] = not args.quiet
    vae = VAE(**params)
    vae._configs()  # validate the flags before touching disk
    parallel.resolve_device(vae.device)
    writes = parallel.rank() == 0  # under torchrun only rank 0 prints and writes the run folder
    if args.resume is not None and parallel.world_size() > 1:
        raise VaekitError(f"{run}: --resume is for single-process runs; resume without torchrun")
    created = False  # whether this command made the run folder (removed again if the data fail)
    if args.resume is None:
        name = Path(source["data"]).stem
        run = args.out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if Path(source["data"]).is_dir() and Path(source["data"]) in (run.resolve(), *run.resolve().parents):
            raise VaekitError(f"{run}: is inside the image folder {source['data']}; write the run elsewhere")
        if writes:
            created = not run.exists()
            _prepare_run_folder(run, args.overwrite)
    with storage.exclusive(run) if writes else nullcontext():
        return _train_into(args, vae, run, source, created, writes)


def _train_into(
    args: argparse.Namespace, vae: VAE, run: Path, source: dict[str, Any], created: bool, writes: bool
) -> int:
    """Read the data, train into the run folder (the caller holds its lock) and draw the pictures."""
    try:
        resize = tuple(source["resize"]) if source["resize"] else None
        data = load_data(source["data"], resize=resize, seed=vae.seed)  # type: ignore[arg-type]
        digest = _digest(data.x_train)
        if source.setdefault("sha256", digest) != digest:
            raise VaekitError(
                f"{source['data']}: the training data changed since the run in {run} started "
                "(their SHA-256 differs); resume with the same data, or start a new run"
            )
        y_train = _labels(vae, data.y_train, source["data"])
        y_test = _labels(vae, data.y_test, source["data"])
        # the data's values and labels are checked before anything in the run folder is removed
        vae._rows(data.x_train, source["data"], fitted_width=False)
        vae._rows(data.x_test, f"{source['data']} (test split)", fitted_width=False)
        vae._condition_setup(y_train)
    except (VaekitError, KeyboardInterrupt):
        _discard_new_run(run, created)
        raise
    if writes:
        print(data.describe())

    def log_epoch(row: dict[str, float]) -> None:
        if not writes:
            return
        # the whole history, atomically: no lost or repeated rows whenever the run is killed
        storage.write_jsonl(run / runs.METRICS, vae.history_)
        test = f", test ELBO {row['test_elbo']:.2f}" if "test_elbo" in row else ""
        print(
            f"epoch {int(row['epoch'])}: train ELBO {row['train_elbo']:.2f}{test} nats "
            f"({row['seconds']:.1f} s)",
            flush=True,
        )

    ckpt = run / runs.CHECKPOINT
    if args.resume is None and writes:
        for name in RUN_OUTPUTS:
            (run / name).unlink(missing_ok=True)
    # half-written files of a killed run (see storage.atomic_write)
    for tmp in run.glob(".*.tmp") if writes else ():
        tmp.unlink()
    written_before = _mtime(ckpt)
    try:
        vae.fit(
            data.x_train,
            y_train,
            X_test=data.x_test,
            y_test=y_test,
            image_shape=data.image_shape,
            on_epoch_end=log_epoch,
            checkpoint_dir=run if writes else None,
            resume=args.resume is not None,
            source=source,
        )
    except KeyboardInterrupt:
        if ckpt.exists():
            print(
                f"vaekit: interrupted; checkpoint saved to {ckpt}; "
                f"continue with: vaekit train --resume {run}",
                file=sys.stderr,
            )
        elif (run / runs.CONFIG).exists():
            print(
                f"vaekit: interrupted before the first checkpoint; vaekit train --resume {run} starts "
                "the run again from its first step",
                file=sys.stderr,
            )
        else:
            _discard_new_run(run, created)
            print("vaekit: interrupted before training started; nothing was saved", file=sys.stderr)
        return 130
    except VaekitError as e:
        if _mtime(ckpt) != written_before:  # this run wrote a checkpoint, so there is progress to resume
            raise VaekitError(f"{e}; the last checkpoint is kept: vaekit train --resume {run}") from e
        _discard_new_run(run, created)
        raise
    if not writes:
        return 0
    vae.save(run)
    pictures = plots.write_pictures(vae, run, data.x_test.numpy(), y_test)
    final = vae.history_[-1]
    print(
        f"test ELBO {final['test_elbo']:.2f} nats per example "
        f"(reconstruction {final['test_recon']:.2f}, KL {final['test_kl']:.2f}); "
        f"estimator {vae.estimator}, L={vae.samples}"
    )
    print(f"run folder: {run}")
    for path in pictures:
        print(f"  {path}")
    return 0


def _write_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    storage.atomic_write(path, buffer.getvalue())


def cmd_sample(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    _require_images(vae, args.run)
    if vae.conditional and vae.n_classes_ is None:
        raise VaekitError(f"{args.run}: conditioned on vectors, not labels; use the Python API to sample")
    print(plots.save_png(plots.sample_grid(vae, args.n, args.seed, args.label), args.out))


def cmd_reconstruct(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    shape = _require_images(vae, args.run)
    x, y, _ = load_rows(args.data, _run_resize(vae))
    x, y = vae._rows(x[: args.n], args.data).numpy(), _labels(vae, y, args.data)
    picture = plots.reconstruction_grid(x, vae.reconstruct(x, y[: args.n] if y is not None else None), shape)
    print(plots.save_png(picture, args.out))


def cmd_encode(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    x, y, _ = load_rows(args.data, _run_resize(vae))
    z = vae.transform(vae._rows(x, args.data), _labels(vae, y, args.data))
    _write_npy(args.out, z)
    print(f"{args.out}: {z.shape[0]} latents of size {z.shape[1]}")


def cmd_decode(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    try:
        z = np.load(args.latents, allow_pickle=False)
    except FileNotFoundError as e:
        raise VaekitError(f"{args.latents}: no such file") from e
    except (ValueError, OSError, EOFError) as e:
        raise VaekitError(f"{args.latents}: not a readable .npy file ({e})") from e
    if vae.conditional != (args.label is not None):
        raise VaekitError(f"{args.run}: pass --label exactly when the run is conditional")
    x = vae.inverse_transform(z, args.label)
    _write_npy(args.out, x)
    print(f"{args.out}: {x.shape[0]} decoded examples of size {x.shape[1]}")


def _run_resize(vae: VAE) -> tuple[int, int] | None:
    """The (H, W) the run resized its image folder to, if it did: other folders are read at that size."""
    resize = (vae.source_ or {}).get("resize")
    return (int(resize[0]), int(resize[1])) if _is_size(resize) else None


def _test_split(vae: VAE, spec: str | None) -> tuple[Any, Any, str]:
    """Rows and labels of the test split of ``spec`` (default: the data the run trained on), held
    out as ``vaekit train`` held it out (same seed), and the data's name."""
    source = vae.source_ or {}
    own = spec is None or (spec not in DATASETS and _data_spec(spec) == source.get("data"))
    spec = spec or source.get("data")
    if not isinstance(spec, str):
        raise VaekitError("the run does not record its training data; pass --data")
    data = load_data(spec, resize=_run_resize(vae), seed=vae.seed)
    if own and source.get("sha256") not in (None, _digest(data.x_train)):
        raise VaekitError(
            f"{spec}: changed since the run trained on it (the SHA-256 of its training split differs), "
            "so its held-out split is not the one the run held out; pass --data to evaluate on other data"
        )
    return data.x_test, data.y_test, spec


def _targets(vae: VAE, x: Any, y: Any, n: int | None, where: str) -> tuple[Any, Any]:
    """The first n rows (binarized as training did) and their labels (None unless conditional)."""
    x = vae._eval_targets(vae._rows(x[:n], where), vae.seed + 2)
    y = _labels(vae, y, where)
    return x, (y[:n] if y is not None else None)


def cmd_eval(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    x, y, spec = _test_split(vae, args.data)
    x, y = _targets(vae, x, y, args.n, spec)
    cond = vae._cond(y, len(x))
    result = {
        "data": spec,
        "binarization_seed": vae.seed + 2 if vae.binarize != "none" else None,
        **evaluate(
            vae.module_, x, args.k, vae.samples, vae.estimator, vae.seed, cond, progress=not args.quiet
        ),
    }
    try:
        storage.write_json(args.run / runs.EVAL, result)
    finally:  # the figures are shown even when the run folder cannot take eval.json
        print(eval_table(result, vae.samples))
    print(f"{len(x)} test examples of {spec}; written to {args.run / runs.EVAL}")


def cmd_score(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    x, y, _ = load_rows(args.data, _run_resize(vae))
    x, y = _targets(vae, x, y, args.n, args.data)
    scores = anomaly_scores(vae.module_, x, vae._cond(y, len(x)), args.k)
    lines = ["index,nll,recon_error"]
    nll, error = scores["nll"].tolist(), scores["recon_error"].tolist()
    lines += [f"{i},{a:.6f},{b:.6f}" for i, (a, b) in enumerate(zip(nll, error, strict=True))]
    storage.atomic_write(args.out, ("\n".join(lines) + "\n").encode())
    print(
        f"{args.out}: {len(x)} examples; mean -log p(x) {scores['nll'].mean():.2f} nats (k={args.k}), "
        f"mean squared reconstruction error {scores['recon_error'].mean():.2f}"
    )


def cmd_reproduce(args: argparse.Namespace) -> None:
    budget = reproduce.parse_budget(args.budget)
    data = load_data(args.data)  # before the run folder is made: bad data leave no empty folder
    run = _prepare_run_folder(
        args.out or Path("runs") / f"{args.paper}-{time.strftime('%Y%m%d-%H%M%S')}", args.overwrite
    )
    extra = {"k": args.k} if args.paper == "burda2015" else {}
    source = {"data": _data_spec(args.data), "resize": None}
    reproduce.PAPERS[args.paper](run, data, budget, progress=not args.quiet, source=source, **extra)


def cmd_plot(args: argparse.Namespace) -> None:
    out = args.out or args.run / f"{args.kind}.png"
    if args.kind == "curves":  # from metrics.jsonl alone: an interrupted run has no model yet
        print(plots.training_curves(storage.read_jsonl(args.run / runs.METRICS), out))
        return
    vae = VAE.load(args.run)
    if args.kind == "manifold":
        path = plots.save_png(plots.manifold_picture(vae, _require_images(vae, args.run)), out)
    else:
        x, y, spec = _test_split(vae, args.data)
        labels = None if y is None else y[: args.n].numpy()
        x, y = _targets(vae, x, y, args.n if args.kind == "scatter" else None, spec)
        if args.kind == "scatter":
            if len(x) < 2:
                raise VaekitError(f"scatter needs at least 2 test examples, {spec} has {len(x)}")
            labels = labels if labels is not None and labels.ndim == 1 else None  # colour by class only
            plots.latent_scatter(vae.transform(x, y), labels, out)
            path = out
        else:
            shape = _require_images(vae, args.run)
            if vae.conditional:
                raise VaekitError(f"{args.run}: interpolate draws unconditional runs only")
            i, j = args.pair
            if not (0 <= i < len(x) and 0 <= j < len(x)) or args.steps < 2:
                raise VaekitError(f"--pair must index the {len(x)} test rows and --steps be at least 2")
            strip = plots.interpolation(vae, x[i].numpy(), x[j].numpy(), args.steps)
            path = plots.save_png(plots.image_grid(strip, shape, len(strip)), out)
    print(path)


COMMANDS = {
    "score": cmd_score,
    "reproduce": cmd_reproduce,
    "plot": cmd_plot,
    "eval": cmd_eval,
    "train": cmd_train,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "encode": cmd_encode,
    "decode": cmd_decode,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vaekit`` command; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0), or a refused flag or value (2), its one line already printed
        return int(e.code or 0)
    try:
        code = COMMANDS[args.command](args) or 0
        sys.stdout.flush()  # a closed pipe (`vaekit eval RUN | head`) shows here, not at interpreter exit
        return code
    except VaekitError as e:
        one_line = " ".join(str(e).split())  # messages quoting torch or numpy may hold newlines
        print(f"vaekit: error: {one_line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vaekit eval RUN | head`: stop with one line, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        print("vaekit: stopped: standard output was closed", file=sys.stderr)
        return 141
    except OSError as e:  # a path the system refuses outright (a name over 255 bytes) in a stat or open
        if e.filename is None:
            raise
        print(f"vaekit: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        parallel.leave_process_group()
