"""A saved model's condition setup is checked on load; ``vaekit sample -n`` is held to one picture's size."""

import json

import numpy as np
import pytest

from vaekit import VAE, VaekitError, limits, runs
from vaekit.cli import main


def _saved(tmp_path, **params):
    """A tiny model of 4x4 images (labels 0..2 when conditional), saved into tmp_path/model."""
    rng = np.random.default_rng(0)
    vae = VAE(latent_dim=2, hidden=(8,), likelihood="gaussian", epochs=1, **params)
    vae.fit(rng.normal(size=(30, 4, 4)), np.arange(30) % 3 if vae.conditional else None)
    vae.save(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"n_classes": 5}, "n_classes 5 does not match cond_dim 3"),
        ({"n_classes": True}, "n_classes True does not match cond_dim 3"),
        ({"cond_dim": 0}, "conditional=True does not match cond_dim 0"),
    ],
)
def test_a_conditional_config_whose_classes_and_width_disagree_is_refused(tmp_path, change, message):
    folder = _saved(tmp_path, conditional=True)
    assert VAE.load(folder).n_classes_ == 3  # as saved
    config = folder / runs.CONFIG
    config.write_text(json.dumps({**json.loads(config.read_text()), **change}))
    with pytest.raises(VaekitError, match=f"{config}: not a vaekit model config \\({message}"):
        VAE.load(folder)


def test_an_unconditional_config_with_a_condition_width_is_refused(tmp_path):
    folder = _saved(tmp_path)
    config = folder / runs.CONFIG
    config.write_text(json.dumps({**json.loads(config.read_text()), "cond_dim": 3}))
    with pytest.raises(VaekitError, match="conditional=False does not match cond_dim 3"):
        VAE.load(folder)


def test_sample_n_beyond_one_picture_is_refused_before_drawing(tmp_path, capsys):
    folder = _saved(tmp_path)
    most = limits.MAX_IMAGE_PIXELS // 16  # 16 pixels a sample
    for n in (2**31 - 1, most + 1):
        assert main(["sample", str(folder), "-n", str(n), "-o", str(tmp_path / "s.png")]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"vaekit: error: -n {n}: {n:,} samples of 16 pixels are over vaekit's limit of "
            f"{limits.MAX_IMAGE_PIXELS:,} pixels in one picture (limits.MAX_IMAGE_PIXELS); "
            f"draw at most {most:,}\n"
        )
    assert not (tmp_path / "s.png").exists()
    assert main(["sample", str(folder), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
