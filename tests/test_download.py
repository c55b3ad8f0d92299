"""Fashion-MNIST's download over real HTTP from a server on this machine (tests stay offline): the
files are checked before they are kept, a bad file leaves nothing behind, the cache is reused."""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

import vaekit
from vaekit import VaekitError, data
from vaekit.data import IDX_FILES, download_idx, load_fashion_mnist, load_mnist

PACKAGED = Path(vaekit.__file__).parent / "datasets" / "mnist"


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving a copy of the packaged MNIST files; yields (url, folder)."""
    served = tmp_path / "served"
    shutil.copytree(PACKAGED, served)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_and_keeps_the_files_with_the_umask_mode(server, tmp_path):
    url, _ = server
    old = os.umask(0o022)
    try:
        folder = download_idx(url, tmp_path / "cache", "mnist")
    finally:
        os.umask(old)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"{stem}.gz" for stem in IDX_FILES.values())  # no .part file left
    for name in names:
        assert (folder / name).read_bytes() == (PACKAGED / name).read_bytes()
        assert (folder / name).stat().st_mode & 0o777 == 0o644


def test_a_corrupt_download_is_refused_and_not_kept(server, tmp_path):
    url, served = server
    stem = IDX_FILES["y_test"]
    (served / f"{stem}.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(VaekitError, match="not a readable gzip file"):
        download_idx(url, tmp_path / "cache", "mnist")
    assert not any(
        p.name.startswith(f"{stem}") or p.suffix == ".part" for p in (tmp_path / "cache").iterdir()
    )


def test_fashion_mnist_downloads_once_then_reads_the_cache(server, tmp_path, monkeypatch):
    """With MNIST's files standing in for Fashion-MNIST's (their checksums swapped in)."""
    url, served = server
    monkeypatch.setitem(data.SHA256, "fashion-mnist", data.SHA256["mnist"])
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first = load_fashion_mnist(url)
    assert first.x_train.shape == (60000, 784) and str(tmp_path / "xdg" / "vaekit") in first.source
    assert (first.x_test == load_mnist().x_test).all()
    shutil.rmtree(served)  # the server has nothing now: a second load must not need it
    assert (load_fashion_mnist(url).y_train == first.y_train).all()


def test_an_unreachable_server_names_the_places_looked_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(VaekitError, match="install Debian's dataset-fashion-mnist or set VAEKIT_DATA"):
        load_fashion_mnist("http://127.0.0.1:9/")  # the discard port: connection refused
