"""``vaekit explore``: one local web page to walk a trained model's latent space.

The server is the standard library's ``ThreadingHTTPServer`` (no web framework to install; the
page needs five small endpoints). Everything it shows is read once, when it starts: the model,
the posterior means of the test split, the run's config, metrics and eval numbers. Requests never
name files: the paths are the page and the endpoints below, anything else is a 404, so no request
reads a file, inside the run folder or out of it.

=======  ===================  ==========================================================
GET      /                    the page (``explore.html``, package data; inline JS and CSS)
GET      /api/run             the run's facts: model, data, epochs, curves, eval numbers, sliders
GET      /api/points          the map: 2-D coordinates and labels of the test posterior means
GET      /api/point/I         point I: its posterior mean and label or condition vector
GET      /api/point/I.png     point I's image beside its reconstruction
POST     /api/decode          ``{"z": [[z_1, ..., z_J], ...], "y": label | [c floats] | null}``
                              -> PNG of the decoder means E[x|z, y] in a row
=======  ===================  ==========================================================

A bad request gets a 4xx status and a one-line plain-text reason; the server keeps serving.
"""

from __future__ import annotations

import importlib.resources
import io
import ipaddress
import json
import math
import re
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch

from vaekit import runs
from vaekit.conditions import as_condition
from vaekit.config import SPLIT_SEED
from vaekit.data import load_data
from vaekit.errors import VaekitError
from vaekit.estimator import VAE
from vaekit.evaluate import latent_usage
from vaekit.plots import image_grid, principal_components

PAGE = "explore.html"  # the page, shipped beside this module as package data
MAP_POINTS = 5000  # test examples on the map (the first ones of the test split)
MAX_SLIDERS = 12  # latent dimensions with a slider: all of a small latent, else the first by KL
MAX_ABS_Z = 100.0  # largest |z_j| decoded: the prior N(0, 1) puts mass 1e-2000 beyond it
MAX_ROWS = 64  # latents per decode request (an interpolation strip is one request)
MAX_BODY = 1 << 20  # bytes of a request body
DRAIN_BODY = 8 * MAX_BODY  # bytes of a too large body read and dropped before the answer
LOOPBACK_NAMES = ("localhost",)


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Response:
    """What the server sends: status, content type and body."""

    body: bytes
    content_type: str
    status: HTTPStatus = HTTPStatus.OK


def _json(obj: Any) -> Response:
    return Response(json.dumps(_finite(obj), allow_nan=False).encode(), "application/json")


def _finite(obj: Any) -> Any:
    """obj with NaN and infinities replaced by None: the page's JSON.parse allows neither."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _png(rows: np.ndarray, image_shape: tuple[int, ...]) -> Response:
    """Rows ``(n, C*H*W)`` in [0, 1] as one PNG, side by side (:func:`vaekit.plots.image_grid`)."""
    buffer = io.BytesIO()
    image_grid(rows, image_shape, len(rows)).save(buffer, format="PNG")
    return Response(buffer.getvalue(), "image/png")


class Explorer:
    """What the page shows of one model, and the decoding behind it.

    vae : a fitted model of images (``image_shape_`` set)
    x : ``(m, d)`` test rows for the map, in the model's data space
    y : their labels ``(m,)`` or condition vectors ``(m, c)``; needed by a conditional model
    facts : JSON-able facts about the run (config, epochs, metrics rows, eval numbers)
    """

    def __init__(self, vae: VAE, x: np.ndarray, y: np.ndarray | None, facts: dict[str, Any]) -> None:
        if vae.image_shape_ is None:
            raise VaekitError("explore shows images, and this model's data are not images")
        self.vae, self.shape = vae, vae.image_shape_
        self.x = np.asarray(x, dtype=np.float32)
        y = None if y is None else np.asarray(y)
        self.y = y if vae.conditional else None  # the model's conditions
        self.labels = y if y is not None and y.ndim == 1 else None  # the map's colours
        self.lock = threading.Lock()  # one decode at a time: torch's threads are shared anyway
        module = vae.module_
        self.latent_dim, self.cond_dim, self.n_classes = module.latent_dim, module.cond_dim, vae.n_classes_
        self.mu = vae.transform(self.x, self.y)  # (m, J) posterior means
        cond = as_condition(self.y, len(self.x), self.cond_dim, self.n_classes) if self.cond_dim else None
        kl = np.asarray(latent_usage(module, torch.from_numpy(self.x), cond)["kl_per_dim"])  # (J,) nats
        self.sliders = [int(j) for j in np.argsort(-kl, kind="stable")[:MAX_SLIDERS]]
        if self.latent_dim >= 2:
            self.coords = self.mu if self.latent_dim == 2 else principal_components(self.mu, 2)
        else:  # a 1-D latent: its value across, nothing down
            self.coords = np.concatenate([self.mu, np.zeros_like(self.mu)], axis=1)
        self.axes = (
            ["z_1", "z_2"] if self.latent_dim <= 2 else ["principal component 1", "principal component 2"]
        )
        self.facts = {
            **facts,
            "latent_dim": self.latent_dim,
            "image_shape": list(self.shape),
            "conditional": bool(self.cond_dim),
            "n_classes": self.n_classes,
            "classes": (vae.source_ or {}).get("classes"),  # the labels' names (an image folder's)
            "cond_dim": self.cond_dim,
            "n_points": len(self.x),
            "kl_per_dim": kl.tolist(),
            "sliders": self.sliders,
            "axes": self.axes,
            "limits": {"abs_z": MAX_ABS_Z, "rows": MAX_ROWS},
        }
        self.page = importlib.resources.files("vaekit").joinpath(PAGE).read_bytes()
        self.get_routes: dict[str, Callable[[], Response]] = {
            "/": lambda: Response(self.page, "text/html; charset=utf-8"),
            "/api/run": lambda: _json(self.facts),
            "/api/points": self.points,
        }
        self.post_routes: dict[str, Callable[[bytes], Response]] = {"/api/decode": self.decode}

    @classmethod
    def from_run(cls, run: str | Path, data: str | None = None, n: int = MAP_POINTS) -> Explorer:
        """The explorer of a run folder: its model, and the first n rows of its data's test split.

        data : a data set or file whose test split is mapped (default: the one the run trained on,
            from its config, read as ``vaekit train`` read it)
        """
        run = Path(run)
        vae = VAE.load(run)
        if vae.image_shape_ is None:
            raise VaekitError(f"{run}: the model's data are not images, so there is nothing to explore")
        source = vae.source_ or {}
        spec = data or source.get("data")
        if not isinstance(spec, str):
            raise VaekitError(f"{run / runs.CONFIG}: does not record the training data; pass --data")
        resize = source.get("resize")
        split = load_data(spec, resize=tuple(resize) if resize else None, seed=vae.seed + SPLIT_SEED)  # type: ignore[arg-type]
        x, y = split.x_test[:n].numpy(), None if split.y_test is None else split.y_test[:n].numpy()
        if vae.conditional and y is None:
            raise VaekitError(f"{spec}: has no labels, but the model is conditional and needs them")
        folder = runs.Run(run)
        history = folder.read_metrics() if folder.has(runs.METRICS) else []
        facts = {
            "run": run.resolve().name,
            "data": spec,
            "params": vae.get_params(),  # as the run's config records them
            "epochs": len(history),
            "history": history,
            "test_elbo": history[-1].get("test_elbo") if history else None,
            "eval": folder.read_json(runs.EVAL) if folder.has(runs.EVAL) else None,
        }
        return cls(vae, x, y, facts)

    # ------------------------------------------------------------------ endpoints

    def handle(self, method: str, path: str, body: bytes = b"") -> Response:
        """The response to one request; a bad one raises :class:`RequestError`."""
        path = urlsplit(path).path  # not unquoted: '%2e%2e' stays a name no route has
        if method == "GET" and path in self.get_routes:
            return self.get_routes[path]()
        if method == "POST" and path in self.post_routes:
            return self.post_routes[path](body)
        point = re.fullmatch(r"/api/point/(\d{1,9})(\.png)?", path)
        if method == "GET" and point:
            return self.point(int(point[1]), png=bool(point[2]))
        known = {*self.get_routes, *self.post_routes} if not point else {path}
        if path in known:
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path}: does not take {method}")
        raise RequestError(HTTPStatus.NOT_FOUND, f"{path}: no such page; the page is at /")

    def points(self) -> Response:
        """The map: ``coords`` (m, 2) and ``labels`` (m,) or null."""
        labels = None if self.labels is None else self.labels.tolist()
        return _json({"coords": np.round(self.coords, 4).tolist(), "labels": labels, "axes": self.axes})

    def point(self, i: int, png: bool) -> Response:
        """Point i: its posterior mean and condition (JSON), or its image and reconstruction (PNG)."""
        if i >= len(self.x):
            raise RequestError(HTTPStatus.NOT_FOUND, f"no point {i}; the map has points 0..{len(self.x) - 1}")
        y = self.y[i : i + 1] if self.y is not None else None
        if png:
            with self.lock:
                recon = self.vae.inverse_transform(self.mu[i : i + 1], y)
            return _png(np.concatenate([self.x[i : i + 1], recon]), self.shape)
        cond = self.y[i].tolist() if self.y is not None and self.y.ndim == 2 else None
        label = int(self.labels[i]) if self.labels is not None else None
        return _json({"index": i, "z": self.mu[i].tolist(), "label": label, "cond": cond})

    def decode(self, body: bytes) -> Response:
        """Decoder means of the request's latents (and condition) as one PNG row."""
        z, y = self.parse_decode(body)
        with self.lock:
            return _png(self.vae.inverse_transform(z, y), self.shape)

    def parse_decode(self, body: bytes) -> tuple[np.ndarray, Any]:
        """The latents ``(n, J)`` float32 and condition (label, ``(n, c)`` vectors or None) of a request."""
        try:
            request = json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise _bad(f"body: not JSON ({' '.join(str(e).split())})") from e
        if not isinstance(request, dict) or "z" not in request:
            raise _bad('body: expected a JSON object {"z": [[...], ...], "y": ...}')
        unknown = sorted(set(request) - {"z", "y"})
        if unknown:
            raise _bad(f"body: unknown keys {unknown}; expected z and y")
        rows = request["z"]
        if isinstance(rows, list) and rows and not isinstance(rows[0], list):
            rows = [rows]  # one latent
        if not isinstance(rows, list) or not 0 < len(rows) <= MAX_ROWS:
            raise _bad(f"z: expected a list of 1 to {MAX_ROWS} latents")
        for row in rows:
            if not isinstance(row, list) or len(row) != self.latent_dim:
                got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                raise _bad(f"z: each latent has {self.latent_dim} numbers; got {got}")
            _check_numbers(row, "z", MAX_ABS_Z)
        return np.asarray(rows, dtype=np.float32), self._condition(request.get("y"), len(rows))

    def _condition(self, y: Any, n: int) -> Any:
        """The request's y as :meth:`VAE.inverse_transform` takes it, checked against the model."""
        if not self.cond_dim:
            if y is not None:
                raise _bad("y: this model is not conditional; leave y out")
            return None
        if self.n_classes is not None:
            if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < self.n_classes:
                raise _bad(f"y: expected a class label 0..{self.n_classes - 1}, got {_short(y)}")
            return y
        if not isinstance(y, list) or len(y) != self.cond_dim:
            raise _bad(f"y: expected a condition vector of {self.cond_dim} numbers, got {_short(y)}")
        _check_numbers(y, "y", float(np.finfo(np.float32).max))
        return np.tile(np.asarray(y, dtype=np.float32), (n, 1))


def _bad(reason: str) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, reason)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_numbers(values: list[Any], what: str, bound: float) -> None:
    """Every value a finite JSON number (not a boolean) of magnitude at most bound."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _bad(f"{what}: holds {_short(v)}, not a number")
        if not abs(v) <= bound:  # also catches 1e999, which json reads as inf
            raise _bad(f"{what}: holds {_short(v)}; values must be finite and at most {bound:g} in size")


# ---------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    """Transport only: reads a request, passes it to the Explorer, writes its response."""

    protocol_version = "HTTP/1.1"  # keep-alive: the page's decode requests reuse one connection
    server: ExplorerServer

    def setup(self) -> None:
        super().setup()
        # headers and body leave in two writes; with Nagle's algorithm the second waits for the
        # client's delayed ACK of the first, 40 ms on Linux, on every kept-alive request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._serve("GET", b"")

    def do_POST(self) -> None:
        try:
            body = self._body()
        except RequestError as e:
            self.close_connection = True  # the unread body would be taken for the next request
            self._send(Response(f"{e}\n".encode(), "text/plain; charset=utf-8", e.status))
            return
        self._serve("POST", body)

    def _not_allowed(self) -> None:
        self._serve(self.command, b"")

    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "body: send a Content-Length")
        if not length.isdigit():
            raise _bad(f"body: Content-Length {length!r} is not a number of bytes")
        if int(length) > MAX_BODY:
            # read (and drop) a body up to a few times the limit first: a socket closed on unread
            # bytes is reset, and the client would see that instead of the answer
            remaining = min(int(length), DRAIN_BODY)
            while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
                remaining -= len(chunk)
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body: larger than {MAX_BODY} bytes")
        return self.rfile.read(int(length))

    def _serve(self, method: str, body: bytes) -> None:
        host = self.headers.get("Host")
        try:
            if (
                self.server.allowed_hosts is not None
                and host is not None
                and host not in self.server.allowed_hosts
            ):
                raise RequestError(  # a page of another site reaching us through DNS rebinding
                    HTTPStatus.FORBIDDEN, f"Host {host!r}: this server answers only to its loopback address"
                )
            response = self.server.explorer.handle(method, self.path, body)
        except RequestError as e:
            response = Response(f"{e}\n".encode(), "text/plain; charset=utf-8", e.status)
        except Exception as e:  # one failed request must not stop the server
            print(f"vaekit explore: {method} {self.path}: {type(e).__name__}: {e}", file=sys.stderr)
            reason = f"internal error: {type(e).__name__}: {' '.join(str(e).split())}\n"
            response = Response(
                reason.encode(), "text/plain; charset=utf-8", HTTPStatus.INTERNAL_SERVER_ERROR
            )
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        # the page fetches nothing but this server: no CDN, no fonts, no analytics
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers of the body, without it
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)


class ExplorerServer(ThreadingHTTPServer):
    """The HTTP server of one :class:`Explorer` (one thread per connection)."""

    daemon_threads = True

    def __init__(self, explorer: Explorer, host: str, port: int, verbose: bool = False) -> None:
        self.address_family = _family(host)
        try:
            super().__init__((host, port), _Handler)
        except OSError as e:
            raise VaekitError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from e
        self.explorer, self.verbose = explorer, verbose
        self.port = int(self.server_address[1])
        # requests from a page loaded through the loopback address name it (or localhost) as Host
        names = ("127.0.0.1", "localhost", "[::1]")
        self.allowed_hosts = {f"{n}:{self.port}" for n in names} if is_loopback(host) else None
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def is_loopback(host: str) -> bool:
    """Whether host names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_warning(host: str, port: int) -> str | None:
    """The warning to print when the server listens beyond this machine, else None."""
    if is_loopback(host):
        return None
    return (
        f"vaekit: warning: listening on {host}, not loopback: anyone who can reach this machine "
        f"on port {port} can open the page and decode with the model"
    )
