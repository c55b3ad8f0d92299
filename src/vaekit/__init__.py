"""vaekit: Variational Autoencoders as in Kingma & Welling, "Auto-Encoding Variational Bayes".

>>> from vaekit import VAE
>>> vae = VAE(latent_dim=20, hidden=(400,), likelihood="bernoulli").fit(X_train)

The names below are imported on first use (PEP 562), so that ``vaekit --help`` need not
import torch.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

from vaekit.errors import VaekitError

#: the public names that come from modules importing torch, and their modules
_LAZY = {
    "VAE": "vaekit.estimator",
    "NetworkSpec": "vaekit.networks",
    "register_architecture": "vaekit.networks",
}

__all__ = ["VAE", "NetworkSpec", "VaekitError", "__version__", "register_architecture"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
