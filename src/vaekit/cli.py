"""The ``vaekit`` command line: a thin layer over the Python API.

Every user error ends with one line ``vaekit: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import typing
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vaekit import (
    checkpoint,
    export,
    imagecache,
    limits,
    parallel,
    plots,
    reproduce,
    runs,
    storage,
    tensorboard,
)
from vaekit.conditions import label_index
from vaekit.config import CONDITIONAL_LATENT_DIM, SPLIT_SEED, ModelConfig, TrainConfig, choices_of
from vaekit.data import DATASETS, data_spec, load_data, load_rows
from vaekit.entry import COMMAND_HELP, top_parser
from vaekit.errors import VaekitError
from vaekit.estimator import VAE
from vaekit.evaluate import eval_table
from vaekit.likelihoods import LIKELIHOODS
from vaekit.runner import labels, train_into
from vaekit.runs import Run

_OUT_HELP = "file to write (default: %(default)s, in the current folder)"
MAX_SIDE = 4096  # the largest --resize side: a 4096x4096 RGB image is 200 MB as float32 rows
PLOTS = {
    "manifold": "decoded grid of a 2-D latent space",
    "interpolate": "strip between two test images through the latent mean",
    "scatter": "test posterior means by label (first two principal components above 2-D)",
    "curves": "train and test ELBO per epoch from the run's metrics",
}


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


def _crop(text: str) -> str | tuple[int, int]:
    """--crop's value: 'square' or HxW."""
    return imagecache.SQUARE if text == imagecache.SQUARE else _size(text)


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


def _options(text: str) -> dict[str, Any]:
    """'{"width": 64}' -> a JSON object of keyword options."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"width\": 64}}', got {text!r}"
        ) from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


#: parsers of the field types that are not a plain int, float or str
FIELD_TYPES: dict[object, Callable[[str], Any]] = {tuple[int, ...]: _hidden}


def _add_hyperparameters(p: argparse.ArgumentParser) -> None:
    """One flag per config field (its type, help and choices from vaekit.config), and one per option
    of a registered likelihood (into likelihood_options); their default None means 'the config's'."""
    g = p.add_argument_group("model and training (defaults from vaekit.config)")
    for cfg in (ModelConfig, TrainConfig):
        hints = typing.get_type_hints(cfg)
        for f in fields(cfg):
            if not f.metadata["flag"] or f.name == "likelihood_options":
                continue
            hint, text = hints[f.name], f"{f.metadata['help']} (default: {f.default})"
            if f.name == "conditional":
                text += f"; then --latent-dim defaults to {CONDITIONAL_LATENT_DIM}"
            if hint is bool:
                g.add_argument(_flag(f.name), dest=f.name, action="store_const", const=True, help=text)
                continue
            plain = (
                hint if hint in (int, float, str) else str if typing.get_origin(hint) is Literal else _options
            )
            kind = FIELD_TYPES.get(hint, plain)
            choices = choices_of(f.name, hint) or None
            g.add_argument(_flag(f.name), dest=f.name, type=kind, choices=choices, help=text)  # type: ignore[arg-type]
    for name, owners in _likelihood_options().items():
        default, text = owners[0][1]
        g.add_argument(
            _flag(name),
            dest=LIKELIHOOD_OPTION + name,
            metavar=name.upper(),
            type=float,
            help=f"{text} (likelihood {', '.join(o for o, _ in owners)}; default: {default})",
        )


LIKELIHOOD_OPTION = "likelihood_option."  # argparse dest prefix of a likelihood's options


def _likelihood_options() -> dict[str, list[tuple[str, tuple[float, str]]]]:
    """Every option of a registered likelihood: name -> [(likelihood, (default, help)), ...]."""
    found: dict[str, list[tuple[str, tuple[float, str]]]] = {}
    for likelihood, cls in sorted(LIKELIHOODS.items()):
        for name, spec in cls.options.items():
            found.setdefault(name, []).append((likelihood, spec))
    return found


def _flag_params(args: argparse.Namespace) -> dict[str, Any]:
    """The model and training settings given as flags (the configs' field names)."""
    names = [f.name for cfg in (ModelConfig, TrainConfig) for f in fields(cfg)]
    params = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    options = {
        key.removeprefix(LIKELIHOOD_OPTION): value
        for key, value in vars(args).items()
        if key.startswith(LIKELIHOOD_OPTION) and value is not None
    }
    if options:
        params["likelihood_options"] = options
    return params


def _parser() -> argparse.ArgumentParser:
    parser, sub = top_parser()

    p = sub.add_parser("train", help=COMMAND_HELP["train"])
    p.add_argument(
        "--data",
        help="mnist, fashion-mnist, or a .npy/.npz/.csv file or image folder (default: mnist)",
    )
    p.add_argument("--resize", type=_size, help="resize images of a folder to HxW")
    p.add_argument(
        "--label-column",
        metavar="NAME",
        help="the column of a CSV file's header holding class labels 0, 1, ... (not a feature then)",
    )
    p.add_argument(
        "--crop",
        nargs="?",
        const=imagecache.SQUARE,
        type=_crop,
        help="centre-crop images of a folder (before --resize): the largest square, or HxW",
    )
    p.add_argument("-o", "--out", type=Path, help="run folder (default: runs/DATA-TIME)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing run folder")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the interrupted run in folder RUN with its own settings (from its config)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help=f"write TensorBoard events into RUN/{runs.TENSORBOARD}/ each epoch (needs vaekit[tensorboard])",
    )
    _add_hyperparameters(p)

    p = sub.add_parser("sample", help=COMMAND_HELP["sample"])
    p.add_argument("run", type=Path)
    p.add_argument(
        "-n",
        type=_count,
        default=64,
        help="number of samples; a conditional run without --label draws "
        "one row per class of n // classes each (default: 64)",
    )
    p.add_argument("--label", help="class label to condition on, by number or name (conditional runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--draw", action="store_true", help="draw the pixels x ~ p(x|z) too (default: the decoder's mean)"
    )
    p.add_argument("-o", "--out", type=Path, default=Path(runs.SAMPLES), help=_OUT_HELP)

    p = sub.add_parser("reconstruct", help=COMMAND_HELP["reconstruct"])
    p.add_argument("run", type=Path)
    p.add_argument("--data", required=True, help="mnist, fashion-mnist (test split) or a file")
    p.add_argument("-n", type=_count, default=32, help="number of inputs shown (default: 32)")
    p.add_argument("-o", "--out", type=Path, default=Path(runs.RECONSTRUCTIONS), help=_OUT_HELP)

    p = sub.add_parser("encode", help=COMMAND_HELP["encode"])
    p.add_argument("run", type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("-o", "--out", type=Path, default=Path("z.npy"), help=_OUT_HELP)

    p = sub.add_parser("eval", help=COMMAND_HELP["eval"])
    p.add_argument("run", type=Path)
    p.add_argument("--data", help="data set or file whose test split is used (default: the run's data)")
    p.add_argument("--k", type=_count, default=5000, help="importance samples per example (default: 5000)")
    p.add_argument("-n", type=_count, help="evaluate only the first n test examples")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        help=f"JSON to write (default: RUN/{runs.EVAL}, or RUN/{runs.eval_file('DATA')} for other --data)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("reproduce", help=COMMAND_HELP["reproduce"])
    p.add_argument("paper", choices=sorted(reproduce.PAPERS))
    p.add_argument(
        "--budget",
        help="shorten the protocol: epochs (30), or minutes (20m) of the whole command turned into "
        "epochs (and, if need be, fewer evaluated digits) by timing",
    )
    p.add_argument("--data", default="mnist", help="data set or file (default: mnist, the paper's)")
    p.add_argument(
        "--eval-k", type=_count, help=f"burda2015: importance samples (default: {reproduce.BURDA_K})"
    )
    p.add_argument("--eval-n", type=_count, help="burda2015: evaluate the first N test digits (default: all)")
    p.add_argument(
        "--layers",
        type=int,
        choices=sorted(reproduce.BURDA_LAYERS),
        help="burda2015: stochastic layers of the cell (default: 1; with --table: every row)",
    )
    p.add_argument(
        "--objective",
        choices=choices_of("objective", str),
        default="elbo",
        help="burda2015: the cell's training objective, elbo (VAE) or iwae (default: elbo)",
    )
    p.add_argument("--samples", type=_count, default=1, help="burda2015: the cell's k (default: 1)")
    p.add_argument(
        "--table",
        action="store_true",
        help="burda2015: train and evaluate every cell of Table 1 (of --layers only, if given)",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="burda2015: train with the fast recipe (a tenth of the paper's compute) instead of the "
        "paper's schedule",
    )
    p.add_argument("-o", "--out", type=Path, help="run folder (default: runs/PAPER-TIME)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing run folder")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        type=Path,
        metavar="RUN",
        help="continue the stopped command in RUN (or -o): the same command with --resume added",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("plot", help=COMMAND_HELP["plot"])
    p.add_argument("kind", choices=sorted(PLOTS), help="; ".join(f"{k}: {v}" for k, v in PLOTS.items()))
    p.add_argument("run", type=Path)
    p.add_argument("--data", help="data set or file whose test split is used (default: the run's data)")
    p.add_argument("--pair", type=int, nargs=2, default=(0, 1), metavar=("I", "J"), help="interpolate: rows")
    p.add_argument("--steps", type=int, default=10, help="interpolate: decoded points (default: 10)")
    p.add_argument("-n", type=_count, default=5000, help="scatter: test examples shown (default: 5000)")
    p.add_argument("-o", "--out", type=Path, help=f"PNG to write (default: RUN/{runs.plot_file('KIND')})")

    p = sub.add_parser("score", help=COMMAND_HELP["score"])
    p.add_argument("run", type=Path)
    p.add_argument("--data", required=True, help="mnist, fashion-mnist (test split) or a file (every row)")
    p.add_argument("--k", type=_count, default=1000, help="importance samples per example (default: 1000)")
    p.add_argument("-n", type=_count, help="score only the first n examples")
    p.add_argument("-o", "--out", type=Path, default=Path("scores.csv"), help=_OUT_HELP)

    p = sub.add_parser("decode", help=COMMAND_HELP["decode"])
    p.add_argument("run", type=Path)
    p.add_argument("--latents", type=Path, required=True)
    p.add_argument("--label", help="class label to condition on, by number or name (conditional runs)")
    p.add_argument("-o", "--out", type=Path, default=Path("x.npy"), help=_OUT_HELP)

    p = sub.add_parser("export", help=COMMAND_HELP["export"])
    p.add_argument("run", type=Path)
    p.add_argument("--format", choices=sorted(export.FORMATS), default="onnx", help="(default: %(default)s)")
    p.add_argument("-o", "--out", type=Path, required=True, help="folder to write the files into")

    p = sub.add_parser("explore", help=COMMAND_HELP["explore"])
    p.add_argument("run", type=Path)
    p.add_argument("--data", help="data set or file whose test split is mapped (default: the run's data)")
    p.add_argument("-n", type=_count, default=5000, help="test examples on the map (default: 5000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the web browser")
    p.add_argument("--verbose", action="store_true", help="log every request on stderr")
    return parser


# ---------------------------------------------------------------------------- commands


def _require_images(vae: VAE, run: Path) -> tuple[int, ...]:
    if vae.image_shape_ is None:
        raise VaekitError(f"{run}: the model's data are not images, so there is no picture to draw")
    return vae.image_shape_


def _resume_settings(args: argparse.Namespace) -> tuple[Run, dict[str, Any], dict[str, Any]]:
    """The run folder and the training settings of ``--resume RUN``; flags that would change them
    are refused (--quiet and --checkpoint-every may be given, and --epochs to extend the run)."""
    run = Run.existing(args.resume)
    if args.out is not None or args.overwrite:
        raise VaekitError("--resume continues RUN in place; leave out -o/--out and --overwrite")
    if run.has(runs.WEIGHTS) and not run.has(runs.CHECKPOINT):
        raise VaekitError(
            f"{run.folder}: the run has finished ({runs.WEIGHTS}) and holds no checkpoint to resume"
        )
    config_path = run.path(runs.CONFIG)
    config = run.read_config()
    try:
        params, source = dict(config["params"]), dict(config["source"])
        saved = {**params, "data": source["data"], "resize": source["resize"], "crop": source.get("crop")}
        saved["label_column"] = source.get("label_column")
        unknown = sorted(set(params) - set(VAE().get_params()))
    except (KeyError, TypeError, ValueError) as e:
        raise VaekitError(f"{config_path}: not the config of a vaekit train run ({e})") from e
    if unknown:
        raise VaekitError(f"{config_path}: unknown settings {unknown} (written by another vaekit?)")
    resize = source["resize"]
    if not isinstance(source["data"], str) or not (resize is None or _is_size(resize)):
        raise VaekitError(f"{config_path}: its source {source} is not a data set and size")
    given = {**_flag_params(args), "data": args.data, "resize": args.resize, "crop": args.crop}
    given["label_column"] = args.label_column
    for name, value in given.items():
        if value is None or name in (*checkpoint.RESUMABLE_CHANGES, checkpoint.EXTENDABLE):
            continue
        ours = list(value) if isinstance(value, tuple) else data_spec(value) if name == "data" else value
        if ours != saved.get(name):
            raise VaekitError(
                f"{_flag(name)} {value} conflicts with {saved.get(name)!r} in {config_path}; a resumed "
                "run keeps its settings (start a new run to change them)"
            )
    for name in (*checkpoint.RESUMABLE_CHANGES, checkpoint.EXTENDABLE):
        if given.get(name) is not None:
            params[name] = given[name]
    params.update({k: tuple(params[k]) for k in ModelConfig.WIDTHS if isinstance(params.get(k), list)})
    return run, params, source


def _as_crop(value: object) -> str | tuple[int, int] | None:
    """A run's recorded crop ('square' or [H, W]) as --crop gives it; None when it has none."""
    if value == imagecache.SQUARE or value is None:
        return value  # type: ignore[return-value]
    if not _is_size(value):
        raise VaekitError(f"the run's data record has crop {value!r}, not 'square' or [H, W]")
    return (int(value[0]), int(value[1]))  # type: ignore[index]


def _is_size(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)


def cmd_train(args: argparse.Namespace) -> int:
    resume = args.resume is not None
    if resume:
        run, params, source = _resume_settings(args)
        storage.check_writable(run.folder)
    else:
        params = _flag_params(args)
        if params.get("conditional"):
            params.setdefault("latent_dim", CONDITIONAL_LATENT_DIM)
        resize = list(args.resize) if args.resize else None
        source = {"data": data_spec(args.data or "mnist"), "resize": resize}
        if args.label_column is not None:
            source["label_column"] = args.label_column
        if args.crop:  # recorded only when given: configs of runs without it stay as they were
            source["crop"] = list(args.crop) if isinstance(args.crop, tuple) else args.crop
    params["verbose"] = not args.quiet
    vae = VAE(**params)
    vae.configs()  # validate the flags before touching disk
    if args.tensorboard:
        tensorboard.require()  # a missing package fails before the run folder is made
    parallel.resolve_device(vae.device)
    writes = parallel.rank() == 0  # under torchrun only rank 0 prints and writes the run folder
    if resume and parallel.world_size() > 1:
        raise VaekitError(f"{run.folder}: --resume is for single-process runs; resume without torchrun")
    if not resume:
        out = args.out or Path("runs") / f"{Path(source['data']).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        images = Path(source["data"])
        if images.is_dir() and images in (out.resolve(), *out.resolve().parents):
            raise VaekitError(f"{out}: is inside the image folder {source['data']}; write the run elsewhere")
        run = Run.create(out, args.overwrite) if writes else Run(out)
    with run.lock() if writes else nullcontext():
        try:
            resize = tuple(source["resize"]) if source["resize"] else None
            reading = {"crop": _as_crop(source.get("crop")), "label_column": source.get("label_column")}
            data = load_data(source["data"], resize=resize, seed=vae.seed + SPLIT_SEED, **reading)  # type: ignore[arg-type]
        except (VaekitError, KeyboardInterrupt):
            run.discard_if_empty()
            raise
        command = f"vaekit train --resume {run.folder}"
        pictures = train_into(
            run if writes else None, vae, data, source, command, resume, tensorboard=args.tensorboard
        )
    if not writes:
        return 0
    final = vae.history_[vae.best_epoch_ - 1 if vae.patience else -1]  # the epoch of the saved weights
    print(
        f"test ELBO {final['test_elbo']:.2f} nats per example "
        f"(reconstruction {final['test_recon']:.2f}, KL {final['test_kl']:.2f}); "
        f"estimator {vae.estimator}, L={vae.samples}"
    )
    print(f"run folder: {run.folder}")
    for path in pictures:
        print(f"  {path}")
    return 0


def _npy(array: np.ndarray, column: str) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _csv(array: np.ndarray, column: str) -> bytes:
    """One row per example, comma-separated, under a header naming the columns column1, column2..."""
    header = ",".join(f"{column}{j + 1}" for j in range(array.shape[1]))
    return (header + "\n" + "".join(",".join(f"{v:.7g}" for v in row) + "\n" for row in array)).encode()


#: how ``encode`` and ``decode`` write an array ``(n, d)``, by the output's suffix
ARRAY_FORMATS = {".npy": _npy, ".csv": _csv}


def _write_array(
    path: Path, array: np.ndarray, column: str, image_shape: tuple[int, ...] | None = None
) -> None:
    """Write rows by the file's suffix: .npy, .csv (columns named ``column`` 1, 2...), or (image
    rows) .png as a grid of 8 a row."""
    suffix = path.suffix.lower()
    if suffix == ".png" and image_shape is not None:
        plots.save_png(plots.image_grid(array, image_shape, min(8, len(array))), path)
        return
    if suffix not in ARRAY_FORMATS:
        kinds = [*ARRAY_FORMATS, *([".png"] if image_shape is not None else [])]
        raise VaekitError(f"{path}: unknown output type {suffix or '(none)'}; write one of {kinds}")
    storage.atomic_write(path, ARRAY_FORMATS[suffix](array, column))


def cmd_sample(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    _require_images(vae, args.run)
    if vae.conditional and vae.n_classes_ is None:
        raise VaekitError(f"{args.run}: conditioned on vectors, not labels; use the Python API to sample")
    limits.check_samples(args.n, vae.n_features_in_)
    label = _label(vae, args.label)
    grid = plots.sample_grid(vae, args.n, args.seed, label, mean=not args.draw)
    print(plots.save_png(grid, args.out))


def cmd_reconstruct(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    shape = _require_images(vae, args.run)
    x, y, _ = load_rows(args.data, _run_resize(vae), **_reading(vae, args.data))
    x, y = vae.check_data(x[: args.n], what=args.data).numpy(), labels(vae, y, args.data)
    picture = plots.reconstruction_grid(x, vae.reconstruct(x, y[: args.n] if y is not None else None), shape)
    print(plots.save_png(picture, args.out))


def cmd_encode(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    x, y, _ = load_rows(args.data, _run_resize(vae), **_reading(vae, args.data))
    z = vae.transform(vae.check_data(x, what=args.data), labels(vae, y, args.data))
    _write_array(args.out, z, "z")
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
    x = vae.inverse_transform(z, _label(vae, args.label))
    _write_array(args.out, x, "x", vae.image_shape_)
    print(f"{args.out}: {x.shape[0]} decoded examples of size {x.shape[1]}")


def _label(vae: VAE, label: str | None) -> int | None:
    """``--label``, by name (the run's class names) or number."""
    return None if label is None else label_index(label, _classes(vae), vae.n_classes_)


def _classes(vae: VAE) -> list[str] | None:
    """The names of the run's class labels (an image folder's sub-folders), if it has them."""
    return (vae.source_ or {}).get("classes")


def _run_resize(vae: VAE) -> tuple[int, int] | None:
    """The (H, W) the run resized its image folder to, if it did: other folders are read at that size."""
    resize = (vae.source_ or {}).get("resize")
    return (int(resize[0]), int(resize[1])) if _is_size(resize) else None


def _reading(vae: VAE, spec: str) -> dict[str, Any]:
    """How the run read its data, to read ``spec`` the same way: its crop, and the CSV column it
    took its labels from (for a CSV file ``spec``; other data have none)."""
    source = vae.source_ or {}
    column = source.get("label_column") if Path(spec).suffix == ".csv" else None
    return {"crop": _as_crop(source.get("crop")), "label_column": column}


def _test_split(vae: VAE, spec: str | None) -> tuple[Any, Any, str, int | None]:
    """Rows and labels of the test split of ``spec`` (default: the data the run trained on), held
    out as ``vaekit train`` held it out (same seed), the data's name, and its stored levels
    (:attr:`vaekit.data.Data.levels`)."""
    source = vae.source_ or {}
    own = spec is None or (spec not in DATASETS and data_spec(spec) == source.get("data"))
    spec = spec or source.get("data")
    if not isinstance(spec, str):
        raise VaekitError("the run does not record its training data; pass --data")
    data = load_data(spec, resize=_run_resize(vae), seed=vae.seed + SPLIT_SEED, **_reading(vae, spec))
    if own and source.get("sha256") not in (None, runs.digest(data.x_train)):
        raise VaekitError(
            f"{spec}: changed since the run trained on it (the SHA-256 of its training split differs), "
            "so its held-out split is not the one the run held out; pass --data to evaluate on other data"
        )
    return data.x_test, data.y_test, spec, data.levels


def _targets(vae: VAE, x: Any, y: Any, n: int | None, where: str) -> tuple[Any, Any]:
    """The first n rows and their labels (None unless conditional)."""
    y = labels(vae, y, where)
    return vae.check_data(x[:n], what=where), (y[:n] if y is not None else None)


def cmd_eval(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    x, y, spec, levels = _test_split(vae, args.data)
    x, y = _targets(vae, x, y, args.n, spec)
    result = {"data": spec, **vae.evaluate(x, y, args.k, not args.quiet, args.run, levels)}
    own = args.data is None or data_spec(args.data) == (vae.source_ or {}).get("data")
    out = args.out or Run(args.run).path(runs.eval_file(None if own else spec))
    try:
        storage.write_json(out, result)
    finally:  # the figures are shown even when the run folder cannot take the result
        print(eval_table(result, vae.samples))
    print(f"{len(x)} test examples of {spec}; written to {out}")


def cmd_score(args: argparse.Namespace) -> None:
    vae = VAE.load(args.run)
    x, y, _ = load_rows(args.data, _run_resize(vae), **_reading(vae, args.data))
    x, y = _targets(vae, x, y, args.n, args.data)
    x = vae.eval_targets(x, args.data)
    nll = -vae.score_samples(x, args.k, y=y).astype(np.float64)
    error = np.square(x.numpy() - vae.reconstruct(x, y)).sum(-1, dtype=np.float64)
    lines = ["index,nll,recon_error"]
    lines += [f"{i},{a:.6f},{b:.6f}" for i, (a, b) in enumerate(zip(nll, error, strict=True))]
    storage.atomic_write(args.out, ("\n".join(lines) + "\n").encode())
    print(
        f"{args.out}: {len(x)} examples; mean -log p(x) {nll.mean():.2f} nats (k={args.k}), "
        f"mean squared reconstruction error {error.mean():.2f}"
    )


def cmd_reproduce(args: argparse.Namespace) -> None:
    reproduce.run(args)


def cmd_plot(args: argparse.Namespace) -> None:
    run = Run(args.run)
    out = args.out or run.path(runs.plot_file(args.kind))
    if args.kind == "curves":  # from the metrics alone: an interrupted run has no model yet
        title = plots.run_title(VAE.load(args.run)) if run.has(runs.WEIGHTS) else f"{run.folder} (unfinished)"
        print(plots.training_curves(run.read_metrics(), out, title))
        return
    vae = VAE.load(args.run)
    if args.kind == "manifold":
        picture = plots.manifold_picture(vae, _require_images(vae, args.run))
        path = plots.save_png(plots.titled(picture, plots.run_title(vae, "latent manifold")), out)
    else:
        x, y, spec, _ = _test_split(vae, args.data)
        classes = None if y is None else y[: args.n].numpy()
        x, y = _targets(vae, x, y, args.n if args.kind == "scatter" else None, spec)
        x = vae.eval_targets(x, spec)
        if args.kind == "scatter":
            if len(x) < 2:
                raise VaekitError(f"scatter needs at least 2 test examples, {spec} has {len(x)}")
            classes = classes if classes is not None and classes.ndim == 1 else None  # colour by class only
            title = plots.run_title(vae, f"posterior means of {Path(spec).name}")
            plots.latent_scatter(vae.transform(x, y), classes, out, title, _classes(vae))
            path = out
        else:
            shape = _require_images(vae, args.run)
            if vae.conditional:
                raise VaekitError(f"{args.run}: interpolate draws unconditional runs only")
            i, j = args.pair
            if not (0 <= i < len(x) and 0 <= j < len(x)) or args.steps < 2:
                raise VaekitError(f"--pair must index the {len(x)} test rows and --steps be at least 2")
            strip = plots.interpolation(vae, x[i].numpy(), x[j].numpy(), args.steps)
            title = plots.run_title(vae, f"interpolation {i} to {j}")
            path = plots.save_png(plots.titled(plots.image_grid(strip, shape, len(strip)), title), out)
    print(path)


def cmd_export(args: argparse.Namespace) -> None:
    for path in export.export(VAE.load(args.run), args.out, args.format):
        print(path)


def cmd_explore(args: argparse.Namespace) -> None:
    import webbrowser

    from vaekit import explore

    explorer = explore.Explorer.from_run(args.run, args.data, args.n)
    server = explore.ExplorerServer(explorer, args.host, args.port, verbose=args.verbose)
    try:
        warning = explore.host_warning(args.host, server.port)
        if warning:
            print(warning, file=sys.stderr)
        print(f"vaekit explore: {args.run} at {server.url} (Ctrl-C stops)", flush=True)
        if args.open:
            webbrowser.open(server.url)
        server.serve_forever()
    except KeyboardInterrupt:
        print("vaekit explore: stopped")
    finally:
        server.server_close()


COMMANDS = {
    "explore": cmd_explore,
    "score": cmd_score,
    "reproduce": cmd_reproduce,
    "plot": cmd_plot,
    "eval": cmd_eval,
    "train": cmd_train,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "encode": cmd_encode,
    "decode": cmd_decode,
    "export": cmd_export,
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
    except KeyboardInterrupt as e:  # an Interrupted run says what it kept
        print(str(e) or "vaekit: interrupted", file=sys.stderr)
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
