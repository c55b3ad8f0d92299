import numpy as np
import pytest

from vaekit.data import load_mnist


@pytest.fixture(autouse=True)
def image_cache(tmp_path_factory, monkeypatch):
    """Image-folder caches go to a temporary folder, not ~/.cache (vaekit.imagecache)."""
    folder = tmp_path_factory.mktemp("vaekit-cache")  # one per test, apart from its tmp_path
    monkeypatch.setenv("VAEKIT_CACHE", str(folder))
    return folder


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


@pytest.fixture(scope="session")
def mnist_subset(tmp_path_factory, mnist):
    """A small .npz with its own splits: 1000 train and 200 test MNIST digits as uint8 images."""
    path = tmp_path_factory.mktemp("data") / "subset.npz"
    to_u8 = lambda x: (x.numpy().reshape(-1, 28, 28) * 255).round().astype(np.uint8)  # noqa: E731
    np.savez(path, x_train=to_u8(mnist.x_train[:1000]), x_test=to_u8(mnist.x_test[:200]))
    return path
