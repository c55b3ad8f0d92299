"""Hostile files and sizes, under a memory limit: headers declaring 10^12 values, archives and PNGs
that inflate to gigabytes, links to /dev/zero, named pipes, absurd sizes in config.json, on the
command line and in Python, names over 255 bytes. Each gets vaekit's one line (VaekitError; on the
command line "vaekit: error: FILE: problem" and exit code 2) before its memory is allocated, and
changes nothing on disk. The limits themselves are in vaekit.limits.

Every test runs with an address-space limit (RLIMIT_AS), so a regression that allocates what a
file declares fails with MemoryError here instead of swapping the machine: the command-line cases
in a subprocess limited to SUBPROCESS_LIMIT, the property-based ones in this process with its soft
limit lowered to MEMORY_HEADROOM above what it maps already.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import resource
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaekit import VAE, VaekitError, limits, runs, storage
from vaekit.config import ModelConfig, TrainConfig
from vaekit.data import read_file
from vaekit.networks import VAEModule

#: address space of a command-line subprocess: `vaekit train` of a small model maps 0.82 GB at
#: its peak (VmPeak, torch 2.13 CPU, OMP_NUM_THREADS=1), so 2 GiB leaves it 2.4 times that, and
#: is far below what any of the hostile files below would take if it were read
SUBPROCESS_LIMIT = 2 * 2**30
#: address space of the subprocess reading a folder of 5 large PNGs: it maps 0.75 GB at its peak
#: decoding one image at a time, and ran out of memory here when it held all 5 at full size
PNG_LIMIT = 5 * 2**28
PNG_COUNT = 5
#: address space allowed to the property-based tests beyond what this process maps when they start
MEMORY_HEADROOM = 2**30
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SRC = Path(__file__).resolve().parents[1] / "src"


# ---------------------------------------------------------------------------- hostile files


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """The bytes of an .npy header (format 1.0) declaring ``shape`` of ``dtype``."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()


def repeated_deflate(first: bytes, block: bytes, n: int) -> bytes:
    """A raw deflate stream of ``first + block * (n - 1)``, made in milliseconds for any n: each
    block is compressed after a full flush, which resets the compressor, so its bytes repeat."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(first) + c.flush(zlib.Z_FULL_FLUSH)
    body = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    return head + body * (n - 1) + c.flush()


def zip_with(path: Path, name: str, deflated: bytes, size: int, crc: int = 0) -> Path:
    """A zip archive holding one deflated member ``name`` of ``size`` uncompressed bytes (< 4 GiB).

    A bomb's CRC is left 0: a reader finds out only after inflating all of it.
    """
    encoded = name.encode()
    sizes = (crc, len(deflated), size, len(encoded))
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, *sizes, 0)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, *sizes, 0, 0, 0, 0, 0, 0)
    offset = len(local) + len(encoded) + len(deflated)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(encoded), offset, 0)
    path.write_bytes(local + encoded + deflated + central + encoded + end)
    return path


def npz_bomb(path: Path, gib: int = 3) -> Path:
    """A ~3 MB .npz whose x.npy inflates to ``gib`` GiB of uint8 zeros (header and data agree)."""
    header = npy_header((gib * 2**30,), "|u1")
    block = bytes(2**20)
    deflated = repeated_deflate(header + block, block, gib * 1024)
    return zip_with(path, "x.npy", deflated, len(header) + gib * 2**30)


def png(path: Path, height: int, width: int, colour: tuple[int, ...] = (0,), idat: bool = True) -> Path:
    """A PNG of one colour (grey (v,) or RGB (r, g, b)), ``height`` x ``width``, made in well under a
    second whatever its size (its rows repeat, see :func:`repeated_deflate`); without ``idat`` only
    its header, which claims the size and holds no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">L", len(data)) + kind + data + struct.pack(">L", zlib.crc32(kind + data))

    row = b"\x00" + bytes(colour) * width  # filter 0, then the pixels
    ihdr = struct.pack(">2L5B", width, height, 8, 2 if len(colour) == 3 else 0, 0, 0, 0)
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", ihdr)]
    if idat:
        rows = max(1, 2**20 // len(row))  # rows per repeated block
        blocks, rest = divmod(height, rows)
        stream = row * rows
        adler = 1
        for _ in range(blocks):
            adler = zlib.adler32(stream, adler)
        deflated = repeated_deflate(stream, stream, blocks) if blocks else b""
        if rest:  # the last rows, as their own deflate stream's tail
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            tail = c.compress(row * rest) + c.flush()
            deflated = (deflated[:-2] if blocks else b"") + tail  # drop the empty final block
            adler = zlib.adler32(row * rest, adler)
        parts.append(chunk(b"IDAT", b"\x78\xda" + deflated + struct.pack(">L", adler)))
    parts.append(chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(parts))
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every path below ``folder`` and, for regular files, the SHA-256 of the bytes (links to
    devices and named pipes are named, never read)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        regular = p.is_file() and not p.is_symlink()
        out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if regular else "-"
    return out


# ---------------------------------------------------------------------------- memory limits


def run_limited(
    script: str, *args: str, limit: int = SUBPROCESS_LIMIT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a Python script in a subprocess limited to ``limit`` bytes of address space
    (a named pipe read by mistake shows as the timeout)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def memory_limit() -> Iterator[None]:
    """Lower this process's soft address-space limit to MEMORY_HEADROOM above its current size."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = mapped + MEMORY_HEADROOM
    resource.setrlimit(
        resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, mnist) -> Path:
    """A folder of hostile data files beside a finished and an interrupted run folder."""
    root = tmp_path_factory.mktemp("hostile")
    x = mnist.x_train[:60].numpy()
    np.save(root / "good.npy", x)
    vae = VAE(latent_dim=2, hidden=(8,), epochs=1, batch_size=30).fit(x)
    vae.save(root / "run")
    source = {"data": str(root / "good.npy"), "resize": None}
    VAE(latent_dim=2, hidden=(8,), epochs=1, batch_size=30).fit(
        x, checkpoint_dir=root / "interrupted", source=source
    )
    # .npy and .npz headers declaring 10^12 values in a few bytes, and an archive inflating to 3 GiB
    (root / "tera.npy").write_bytes(npy_header((10**6, 10**6)) + bytes(64))
    tera = npy_header((10**6, 10**6)) + bytes(64)
    zip_with(root / "tera.npz", "x.npy", zlib.compress(tera)[2:-4], len(tera), zlib.crc32(tera))
    npz_bomb(root / "bomb.npz")
    block = bytes(2**20)  # a member that is not an .npy array: numpy would read all 3 GiB as bytes
    zip_with(root / "raw.npz", "x_train", repeated_deflate(block, block, 3072), 3 * 2**30)
    # a PNG bomb (13500x13500 grey in 30 kB, over twice Pillow's limit), a 45-byte PNG claiming
    # 60000x60000, and one just over vaekit's limit (below Pillow's)
    png(root / "bomb" / "a.png", 13500, 13500)
    png(root / "claim" / "a.png", 60000, 60000, idat=False)
    png(root / "over" / "a.png", 8200, 8200, idat=False)
    # data that is not a regular file
    os.mkfifo(root / "fifo.npy")
    os.mkfifo(root / "fifo.csv")
    (root / "zero.csv").symlink_to("/dev/zero")
    (root / "fifo-images").mkdir()
    os.mkfifo(root / "fifo-images" / "a.png")
    return root


def _data_file_cases(root: Path) -> list[tuple[list[str], str]]:
    """`vaekit train --data X -o NEW` (and eval, encode) on each hostile data file, and the text
    its error line must hold."""
    files = {
        "tera.npy": "tera.npy: its header declares shape (1000000, 1000000) of float32",
        "tera.npz": "tera.npz[x]: its header declares shape (1000000, 1000000)",
        "bomb.npz": "bomb.npz[x]: its header declares 3,221,225,472 values",
        "raw.npz": "raw.npz[x_train]: not an .npy array",
        "bomb": "image of 182,250,000 pixels is over vaekit's limit of 67,108,864 pixels",
        "claim": "image of 3,600,000,000 pixels is over vaekit's limit",
        "over": "image of 8200x8200 pixels (HxW) is over vaekit's limit",
        "fifo.npy": "fifo.npy: is a named pipe (FIFO), not a regular file",
        "fifo.csv": "fifo.csv: is a named pipe (FIFO), not a regular file",
        "zero.csv": "/dev/zero: unknown file type",  # train resolves links; read_file: see below
        "fifo-images": "a.png: is a named pipe (FIFO), not a regular file",
        "x" * 300 + ".npy": "File name too long",
    }
    cases = [
        (["train", "--data", str(root / f), "-o", str(root / "new"), "--quiet"], m) for f, m in files.items()
    ]
    cases += [
        (["eval", str(root / "run"), "--data", str(root / "bomb.npz"), "--k", "2"], "(3,221,225,472 bytes)")
    ]
    encode = ["encode", str(root / "run"), "--data", str(root / "claim"), "-o", str(root / "z.npy")]
    return [*cases, (encode, "image of 3,600,000,000 pixels")]


def _copy_run(source: Path, run: Path, hostile_file: str, make) -> Path:
    """A copy of the run folder ``source`` whose ``hostile_file`` is replaced by ``make(path)``."""
    run.mkdir(parents=True)
    for p in source.iterdir():
        (run / p.name).write_bytes(p.read_bytes())
    (run / hostile_file).unlink()
    make(run / hostile_file)
    return run


def _zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _run_folder_cases(root: Path) -> list[tuple[list[str], str]]:
    """config.json, model.safetensors, checkpoint.safetensors and metrics.jsonl as links to
    /dev/zero and named pipes, config.json with absurd sizes, deep nesting and huge integers,
    and names over 255 bytes."""
    folder = root / "runs"
    record = json.loads((root / "run" / runs.CONFIG).read_text())

    def config(**change: object) -> str:
        params = {**record["params"], **{k: v for k, v in change.items() if k in record["params"]}}
        return json.dumps({**record, **{k: v for k, v in change.items() if k in record}, "params": params})

    contents = {
        "latent": (config(latent_dim=10**9), "latent_dim must be at most 65536"),
        "hidden": (config(hidden=[10**7]), "hidden must be at most 65536"),
        "samples": (config(samples=10**9), "samples must be at most 256"),
        "negative": (config(latent_dim=-3), "latent_dim must be positive"),
        "cond": (config(cond_dim=-3), "sizes from 0 to"),
        "width": (config(n_features_in=10**9, image_shape=None), "parameters"),
        "nested": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        "digits": (config().replace('"epochs": 1,', '"epochs": ' + "9" * 5000 + ","), "(4300 digits)"),
        "digits4000": (config().replace('"lr": 0.001', '"lr": ' + "9" * 4000), "an integer of 13288 bits"),
    }
    cases = []
    for hostile_file, kind, make, message in [
        (runs.CONFIG, "zero", _zero, "config.json: is a character device, not a regular file"),
        (runs.CONFIG, "fifo", os.mkfifo, "config.json: is a named pipe (FIFO), not a regular file"),
        (runs.WEIGHTS, "zero", _zero, "model.safetensors: is a character device, not a regular file"),
        (runs.WEIGHTS, "fifo", os.mkfifo, "model.safetensors: is a named pipe (FIFO), not a regular file"),
        *[(runs.CONFIG, name, lambda p, t=t: p.write_text(t), m) for name, (t, m) in contents.items()],
    ]:
        run = _copy_run(root / "run", folder / f"{hostile_file}-{kind}", hostile_file, make)
        cases.append((["sample", str(run), "-o", str(folder / "s.png")], message))
    for kind, make, message in [("zero", _zero, "character device"), ("fifo", os.mkfifo, "named pipe")]:
        run = _copy_run(root / "interrupted", folder / f"checkpoint-{kind}", runs.CHECKPOINT, make)
        cases.append((["train", "--resume", str(run), "--quiet"], f"{runs.CHECKPOINT}: is a {message}"))
    (folder / "metrics-zero").mkdir()
    _zero(folder / "metrics-zero" / runs.METRICS)
    plot = ["plot", "curves", str(folder / "metrics-zero"), "-o", str(folder / "c.png")]
    cases.append((plot, f"{runs.METRICS}: is a character device"))
    long = str(folder / ("r" * 300))
    for argv in [
        ["sample", long],
        ["train", "--resume", long],
        ["train", "-o", long, "--data", "mnist"],
        ["train", "-o", str(folder / "new" / ("r" * 300) / "x"), "--data", str(root / "good.npy")],
    ]:
        cases.append((argv, "File name too long"))
    return cases


def _flag_cases(root: Path) -> list[tuple[list[str], str]]:
    """The same absurd sizes as flags of `vaekit train`."""
    flags = {
        ("--latent-dim", "1000000000"): "latent_dim must be at most 65536",
        ("--hidden", "10000000"): "hidden must be at most 65536",
        ("--hidden", ",".join(["4"] * 1000)): "at most 256 layers",
        ("--samples", "1000000000"): "samples must be at most 256",
        ("--batch-size", "1000000000"): "samples x batch_size must be at most 131072",
        ("--latent-dim", "-3"): "latent_dim must be positive",
        ("--seed", "9" * 4000): "seed must be within int64",
        ("--hidden", "60000,60000"): "parameters",
    }
    train = ["train", "--data", str(root / "good.npy"), "-o", str(root / "new"), "--quiet"]
    return [([*train, *flag], message) for flag, message in flags.items()]


#: runs each argv (a JSON list of lists) through vaekit's main() in one process, one torch import
#: for all, and prints [exit code, stderr] per argv as JSON
CLI_CASES = """
import contextlib, io, json, sys
from vaekit.cli import main
results = []
for argv in json.loads(open(sys.argv[1]).read()):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def cli(hostile: Path) -> tuple[dict[str, list[tuple[list[str], str, int, str]]], bool]:
    """Every command-line case, run in one subprocess under SUBPROCESS_LIMIT: per group its
    (argv, expected text, exit code, stderr), and whether the folder is unchanged after them all."""
    groups = {
        "data": _data_file_cases(hostile),
        "runs": _run_folder_cases(hostile),
        "flags": _flag_cases(hostile),
    }
    before = snapshot(hostile)
    argv_file = hostile.parent / "cases.json"
    argv_file.write_text(json.dumps([argv for cases in groups.values() for argv, _ in cases]))
    done = run_limited(CLI_CASES, str(argv_file))
    assert done.returncode == 0, done.stderr[-3000:]
    results = iter(json.loads(done.stdout.splitlines()[-1]))
    found = {name: [(argv, text, *next(results)) for argv, text in cases] for name, cases in groups.items()}
    return found, snapshot(hostile) == before


def _assert_one_line_errors(cases: list[tuple[list[str], str, int, str]]) -> None:
    for argv, text, code, err in cases:
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("vaekit: error: "), (argv, code, err)
        assert text in lines[0] and len(lines[0]) < 600, (argv, lines[0])


# ---------------------------------------------------------------------------- command line


def test_hostile_data_files_get_one_line_and_leave_no_run_folder(cli) -> None:
    found, unchanged = cli
    _assert_one_line_errors(found["data"])
    assert unchanged  # no run folder, no output file, nothing rewritten


def test_hostile_run_folders_get_one_line_and_never_hang(cli) -> None:
    found, unchanged = cli
    _assert_one_line_errors(found["runs"])
    assert unchanged


def test_absurd_sizes_as_flags_get_one_line_before_any_folder_is_made(cli) -> None:
    found, unchanged = cli
    _assert_one_line_errors(found["flags"])
    assert unchanged


def test_a_data_link_to_dev_zero_is_refused_without_reading(hostile: Path) -> None:
    with pytest.raises(VaekitError, match=r"zero\.csv: is a character device, not a regular file"):
        read_file(hostile / "zero.csv")


PNG_FOLDER = (
    "import sys; from vaekit.data import read_file; "
    "rows, _, shape = read_file(sys.argv[1], resize=(28, 28)); rows = rows.to('cpu'); "
    "print(shape, tuple(rows.shape), rows[:, ::784].mul(255).round().unique().tolist())"
)


def test_a_folder_of_large_pngs_resized_to_28x28_decodes_one_image_at_a_time(tmp_path: Path) -> None:
    """RGB images of 6000x6000 (144 MB each as Pillow holds them, 120 kB each as files), resized
    as they are decoded: the process needs one of them at a time above what torch maps."""
    for i in range(PNG_COUNT):
        png(tmp_path / f"{i}.png", 6000, 6000, (51, 102, 153))
    done = run_limited(PNG_FOLDER, str(tmp_path), limit=PNG_LIMIT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == f"(3, 28, 28) ({PNG_COUNT}, 2352) [51.0, 102.0, 153.0]"


# ---------------------------------------------------------------------------- property-based


DTYPES = st.sampled_from(["|u1", "<f4", "<f8", "<i8", "|b1", "<u2"])
HUGE_SIDES = st.integers(2**15, 2**40)
SHAPES = st.lists(st.integers(0, 40) | HUGE_SIDES, min_size=1, max_size=4).map(tuple)


@SETTINGS
@given(shape=SHAPES, dtype=DTYPES, body=st.integers(0, 4096), member=st.booleans())
def test_generated_npy_headers_are_refused_unless_the_file_holds_their_data(
    memory_limit, tmp_path_factory, shape, dtype, body, member
):
    """Any declared shape is refused unless the file holds its bytes and it is within the limits;
    as an .npz member the archive's declared size bounds it."""
    folder = tmp_path_factory.mktemp("npy")
    raw = npy_header(shape, dtype) + bytes(body)
    if member:
        path = zip_with(folder / "x.npz", "x.npy", zlib.compress(raw)[2:-4], len(raw), zlib.crc32(raw))
    else:
        (path := folder / "x.npy").write_bytes(raw)
    count = int(np.prod(shape, dtype=object))
    nbytes = count * np.dtype(dtype).itemsize
    held = nbytes <= body and count <= limits.MAX_VALUES and nbytes <= limits.MAX_DATA_BYTES
    data = 2 <= len(shape) <= 4 and count > 0 and (len(shape) < 4 or shape[-1] in (1, 3, 4))
    if held and data:
        rows, _, _ = read_file(path)
        rows = rows.to("cpu")  # a uint8 .npy is memory-mapped (ByteRows): its float rows
        assert rows.numel() == count and not rows.any()
        return
    with pytest.raises(VaekitError) as info:
        read_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and len(message) < 400
    assert held or "header declares" in message


PIXELS = st.integers(1, 2**17)


@SETTINGS
@given(height=PIXELS, width=PIXELS, colour=st.sampled_from([(0,), (1, 2, 3)]))
def test_generated_png_sizes_over_the_pixel_limit_are_refused_from_the_header(
    memory_limit, tmp_path_factory, height, width, colour
):
    folder = tmp_path_factory.mktemp("png")
    png(folder / "a.png", height, width, colour, idat=False)  # a header that claims, no pixels
    with pytest.raises(VaekitError) as info:
        read_file(folder)
    message = str(info.value)
    assert "\n" not in message and str(folder / "a.png") in message
    if height * width > limits.MAX_IMAGE_PIXELS:
        assert "over vaekit's limit of 67,108,864 pixels" in message
    else:
        assert "not a readable image" in message  # truncated: no pixel data


SIZES = st.integers(-5, 70) | st.integers(2**15, 2**70) | st.sampled_from([10**9, 10**4000, -(10**4000)])


@SETTINGS
@given(latent=SIZES, hidden=st.lists(SIZES, max_size=3), samples=SIZES, batch=SIZES)
def test_generated_config_sizes_are_refused_beyond_their_maximum(
    memory_limit, latent, hidden, samples, batch
):
    hidden = tuple(hidden)
    valid_model = 1 <= latent <= limits.MAX_WIDTH and all(1 <= h <= limits.MAX_WIDTH for h in hidden)
    valid_train = (
        1 <= samples <= limits.MAX_SAMPLES and batch >= 1 and samples * batch <= limits.MAX_DRAWS_PER_STEP
    )
    for make, valid in [
        (lambda: ModelConfig(latent_dim=latent, hidden=hidden), valid_model),
        (lambda: TrainConfig(samples=samples, batch_size=batch), valid_train),
    ]:
        if valid:
            make()
            continue
        with pytest.raises(VaekitError) as info:
            make()
        assert "\n" not in str(info.value) and len(str(info.value)) < 200


def _mlp_parameters(d: int, hidden: tuple[int, ...], latent: int, cond: int, k: int = 1) -> int:
    """Weights of the MLP VAE, counted layer by layer (an oracle independent of the meta build)."""
    enc = [d + cond, *hidden]
    dec = [latent + cond, *hidden[::-1]]
    count = sum((a + 1) * b for a, b in itertools.pairwise(enc))
    count += 2 * (enc[-1] + 1) * latent  # mu and logvar heads
    count += sum((a + 1) * b for a, b in itertools.pairwise(dec))
    return count + (dec[-1] + 1) * k * d


@SETTINGS
@given(
    d=st.integers(1, 10**12),
    hidden=st.lists(st.integers(1, limits.MAX_WIDTH), max_size=3),
    latent=st.integers(1, limits.MAX_WIDTH),
    cond=st.integers(0, 10**6),
)
def test_generated_networks_are_refused_by_their_parameter_count_before_allocating(
    memory_limit, d, hidden, latent, cond
):
    config = ModelConfig(latent_dim=latent, hidden=tuple(hidden))
    count = _mlp_parameters(d, tuple(hidden), latent, cond)
    state = torch.get_rng_state()
    if d > limits.MAX_VALUES or cond > limits.MAX_VALUES or count > limits.MAX_PARAMETERS:
        with pytest.raises(VaekitError, match=r"parameters|MAX_VALUES"):
            VAEModule(d, config, cond)
        assert torch.equal(torch.get_rng_state(), state)  # counting draws no random numbers
    elif count <= 10**6:  # small enough to build for real
        assert sum(p.numel() for p in VAEModule(d, config, cond).parameters()) == count
    else:  # within the limit but large: counted on the meta device, not built
        limits.check_network(VAEModule, d, config, cond, None)
        assert torch.equal(torch.get_rng_state(), state)


def test_the_parameter_count_draws_no_random_numbers() -> None:
    """A seeded model is the same with the count before it: the meta-device build uses no RNG."""
    torch.manual_seed(0)
    state = torch.get_rng_state()
    limits.check_network(VAEModule, 784, ModelConfig(), 0, None)
    assert torch.equal(torch.get_rng_state(), state)


HOSTILE_VALUES = st.sampled_from(
    [10**9, -3, 0, 10**4000, -(10**4000), [10**7], [-1], 1e308, "20", None, [[[]]]]
)
FIELDS = st.sampled_from(
    ["latent_dim", "hidden", "samples", "batch_size", "n_features_in", "cond_dim", "image_shape"]
)


@SETTINGS
@given(field=FIELDS, value=HOSTILE_VALUES)
def test_generated_config_json_values_are_refused_in_one_line(
    memory_limit, hostile, tmp_path_factory, field, value
):
    run = tmp_path_factory.mktemp("cfg")
    record = json.loads((hostile / "run" / runs.CONFIG).read_text())
    if field in record["params"]:
        record["params"][field] = value
    else:
        record[field] = value
    if field == "n_features_in":
        record["image_shape"] = None  # else refused as not matching it, before the network is counted
    (run / runs.CONFIG).write_text(json.dumps(record))
    (run / runs.WEIGHTS).write_bytes((hostile / "run" / runs.WEIGHTS).read_bytes())
    if (field, value) in (("cond_dim", 0), ("image_shape", None)):  # what the saved model holds anyway
        assert VAE.load(run).module_.cond_dim == 0
        return
    with pytest.raises(VaekitError) as info:
        VAE.load(run)
    message = str(info.value)
    assert "\n" not in message and f"{run / runs.CONFIG}: " in message
    # VAE._build prints n_features_in in full when it is not positive (its message, not limits')
    assert len(message) < 500 or (field, value) == ("n_features_in", -(10**4000))


# ---------------------------------------------------------------------------- storage


def test_check_writable_in_two_threads_on_one_folder(tmp_path: Path) -> None:
    """Each call probes its own name: no thread removes the other's probe (was 93 failures in 6000)."""
    failures: list[Exception] = []

    def probe() -> None:
        for _ in range(300):
            try:
                storage.check_writable(tmp_path)
            except Exception as e:  # any failure counts
                failures.append(e)

    threads = [threading.Thread(target=probe) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("reader", [storage.read_json, storage.read_jsonl, storage.load_tensors])
def test_readers_refuse_what_is_not_a_regular_file_without_reading(tmp_path: Path, reader) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    for name, kind in [("fifo", "named pipe"), ("zero", "character device"), (".", "folder")]:
        with pytest.raises(VaekitError, match=f"is a {kind}"):
            reader(tmp_path / name)


def test_readers_refuse_files_over_their_size_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_JSON_BYTES", 10)
    (tmp_path / "c.json").write_text('{"a": "0123456789"}')
    with pytest.raises(VaekitError, match="holds 19 bytes, more than the 10"):
        storage.read_json(tmp_path / "c.json")
