"""Data that does not fit in memory: uint8 rows kept as bytes (memory-mapped .npy files, the
image-folder cache), turned into the same float32 rows as before a minibatch at a time."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit import VAE, VaekitError, cifar, imagecache
from vaekit.byterows import ByteRows, NpyFile
from vaekit.data import as_rows, load_cifar10, load_file, read_file

RNG = np.random.default_rng(0)


@pytest.fixture
def u8_images(tmp_path):
    x = RNG.integers(0, 256, (240, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy", x


def test_a_uint8_npy_is_read_from_disk_and_gives_the_float_rows_bit_for_bit(u8_images):
    path, x = u8_images
    rows, labels, shape = read_file(path)
    expected, _ = as_rows(x, "x")  # the float32 rows vaekit read before: uint8 / 255
    assert isinstance(rows, ByteRows) and rows.on_disk and labels is None and shape == (3, 8, 8)
    assert torch.equal(rows.to("cpu"), expected)
    idx = torch.tensor([7, 0, 239, 7])
    assert torch.equal(rows.take(idx), expected[idx])
    view = rows[torch.tensor([5, 9, 2])][1:]  # views of views: rows 9 and 2
    assert torch.equal(view.to("cpu"), expected[[9, 2]])
    assert rows.value_range() == (float(expected.min()), float(expected.max()))


def test_a_file_is_read_once_for_its_digest_and_value_range_and_a_minibatch_reads_only_its_rows(
    u8_images, monkeypatch
):
    path, x = u8_images
    rows, _, _ = read_file(path)
    read = []
    original = NpyFile.read

    def counted(self, index):
        out = original(self, index)
        read.append(out.nbytes)
        return out

    monkeypatch.setattr(NpyFile, "read", counted)
    digest, value_range = rows.digest(), rows.value_range()
    assert sum(read) == x.nbytes  # one pass over every byte for both
    assert rows.digest() == digest and rows.value_range() == value_range == (x.min() / 255, x.max() / 255)
    assert sum(read) == x.nbytes
    read.clear()
    rows.take(torch.tensor([3, 4, 5, 100]))
    assert sum(read) == 4 * x[0].nbytes  # the minibatch's rows, nothing else
    # the digest is of the bytes: the same as of the same bytes held in memory
    assert ByteRows(x.reshape(len(x), -1), hwc=rows.hwc).digest() == digest


def test_training_on_bytes_read_from_disk_equals_training_on_their_floats(u8_images):
    path, _ = u8_images
    data = load_file(path)
    params = dict(latent_dim=2, hidden=(16,), epochs=2, batch_size=32, binarize="dynamic")
    mapped = VAE(**params).fit(data.x_train, X_test=data.x_test)
    floats = VAE(**params).fit(data.x_train.to("cpu"), X_test=data.x_test.to("cpu"))
    for a, b in zip(mapped.history_, floats.history_, strict=True):
        assert a["train_elbo"] == b["train_elbo"] and a["test_elbo"] == b["test_elbo"]
    for p, q in zip(mapped.module_.parameters(), floats.module_.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_digest_of_bytes_knows_the_float_digest_of_older_runs(u8_images):
    from vaekit.runs import Run, digest

    rows = read_file(u8_images[0])[0]
    old = {"data": "x", "sha256": digest(rows.to("cpu"))}  # what an older vaekit recorded
    Run(u8_images[0].parent).check_data(old, rows)  # accepted
    with pytest.raises(Exception, match="changed"):
        Run(u8_images[0].parent).check_data({"data": "x", "sha256": "0" * 64}, rows)


def _celeba(folder, n=6, sizes=((40, 30), (36, 30))):
    """A CelebA-like folder: JPEGs of two sizes (W, H) in one folder, no class sub-folders."""
    folder.mkdir()
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        pixels = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=95)
    return folder


def test_crop_boxes_are_centred():
    assert imagecache.crop_box(40, 30, imagecache.SQUARE) == (5, 0, 35, 30)
    assert imagecache.crop_box(40, 30, (10, 20)) == (10, 10, 30, 20)
    with pytest.raises(ValueError):
        imagecache.crop_box(40, 30, (31, 10))


def test_a_celeba_folder_is_cropped_resized_cached_and_rebuilt_when_a_file_changes(
    tmp_path, image_cache, monkeypatch
):
    folder = _celeba(tmp_path / "img_align_celeba")
    first, labels, shape = read_file(folder, resize=(8, 8), crop=imagecache.SQUARE)
    assert shape == (3, 8, 8) and labels is None and len(first) == 6 and first.on_disk
    cached = list((image_cache / "images").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npy"  # no temporary file left
    # the first image by hand: a 40x30 JPEG decoded at half size (20x15, the smallest JPEG scale
    # whose square crop still holds 8x8), its centre square 15x15, bilinear to 8x8
    with Image.open(folder / "000000.jpg") as im:
        im.draft(im.mode, (11, 8))
        assert im.size == (20, 15)
        square = im.crop((2, 0, 17, 15))
        expected = np.asarray(square.resize((8, 8), Image.Resampling.BILINEAR).convert("RGB"))
    assert np.array_equal(
        first[:1].to("cpu").numpy().reshape(3, 8, 8), expected.transpose(2, 0, 1) / np.float32(255)
    )

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagecache, "_decode", no_decoding)
    again = read_file(folder, resize=(8, 8), crop=imagecache.SQUARE)[0]
    assert torch.equal(again.to("cpu"), first.to("cpu"))
    monkeypatch.undo()
    monkeypatch.setenv("VAEKIT_CACHE", str(image_cache))
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(folder / "000000.jpg")
    os.utime(folder / "000000.jpg", ns=(1, 1))
    rebuilt = read_file(folder, resize=(8, 8), crop=imagecache.SQUARE)[0]
    assert float(rebuilt[:1].to("cpu").max()) < 0.05 < float(first[:1].to("cpu").max())
    assert len(list((image_cache / "images").iterdir())) == 1  # the stale cache is removed


def test_png_folders_keep_their_old_float_values(tmp_path):
    folder = tmp_path / "png"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(RNG.integers(0, 256, (5, 4), dtype=np.uint8)).save(folder / name / f"{i}.png")
    rows, labels, shape = read_file(folder)
    files = sorted(folder.rglob("*.png"))
    expected = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255 for p in files])
    assert shape == (1, 5, 4) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(rows.to("cpu").numpy(), expected.reshape(6, -1))


# ---------------------------------------------------------------------------- CIFAR-10


def _fake_cifar(path, n=4):
    """An archive in the binary release's format with n records per batch file; returns its arrays."""
    import io
    import tarfile

    files = {}
    for name in (*cifar.TRAIN_FILES, *cifar.TEST_FILES):
        labels = RNG.integers(0, 10, n, dtype=np.uint8)
        pixels = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        files[name] = (np.column_stack([labels, pixels]).tobytes(), pixels, labels)
    names = b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n"
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in [*((k, v[0]) for k, v in files.items()), (cifar.META, names)]:
            info = tarfile.TarInfo(f"{cifar.FOLDER}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return files


@pytest.fixture
def cifar_server(tmp_path):
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    files = _fake_cifar(served / cifar.ARCHIVE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{cifar.ARCHIVE}", served / cifar.ARCHIVE, files
    httpd.shutdown()
    httpd.server_close()


def test_cifar10_downloads_checked_then_reads_the_cache_without_unpickling(
    cifar_server, image_cache, monkeypatch
):
    url, archive, files = cifar_server
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setattr(cifar, "MD5", cifar._md5(archive))
    first = load_cifar10(url)
    assert (image_cache / cifar.ARCHIVE).exists() and not list(image_cache.glob(".*part"))
    train_pixels = np.concatenate([files[n][1] for n in cifar.TRAIN_FILES])
    assert torch.equal(first.x_train.to("cpu"), torch.from_numpy(train_pixels).float() / 255)
    assert first.y_test.tolist() == files["test_batch.bin"][2].tolist()
    assert first.image_shape == (3, 32, 32) and first.classes[0] == "airplane" and len(first.classes) == 10
    again = load_cifar10("http://127.0.0.1:9/")  # the discard port: only the cache can answer
    assert torch.equal(again.x_test.to("cpu"), first.x_test.to("cpu"))


def test_a_cifar10_download_with_the_wrong_checksum_is_refused_and_not_kept(
    cifar_server, image_cache, monkeypatch
):
    url, _, _ = cifar_server
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    with pytest.raises(VaekitError, match="checksum mismatch"):
        load_cifar10(url)
    assert not (image_cache / cifar.ARCHIVE).exists() and not list(image_cache.glob(".*"))


def test_bf16_is_refused_on_a_cpu_with_one_line():
    with pytest.raises(VaekitError, match=r"^precision 'bf16' is for CUDA GPUs; on cpu use float32$"):
        VAE(precision="bf16", epochs=1).fit(RNG.random((20, 4)))
    with pytest.raises(VaekitError, match="precision must be one of"):
        VAE(precision="fp8").configs()
