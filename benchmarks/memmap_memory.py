"""Peak resident memory and throughput of training on a uint8 data set read from disk as used.

Writes N RGB 64x64 images (default 300,000: 3.7 GB as bytes, 14.7 GB as float32 rows) as one
``.npy`` file, cut from scikit-image's sample photographs (random 64x64 patches, flipped and
shifted in brightness), then runs, each in a fresh subprocess, alternating:

- ``disk``: vaekit opens the file as :class:`vaekit.byterows.ByteRows` (rows read with pread), checks
  it as ``vaekit train`` does (value range and digest: one pass over every byte), and takes
  ``--steps`` optimiser steps through ``Trainer.batches``;
- ``memory``: the first ``--subset`` rows copied into memory as bytes, the same steps.

Each prints its peak resident memory (``VmHWM`` of /proc/self/status) and steps per second.
The data file is deleted at the end. Usage::

    OMP_NUM_THREADS=1 python benchmarks/memmap_memory.py --n 300000 --steps 300 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np, torch
from vaekit import VAE, runs
from vaekit.byterows import ByteRows
from vaekit.data import read_file

path, mode, steps, subset = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x, _, shape = read_file(path)
start = time.perf_counter()
if mode == "memory":
    x = ByteRows(x.array.read(slice(0, subset)), source=path, hwc=x.hwc)  # the same bytes, in memory
value_range, digest = x.value_range(), runs.digest(x)
checks = time.perf_counter() - start
vae = VAE(latent_dim=32, hidden=(256,), batch_size=128, binarize="dynamic", epochs=1)
vae.partial_fit(x[:128])  # builds the model
trainer = vae.trainer_
batches = trainer.batches(x, None)
for _ in range(20):  # warm-up
    trainer.train_step(next(batches)[0])
start = time.perf_counter()
for _ in range(steps):
    trainer.train_step(next(batches)[0])
seconds = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
peak = int(status["VmHWM"].split()[0]) // 1024
print(json.dumps({"mode": mode, "rows": len(x), "checks_s": round(checks, 2),
                  "steps_per_s": round(steps / seconds, 2), "peak_rss_mb": peak}))
"""


def write_images(path: Path, n: int, seed: int = 0) -> None:
    """n random 64x64 RGB patches of scikit-image's photographs, written a block at a time."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    rng = np.random.default_rng(seed)
    shape = (n, 64, 64, 3)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
        for start in range(0, n, 10_000):
            m = min(10_000, n - start)
            block = np.empty((m, 64, 64, 3), np.uint8)
            for i in range(m):
                photo = photos[rng.integers(len(photos))]
                r, c = rng.integers(photo.shape[0] - 64), rng.integers(photo.shape[1] - 64)
                patch = photo[r : r + 64, c : c + 64, :3]
                patch = patch[:, ::-1] if rng.random() < 0.5 else patch
                block[i] = np.clip(patch.astype(np.int16) + rng.integers(-30, 31), 0, 255)
            f.write(block.tobytes())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300_000)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--subset", type=int, default=60_000, help="rows of the in-memory comparison")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", type=Path, default=Path("/tmp"))
    args = p.parse_args()
    path = args.dir / "vaekit-memmap-benchmark.npy"
    need = args.n * 64 * 64 * 3
    free = shutil.disk_usage(args.dir).free
    if free < 2 * need:
        sys.exit(f"{args.dir}: {free / 1e9:.1f} GB free, need {2 * need / 1e9:.1f} GB")
    try:
        start = time.perf_counter()
        write_images(path, args.n)
        print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s")
        for _ in range(args.repeats):
            for mode in ("disk", "memory"):
                child = [sys.executable, "-c", CHILD, str(path), mode, str(args.steps), str(args.subset)]
                done = subprocess.run(child, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(done.stderr)
                print(json.dumps(json.loads(done.stdout.strip().splitlines()[-1])), flush=True)
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
