"""Decode latency of ``vaekit explore``: a latent POSTed to /api/decode until its PNG is read back.

Starts the explorer's server on 127.0.0.1 in this process (a thread), then sends N decode requests
of one latent each (seeded draws from the prior), as the page does while a slider is dragged: one
at a time, over one kept-alive HTTP/1.1 connection, and again with a new connection per request.
Prints the median, 95th percentile and largest wall time per request, in milliseconds, and the
part of it spent decoding and writing the PNG (the same call without HTTP).

Without ``--run`` the model is the default one (784-400-20, Bernoulli), fitted for one epoch on
2,000 MNIST digits: the latency does not depend on the weights' values.

    python benchmarks/explore_latency.py [--run RUN] [-n 500] [--threads T]
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from vaekit import VAE
from vaekit.data import load_mnist
from vaekit.explore import Explorer, ExplorerServer


def default_run(folder: Path) -> Path:
    """The default model, fitted for one epoch on 2,000 MNIST digits, saved as a run folder."""
    mnist = load_mnist()
    VAE(epochs=1).fit(mnist.x_train[:2000], source={"data": "mnist", "resize": None}).save(folder)
    return folder


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return (
        f"median {np.median(a):.2f} ms, p95 {np.percentile(a, 95):.2f} ms, max {a.max():.2f} ms "
        f"(n = {len(a)})"
    )


def timed_requests(port: int, bodies: list[bytes], keep_alive: bool) -> list[float]:
    """Wall milliseconds of each POST /api/decode, from sending it to reading the whole PNG."""
    times = []
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for body in bodies:
        if not keep_alive:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port)
        start = time.perf_counter()
        conn.request("POST", "/api/decode", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        png = response.read()
        times.append((time.perf_counter() - start) * 1000)
        assert response.status == 200 and png.startswith(b"\x89PNG"), png[:200]
    conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder (default: the default model, see above)")
    parser.add_argument("-n", type=int, default=500, help="timed requests per setting (default: 500)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or default_run(Path(tmp) / "run")
        explorer = Explorer.from_run(run, n=1000)
    rng = np.random.default_rng(0)
    bodies = [
        json.dumps({"z": [rng.normal(size=explorer.latent_dim).tolist()]}).encode() for _ in range(args.n)
    ]
    if explorer.n_classes is not None:
        bodies = [json.dumps({**json.loads(b), "y": 0}).encode() for b in bodies]
    server = ExplorerServer(explorer, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        timed_requests(server.port, bodies[:50], keep_alive=True)  # warm-up
        kept = timed_requests(server.port, bodies, keep_alive=True)
        fresh = timed_requests(server.port, bodies, keep_alive=False)
    finally:
        server.shutdown()
        server.server_close()
    direct = []
    for body in bodies:
        start = time.perf_counter()
        explorer.decode(body)
        direct.append((time.perf_counter() - start) * 1000)
    facts = explorer.facts["params"]
    print(
        f"model: {facts['arch']} {explorer.vae.n_features_in_}-{'-'.join(map(str, facts['hidden']))}-"
        f"{explorer.latent_dim} "
        f"{facts['likelihood']}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"POST /api/decode, one kept-alive connection: {percentiles(kept)}")
    print(f"POST /api/decode, a new connection each:     {percentiles(fresh)}")
    print(f"decode + PNG without HTTP (Explorer.decode): {percentiles(direct)}")


if __name__ == "__main__":
    main()
