"""Colour 32x32 patches: ResNet + discretized logistic mixture against conv + discretized logistic.

The data: random 32x32 patches of the colour pictures in the scikit-image wheel (astronaut,
chelsea, coffee, color, hubble_deep_field, ihc, motorcycle_left and _right, retina, rocket), as 8-bit
RGB. Training patches come from the top 80% of each photograph's rows, test patches from the
bottom 20%, so no test pixel was seen in training. Both models get the same wall-clock budget
of training on this CPU (``--minutes``, optimisation steps only; they run side by side, one
thread each, so that both see the same machine), Adam at a constant rate, minibatch 64:

- ``conv-logistic``: vaekit's ``--arch conv`` (two 4x4 stride-2 convolutions around an MLP)
  with one discretized logistic per sub-pixel (``discretized_logistic``);
- ``resnet-mixture``: ``--arch resnet`` (weight-normalized residual blocks down to a 4x4 grid, a
  flat latent) with the PixelCNN++ mixture of ``--components`` logistics per pixel.

Each writes a run folder under ``--out`` (``config.json``, ``model.safetensors`` and the
pictures of ``vaekit train``: samples, reconstructions, ...) and one JSON line with its test
bits/dim: the negative ELBO (a code length by bits-back coding) and the ``--k``-sample
importance-weighted bound on ``--eval-n`` test patches, both per sub-pixel in bits. Usage::

    python benchmarks/natural_images.py --minutes 15 --out /tmp/natural
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZE = 32
COLOURFUL = 2.0  # mean |R - G|, |G - B| above which a picture counts as colour
TRAIN_ROWS = 0.8  # the top part of each photograph that training patches come from

MODELS: dict[str, dict[str, object]] = {
    "conv-logistic": {"arch": "conv", "likelihood": "discretized_logistic", "hidden": (256,)},
    "resnet-mixture": {
        "arch": "resnet",
        "arch_options": {"width": 32, "blocks": 1, "levels": 3, "latent": "flat"},
        "likelihood": "discretized_logistic_mixture",
        "hidden": (256,),
    },
}


def photographs() -> list[np.ndarray]:
    """Every colour picture of the scikit-image wheel's data folder (an RGB PNG or JPEG whose
    channels differ: the grey, RGBA and grey-in-RGB files are left out), as (H, W, 3) uint8."""
    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        sys.exit("scikit-image (pip install scikit-image) holds the photographs")
    found = []
    for path in sorted((Path(spec.origin).parent / "data").glob("*")):
        if path.suffix in (".png", ".jpg") and Image.open(path).mode == "RGB":
            rgb = np.asarray(Image.open(path)).astype(np.int16)
            if np.abs(np.diff(rgb, axis=2)).mean() > COLOURFUL:
                found.append(rgb.astype(np.uint8))
    return found


def patches(images: list[np.ndarray], n: int, part: str, seed: int) -> np.ndarray:
    """n random (32, 32, 3) uint8 patches from the 'train' (top) or 'test' (bottom) rows of each image."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for j, i in enumerate(rng.integers(len(images), size=n)):
        h, w, _ = images[i].shape
        cut = int(h * TRAIN_ROWS)
        low, high = (0, cut - SIZE) if part == "train" else (cut, h - SIZE)
        top, left = rng.integers(low, high + 1), rng.integers(w - SIZE + 1)
        patch = images[i][top : top + SIZE, left : left + SIZE]
        out[j] = patch[:, ::-1] if rng.random() < 0.5 else patch
    return out


def train_one(name: str, data: Path, out: Path, args: argparse.Namespace) -> dict[str, object]:
    """Train model ``name`` for ``args.minutes`` of optimisation steps; write its run folder."""
    import torch

    from vaekit import VAE, plots

    torch.set_num_threads(1)
    with np.load(data) as f:
        x_train, x_test = f["x_train"], f["x_test"]
    params = dict(MODELS[name])
    if params["likelihood"] == "discretized_logistic_mixture":
        params["likelihood_options"] = {"components": args.components}
    vae = VAE(latent_dim=args.latent, batch_size=64, lr=args.lr, seed=0, verbose=False, **params)
    images = torch.as_tensor(x_train).float().div(255)  # (n, 32, 32, 3), as vaekit reads image arrays
    rows = images.permute(0, 3, 1, 2).reshape(len(images), -1)  # (n, 3 * 32 * 32) in (C, H, W) order
    order = torch.Generator().manual_seed(0)
    steps, trained = 0, 0.0
    vae.partial_fit(images[:64])  # builds the model for (3, 32, 32) images (the first step)
    while trained < args.minutes * 60:
        for idx in torch.randperm(len(rows), generator=order).split(64):
            start = time.perf_counter()
            vae.trainer_.train_step(rows[idx])  # what fit() does each step
            trained += time.perf_counter() - start
            steps += 1
            if trained >= args.minutes * 60:
                break
    test = torch.as_tensor(x_test).permute(0, 3, 1, 2).reshape(len(x_test), -1).float().div(255).numpy()
    run = out / name
    vae.save(run)
    plots.write_pictures(vae, run, test)
    found = vae.evaluate(test[: args.eval_n], k=args.k, levels=256)
    d = test.shape[1]
    elbo_all = vae.score(test)
    return {
        "model": name,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        "parameters": sum(p.numel() for p in vae.module_.parameters()),
        "minutes": args.minutes,
        "steps": steps,
        "epochs": round(steps * 64 / len(rows), 2),
        "test_patches": len(test),
        "elbo_bits_per_dim": -elbo_all / (d * math.log(2)),
        "iw_k": args.k,
        "iw_n": args.eval_n,
        "iw_bits_per_dim": found["bits_per_dim"],
        "iw_elbo_bits_per_dim": -found["elbo"] / (d * math.log(2)),
        "run": str(run),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15.0, help="training wall time of each model")
    p.add_argument("--train", type=int, default=20_000, help="training patches")
    p.add_argument("--test", type=int, default=2_000, help="test patches")
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--components", type=int, default=5, help="logistics per pixel of the mixture")
    p.add_argument("--k", type=int, default=20, help="importance samples of the test bound")
    p.add_argument("--eval-n", type=int, default=500, help="test patches of the importance-sampled bound")
    p.add_argument("--out", type=Path, default=Path("/tmp/vaekit-natural-images"))
    p.add_argument("--one", choices=sorted(MODELS), help=argparse.SUPPRESS)  # a child: train this model
    args = p.parse_args()
    data = args.out / "patches.npz"
    if args.one:
        print(json.dumps(train_one(args.one, data, args.out, args)), flush=True)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    images = photographs()
    x_train, x_test = patches(images, args.train, "train", 0), patches(images, args.test, "test", 1)
    np.savez(data, x_train=x_train, x_test=x_test)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    children = [
        subprocess.Popen(
            [sys.executable, __file__, *sys.argv[1:], "--one", name], stdout=subprocess.PIPE, env=env
        )
        for name in MODELS
    ]
    for child in children:
        stdout, _ = child.communicate()
        if child.returncode:
            sys.exit(child.returncode)
        line = stdout.decode().strip().splitlines()[-1]
        print(line, flush=True)
        with open(args.out / "results.jsonl", "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
