"""``vaekit explore``: the endpoints over HTTP, every kind of bad request, the command, and the page
driven in headless Chromium (Debian's chromium and chromium-driver, through Selenium).

Decoded pictures are compared pixel by pixel with :meth:`VAE.inverse_transform` of the same latent:
a PNG holds 8-bit values, so they agree to half a grey level.
"""

import _thread
import builtins
import http.client
import io
import json
import os
import shutil
import signal
import threading
import time
import webbrowser
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import VAE, runs, storage
from vaekit.cli import main
from vaekit.conditions import as_condition
from vaekit.evaluate import latent_usage
from vaekit.explore import MAX_ABS_Z, MAX_BODY, MAX_ROWS, Explorer, ExplorerServer, host_warning
from vaekit.plots import PAD, SCALE, principal_components

HALF_LEVEL = 0.5 / 255 + 1e-6  # an 8-bit pixel is within this of the value it encodes


def _u8(x):
    return (np.asarray(x) * 255).round().astype(np.uint8)


def make_run(folder, x_train, x_test, y_train=None, y_test=None, **params):
    """Fit a VAE for 1 epoch on x_train (8-bit images), save it as a run folder with its metrics,
    its data in an .npz beside it (the run's recorded data), and return the folder."""
    folder.mkdir(parents=True)
    data = folder.parent / f"{folder.name}.npz"
    arrays = {"x_train": x_train, "x_test": x_test}
    if y_train is not None:
        arrays.update(y_train=y_train, y_test=y_test)
    np.savez(data, **arrays)
    vae = VAE(epochs=1, batch_size=100, **params)
    vae.fit(x_train, y_train, X_test=x_test, y_test=y_test, source={"data": str(data), "resize": None})
    vae.save(folder)
    storage.write_jsonl(folder / runs.METRICS, vae.history_)
    return folder


@pytest.fixture(scope="module")
def digits(mnist):
    """300 train and 100 test MNIST digits (8-bit, 28x28) and their labels."""
    images = lambda x: _u8(x.numpy().reshape(-1, 28, 28))  # noqa: E731
    return images(mnist.x_train[:300]), images(mnist.x_test[:100]), mnist.y_train[:300], mnist.y_test[:100]


@pytest.fixture(scope="module")
def colour():
    """Seeded 8x8 RGB images: smooth blobs of random colour (300 train, 60 test), and 3-vectors."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:8, 0:8]
    centres, hues = rng.uniform(1, 7, (360, 2)), rng.uniform(0, 1, (360, 3))
    blobs = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 6)
    images = _u8(blobs[..., None] * hues[:, None, None, :])  # (n, 8, 8, 3)
    vectors = rng.normal(size=(360, 3)).astype(np.float32)
    return images[:300], images[300:], vectors[:300], vectors[300:]


@pytest.fixture(scope="module")
def run20(tmp_path_factory, digits):
    """The default model, 784-400-20 Bernoulli MLP, after one epoch on 300 digits."""
    folder = tmp_path_factory.mktemp("runs") / "mlp20"
    return make_run(folder, *digits, seed=1)  # unconditional: the labels only colour the map


VARIANTS = {
    "mlp-2d-bernoulli": lambda d, c: (d, dict(latent_dim=2, hidden=(64,))),
    "conv-colour-gaussian": lambda d, c: (
        (c[0], c[1]),
        dict(arch="conv", likelihood="gaussian", latent_dim=3),
    ),
    "mlp-labels-logistic": lambda d, c: (
        d,
        dict(conditional=True, latent_dim=4, hidden=(64,), likelihood="discretized_logistic"),
    ),
    "mlp-vectors-fixed": lambda d, c: (c, dict(conditional=True, latent_dim=2, likelihood="gaussian_fixed")),
}


@pytest.fixture(scope="module")
def variant_runs(tmp_path_factory, digits, colour):
    """A run of each kind vaekit trains, by name (see VARIANTS), plus the default one."""
    root = tmp_path_factory.mktemp("variants")
    made = {}
    for name, make in VARIANTS.items():
        data, params = make(digits, colour)
        made[name] = make_run(root / name, *data, **params)
    return made


@contextmanager
def serving(explorer):
    server = ExplorerServer(explorer, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def request(server, method, path, body=None, headers=None):
    """(status, content type, body bytes) of one raw request: the path is sent as written."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        conn.close()


def tiles(pixels, shape, n):
    """The n (C*H*W) rows in [0, 1] of a one-row image_grid picture, (H', W') or (H', W', channels)."""
    c, h, w = shape
    a = np.asarray(pixels, dtype=np.float64)
    a = (a[..., None] if a.ndim == 2 else a)[::SCALE, ::SCALE, :c] / 255  # grey pictures: channel 0
    return np.stack(
        [
            a[PAD : PAD + h, PAD + i * (w + PAD) : PAD + i * (w + PAD) + w].transpose(2, 0, 1).reshape(-1)
            for i in range(n)
        ]
    )


def png_rows(data, shape, n):
    return tiles(np.asarray(Image.open(io.BytesIO(data))), shape, n)


def decode_body(z, y=None):
    body = {"z": np.asarray(z).tolist()}
    if y is not None:
        body["y"] = y
    return json.dumps(body).encode()


# ---------------------------------------------------------------------------- HTTP endpoints


@pytest.mark.parametrize("name", ["default", *VARIANTS])
def test_endpoints_show_the_models_own_numbers(name, run20, variant_runs):
    run = run20 if name == "default" else variant_runs[name]
    explorer = Explorer.from_run(run)
    vae = VAE.load(run)
    x, y = explorer.x, explorer.y
    shape, J = vae.image_shape_, vae.latent_dim
    with serving(explorer) as server:
        status, kind, body = request(server, "GET", "/api/run")
        facts = json.loads(body)
        assert (status, kind) == (200, "application/json")
        history = storage.read_jsonl(run / runs.METRICS)
        assert facts["epochs"] == 1 and facts["test_elbo"] == pytest.approx(history[-1]["test_elbo"])
        assert facts["latent_dim"] == J and facts["image_shape"] == list(shape)
        assert facts["conditional"] == vae.conditional and facts["n_classes"] == vae.n_classes_
        # sliders: the dimensions by decreasing KL, as latent_usage measures it on the mapped rows
        cond = as_condition(y, len(x), vae.module_.cond_dim, vae.n_classes_) if vae.conditional else None
        kl = np.asarray(latent_usage(vae.module_, torch.from_numpy(x), cond)["kl_per_dim"])
        np.testing.assert_allclose(facts["kl_per_dim"], kl, rtol=1e-6)
        assert facts["sliders"] == list(np.argsort(-kl, kind="stable")[: len(facts["sliders"])])
        assert len(facts["sliders"]) == min(J, 12)

        # the map: posterior means of the test rows (their first two principal components above 2-D)
        points = json.loads(request(server, "GET", "/api/points")[2])
        mu = vae.transform(x, y)
        expected = mu if J == 2 else principal_components(mu, 2)
        np.testing.assert_allclose(points["coords"], expected, atol=1e-4)
        with np.load(run.parent / f"{run.name}.npz") as data:  # labels colour the map; vectors do not
            labels = data["y_test"] if "y_test" in data and data["y_test"].ndim == 1 else None
        assert points["labels"] == (None if labels is None else labels.tolist())

        # a point: its mean, and its picture = the image beside its reconstruction
        point = json.loads(request(server, "GET", "/api/point/5")[2])
        np.testing.assert_allclose(point["z"], mu[5], rtol=0, atol=0)
        yi = y[5:6] if y is not None else None
        status, kind, png = request(server, "GET", "/api/point/5.png")
        assert (status, kind) == (200, "image/png")
        shown = png_rows(png, shape, 2)
        assert np.abs(shown[0] - np.clip(x[5], 0, 1)).max() <= HALF_LEVEL
        assert np.abs(shown[1] - np.clip(vae.reconstruct(x[5:6], yi)[0], 0, 1)).max() <= HALF_LEVEL

        # decoding: three latents in one row, equal to inverse_transform
        z = np.random.default_rng(2).normal(size=(3, J)) * 2
        label = 7 if vae.n_classes_ else None
        cond_y = label if label is not None else (y[0].tolist() if vae.conditional else None)
        status, kind, png = request(server, "POST", "/api/decode", decode_body(z, cond_y))
        assert (status, kind) == (200, "image/png")
        y_arg = np.tile(y[0], (3, 1)) if vae.conditional and label is None else label
        decoded = np.clip(vae.inverse_transform(z.astype(np.float32), y_arg), 0, 1)
        assert np.abs(png_rows(png, shape, 3) - decoded).max() <= HALF_LEVEL
        if vae.conditional:  # the condition matters: another one decodes another picture
            other = 2 if label is not None else (-y[0]).tolist()
            png2 = request(server, "POST", "/api/decode", decode_body(z, other))[2]
            assert np.abs(png_rows(png2, shape, 3) - decoded).max() > 2 / 255

        status, kind, page = request(server, "GET", "/")
        assert status == 200 and kind.startswith("text/html") and b"vaekit explore" in page


def _j(latent):
    return [0.0] * latent


BAD_REQUESTS = [
    # (name, method, path, body, headers, status, words in the reason)
    ("short latent", "POST", "/api/decode", {"z": [0.0, 1.0]}, None, 400, "20 numbers; got 2"),
    ("long latent", "POST", "/api/decode", {"z": [_j(21)]}, None, 400, "got 21"),
    ("ragged rows", "POST", "/api/decode", {"z": [_j(20), _j(19)]}, None, 400, "got 19"),
    ("no rows", "POST", "/api/decode", {"z": []}, None, 400, "1 to"),
    ("too many rows", "POST", "/api/decode", {"z": [_j(20)] * (MAX_ROWS + 1)}, None, 400, "1 to"),
    ("NaN", "POST", "/api/decode", b'{"z": [[NaN' + b", 0" * 19 + b"]]}", None, 400, "NaN"),
    ("Infinity", "POST", "/api/decode", b'{"z": [-Infinity' + b", 0" * 19 + b"]}", None, 400, "Infinity"),
    ("overflowing number", "POST", "/api/decode", b'{"z": [1e999' + b", 0" * 19 + b"]}", None, 400, "finite"),
    ("huge number", "POST", "/api/decode", {"z": [1e300, *_j(19)]}, None, 400, f"at most {MAX_ABS_Z:g}"),
    ("huge integer", "POST", "/api/decode", b'{"z": [' + b"9" * 5000 + b"]}", None, 400, "not JSON"),
    ("boolean", "POST", "/api/decode", {"z": [True, *_j(19)]}, None, 400, "not a number"),
    ("string", "POST", "/api/decode", {"z": ["1", *_j(19)]}, None, 400, "not a number"),
    ("nested", "POST", "/api/decode", {"z": [[[0.0]] * 20]}, None, 400, "not a number"),
    ("malformed JSON", "POST", "/api/decode", b'{"z": [0, 0', None, 400, "not JSON"),
    ("not UTF-8", "POST", "/api/decode", b"\xff\xfe{}", None, 400, "not JSON"),
    ("deep nesting", "POST", "/api/decode", b"[" * 100_000 + b"]" * 100_000, None, 400, "not JSON"),
    ("not an object", "POST", "/api/decode", [0.0] * 20, None, 400, "JSON object"),
    ("no z", "POST", "/api/decode", {"y": 1}, None, 400, "JSON object"),
    ("unknown key", "POST", "/api/decode", {"z": _j(20), "seed": 1}, None, 400, "unknown keys ['seed']"),
    (
        "y for an unconditional model",
        "POST",
        "/api/decode",
        {"z": _j(20), "y": 3},
        None,
        400,
        "not conditional",
    ),
    ("empty body", "POST", "/api/decode", b"", None, 400, "not JSON"),
    ("body too large", "POST", "/api/decode", b" " * (MAX_BODY + 1), None, 413, "larger than"),
    ("no length", "POST", "/api/decode", None, None, 411, "Content-Length"),
    ("bad length", "POST", "/api/decode", None, {"Content-Length": "-5"}, 400, "Content-Length"),
    ("unknown path", "GET", "/api/secret", None, None, 404, "no such page"),
    ("run folder file", "GET", f"/{runs.CONFIG}", None, None, 404, "no such page"),
    ("traversal", "GET", f"/../{runs.CONFIG}", None, None, 404, "no such page"),
    ("encoded traversal", "GET", f"/%2e%2e/%2e%2e/{runs.CONFIG}", None, None, 404, "no such page"),
    ("traversal via point", "GET", f"/api/point/..%2f..%2f{runs.WEIGHTS}", None, None, 404, "no such page"),
    ("absolute path", "GET", "//etc/passwd", None, None, 404, "no such page"),
    ("point out of range", "GET", "/api/point/100", None, None, 404, "points 0..99"),
    ("negative point", "GET", "/api/point/-1", None, None, 404, "no such page"),
    ("GET the decoder", "GET", "/api/decode", None, None, 405, "does not take GET"),
    ("POST the page", "POST", "/", {"z": _j(20)}, None, 405, "does not take POST"),
    ("DELETE", "DELETE", "/api/run", None, None, 405, "does not take DELETE"),
    ("HEAD", "HEAD", "/api/points", None, None, 405, "does not take HEAD"),
    ("foreign Host", "GET", "/api/run", None, {"Host": "attacker.example:80"}, 403, "loopback"),
]


@pytest.fixture(scope="module")
def server20(run20):
    with serving(Explorer.from_run(run20)) as server:
        yield server


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_with_one_line_and_the_server_keeps_serving(bad, server20):
    _, method, path, body, headers, status, words = bad
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server20.port, timeout=10)
    if body is None and method == "POST" and not headers:
        conn.putrequest(method, path)  # http.client would add Content-Length: 0 itself
        conn.endheaders()
    else:
        conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    reason = r.read().decode()
    conn.close()
    assert r.status == status, reason
    if method != "HEAD":  # a HEAD answer has no body
        assert reason.endswith("\n") and reason.count("\n") == 1 and words in reason
    assert "vaekit_version" not in reason and "params" not in reason  # no file content leaks out
    # the next request is answered as ever
    status, _, body = request(server20, "POST", "/api/decode", decode_body(np.zeros((1, 20))))
    assert status == 200 and body.startswith(b"\x89PNG")


def test_requests_open_no_files(server20, monkeypatch):
    """Everything is read at start-up: serving the page, the map, points and decodes opens no file."""
    opened = []

    def recording(real):
        return lambda *a, **k: opened.append(a[0]) or real(*a, **k)

    # builtins.open and io.open (pathlib's) are one function; os.open is the level below both
    monkeypatch.setattr(builtins, "open", recording(builtins.open))
    monkeypatch.setattr(io, "open", recording(io.open))
    monkeypatch.setattr(os, "open", recording(os.open))
    for method, path, body in [
        ("GET", "/", None),
        ("GET", "/api/run", None),
        ("GET", "/api/points", None),
        ("GET", "/api/point/3", None),
        ("GET", "/api/point/3.png", None),
        ("POST", "/api/decode", decode_body(np.ones((4, 20)))),
        ("GET", f"/../{runs.CONFIG}", None),
    ]:
        status = request(server20, method, path, body)[0]
        assert status in (200, 404)
    assert [p for p in opened if not str(p).startswith("/dev/")] == []


def test_a_server_on_another_address_warns_and_loopback_does_not():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert host_warning(host, 8000) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        warning = host_warning(host, 8000)
        assert warning.startswith("vaekit: warning:") and host in warning and "8000" in warning


def test_command_prints_the_address_opens_it_and_stops_on_ctrl_c(run20, monkeypatch, capsys):
    """``vaekit explore RUN --open``: the printed address is the one opened and it serves the page;
    Ctrl-C (SIGINT) stops the server with exit code 0."""
    seen = {}

    def fake_open(url):
        def visit():
            try:
                conn = http.client.HTTPConnection(url.split("/")[2], timeout=60)
                conn.request("GET", "/api/run")
                seen["facts"] = json.loads(conn.getresponse().read())
                conn.close()
            finally:  # a failed request must not leave the server running: the assertions below tell
                _thread.interrupt_main()  # Ctrl-C

        seen["url"] = url
        threading.Thread(target=visit, daemon=True).start()
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises KeyboardInterrupt
    try:
        assert main(["explore", str(run20), "--open", "-n", "50"]) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    out = capsys.readouterr().out
    assert f"at {seen['url']} " in out and seen["url"].startswith("http://127.0.0.1:")
    assert seen["facts"]["n_points"] == 50 and seen["facts"]["run"] == run20.name
    assert "stopped" in out


def test_command_refuses_what_it_cannot_show(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "missing")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    rows = np.random.default_rng(0).uniform(size=(120, 5)).astype(np.float32)  # not images
    vae = VAE(latent_dim=2, hidden=(8,), epochs=1, likelihood="gaussian_fixed").fit(rows)
    vae.save(tmp_path / "rows")
    assert main(["explore", str(tmp_path / "rows")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaekit: error:") and "not images" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------- the page in Chromium

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def require_browser():
    """Skip when Chromium, its driver or Selenium is missing, unless CI is set: then fail."""
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the browser test must run, but {why}")
        pytest.skip(why)


def test_a_missing_browser_skips_only_outside_ci(monkeypatch):
    monkeypatch.setattr(f"{__name__}.CHROMIUM", None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium not installed"):
        require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so the browser test must run"):
        require_browser()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through its own chromedriver (no Selenium Manager, no download)."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_until(driver, script, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if driver.execute_script(script):
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {script}")


def open_page(driver, server):
    driver.get(server.url)
    wait_until(driver, "return window.explorer !== undefined && window.explorer.settled()")


def shown(driver, element_id, shape, n):
    """The n rows the page's <img id=element_id> shows, read back through a canvas, and its tag."""
    width, height, rgba, tag = driver.execute_script(
        """const img = document.getElementById(arguments[0]);
        const c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext("2d"); g.drawImage(img, 0, 0);
        const rgba = Array.from(g.getImageData(0, 0, c.width, c.height).data);
        return [c.width, c.height, rgba, img.dataset.decoded];""",
        element_id,
    )
    pixels = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)
    return tiles(pixels, shape, n), json.loads(tag)


def severe(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_page_loads_cleanly_and_a_slider_redraws_what_inverse_transform_decodes(browser, server20, run20):
    from selenium.webdriver.common.action_chains import ActionChains

    vae = VAE.load(run20)
    shape = vae.image_shape_
    open_page(browser, server20)
    assert severe(browser) == []
    before, tag = shown(browser, "decoded", shape, 1)
    assert tag["z"] == [0] * 20
    assert np.abs(before[0] - vae.inverse_transform(np.zeros((1, 20)))[0]).max() <= HALF_LEVEL

    dim = browser.execute_script("return window.explorer.state.run.sliders[0]")  # the largest KL
    slider = browser.find_element("id", f"slider-{dim}")
    ActionChains(browser).click_and_hold(slider).move_by_offset(70, 0).release().perform()
    wait_until(browser, "return window.explorer.settled()")
    after, tag = shown(browser, "decoded", shape, 1)
    z = np.asarray(tag["z"])
    assert z[dim] > 1 and np.count_nonzero(z) == 1  # only that dimension moved
    assert np.abs(after - before).max() > 0.05  # the picture changed
    decoded = vae.inverse_transform(z[None].astype(np.float32))
    assert np.abs(after - decoded).max() <= HALF_LEVEL

    browser.find_element("id", "prior").click()  # a draw from the prior sets every dimension
    wait_until(browser, "return window.explorer.settled()")
    drawn, tag = shown(browser, "decoded", shape, 1)
    z = np.asarray(tag["z"])
    assert np.count_nonzero(z) == 20 and np.abs(z).max() < 10
    assert np.abs(drawn - vae.inverse_transform(z[None].astype(np.float32))).max() <= HALF_LEVEL
    assert severe(browser) == []


def test_map_click_decodes_the_points_mean_and_the_strip_interpolates(browser, server20, run20):
    from selenium.webdriver.common.action_chains import ActionChains

    vae = VAE.load(run20)
    shape, explorer = vae.image_shape_, server20.explorer
    open_page(browser, server20)
    canvas = browser.find_element("id", "map")
    size = canvas.size

    def click_point(i):
        browser.execute_script("arguments[0].scrollIntoView()", canvas)  # pointer moves need it in view
        sx, sy = browser.execute_script("return window.explorer.screenOf(arguments[0])", i)
        ActionChains(browser).move_to_element_with_offset(
            canvas, sx - size["width"] / 2, sy - size["height"] / 2
        ).click().perform()
        wait_until(
            browser, f"return window.explorer.state.selected && window.explorer.state.selected.index === {i}"
        )
        wait_until(browser, "return window.explorer.settled()")

    # pick two points far apart on the map, so that no neighbour sits under the cursor
    a, b = int(np.argmin(explorer.coords[:, 0])), int(np.argmax(explorer.coords[:, 0]))
    click_point(a)
    picture, tag = shown(browser, "decoded", shape, 1)
    np.testing.assert_allclose(tag["z"], explorer.mu[a], rtol=0, atol=0)
    assert np.abs(picture[0] - vae.reconstruct(explorer.x[a : a + 1])[0]).max() <= HALF_LEVEL
    wait_until(
        browser, "const h = document.getElementById('hover-img'); return h.complete && h.naturalWidth > 0"
    )
    browser.find_element("id", "set-a").click()
    click_point(b)
    browser.find_element("id", "set-b").click()
    wait_until(browser, "return document.getElementById('strip').dataset.decoded !== undefined")
    steps = int(browser.find_element("id", "steps").get_attribute("value"))
    strip, tag = shown(browser, "strip", shape, steps)
    rows = np.asarray(tag["z"])
    t = np.linspace(0, 1, steps)[:, None]
    np.testing.assert_allclose(rows, (1 - t) * explorer.mu[a] + t * explorer.mu[b], atol=1e-6)
    assert np.abs(strip - vae.inverse_transform(rows.astype(np.float32))).max() <= HALF_LEVEL
    assert severe(browser) == []


def test_label_selector_of_a_conditional_model(browser, variant_runs):
    from selenium.webdriver.support.select import Select

    run = variant_runs["mlp-labels-logistic"]
    vae = VAE.load(run)
    with serving(Explorer.from_run(run)) as server:
        open_page(browser, server)
        first, tag = shown(browser, "decoded", vae.image_shape_, 1)
        assert tag["y"] == 0
        Select(browser.find_element("id", "label")).select_by_value("7")
        wait_until(browser, "return window.explorer.settled()")
        seven, tag = shown(browser, "decoded", vae.image_shape_, 1)
        assert tag["y"] == 7 and np.abs(seven - first).max() > 0.05
        z = np.asarray(tag["z"], dtype=np.float32)[None]
        assert np.abs(seven - vae.inverse_transform(z, 7)).max() <= HALF_LEVEL
        assert browser.find_element("id", "pad").is_displayed() is False  # 4-D: sliders, no pad
        assert severe(browser) == []
