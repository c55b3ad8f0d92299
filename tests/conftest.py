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


#: colour photographs in the scikit-image wheel (its data folder), the natural images of the tests
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
)


@pytest.fixture(scope="session")
def photo_patches():
    """600 random 32x32 RGB patches of the scikit-image photos, ``(600, 32, 32, 3)`` 8-bit values / 255."""
    return _patches(600, 32, seed=0)


def _patches(n: int, size: int, seed: int) -> np.ndarray:
    import importlib.util
    from pathlib import Path

    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-image (the test extra) holds the photos")
    folder = Path(spec.origin).parent / "data"
    images = [np.asarray(Image.open(folder / name).convert("RGB")) for name in PHOTOS]
    rng = np.random.default_rng(seed)
    patches = []
    for i in rng.integers(len(images), size=n):
        h, w, _ = images[i].shape
        top, left = rng.integers(h - size), rng.integers(w - size)
        patches.append(images[i][top : top + size, left : left + size])
    return np.stack(patches).astype(np.float32) / 255
