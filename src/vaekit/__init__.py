"""vaekit: Variational Autoencoders as in Kingma & Welling, "Auto-Encoding Variational Bayes".

>>> from vaekit import VAE
>>> vae = VAE(latent_dim=20, hidden=(400,), likelihood="bernoulli").fit(X_train)
"""

__version__ = "0.1.0"

# imported for their registrations: likelihood 'discretized_logistic_mixture', arch 'resnet'
from vaekit import logistic_mixture, resnet  # noqa: F401
from vaekit.errors import VaekitError
from vaekit.estimator import VAE
from vaekit.networks import NetworkSpec, register_architecture

__all__ = ["VAE", "NetworkSpec", "VaekitError", "__version__", "register_architecture"]
