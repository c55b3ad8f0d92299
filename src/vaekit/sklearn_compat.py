"""What makes :class:`vaekit.VAE` a scikit-learn transformer, without needing scikit-learn.

:class:`Transformer` is the one base class of ``VAE``: written by hand (no scikit-learn mixin),
so that vaekit imports and works where scikit-learn is not installed, and ``import vaekit``
never pays for importing it. scikit-learn is used only when it is already there: its tags are
built when scikit-learn asks for them (``__sklearn_tags__``), a DataFrame's column names are
checked with its public ``validate_data``, an unfitted model's error is also its
``NotFittedError`` once it is imported, and ``set_output`` follows its global
``transform_output`` setting. The output container (a pandas DataFrame) is built here.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, Self

import numpy as np

from vaekit.errors import VaekitError


def _pandas(Z: np.ndarray, X: Any, names: np.ndarray) -> Any:
    import pandas as pd

    index = X.index if isinstance(X, pd.DataFrame) else None  # rows keep their labels
    return pd.DataFrame(Z, columns=names, index=index, copy=False)


#: the containers ``set_output(transform=...)`` offers besides "default" (numpy arrays)
OUTPUTS: dict[str, Callable[[np.ndarray, Any, np.ndarray], Any]] = {"pandas": _pandas}


def not_fitted() -> VaekitError:
    """The error of a model used before fit: a VaekitError, and also scikit-learn's
    NotFittedError when scikit-learn is imported (only then can a caller catch that)."""
    message = "this VAE is not fitted yet; call fit() or VAE.load() first"
    exceptions = sys.modules.get("sklearn.exceptions")
    if exceptions is None:
        return VaekitError(message)
    return _not_fitted_type(exceptions.NotFittedError)(message)


@functools.cache
def _not_fitted_type(base: type[Exception]) -> type[VaekitError]:
    return type("NotFittedError", (VaekitError, base), {"__module__": __name__})


def _has_names(X: Any) -> bool:
    """Whether X is a data frame with column names (scikit-learn then records and checks them)."""
    return hasattr(X, "columns") and hasattr(X, "shape")


class Transformer:
    """scikit-learn's transformer protocol for an estimator that defines ``fit``, ``transform``,
    ``n_features_in_``, ``latent_dim`` and ``conditional``; fitted once ``module_`` is set. Its
    parameters are the arguments of its ``__init__``, each stored under its own name."""

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Set constructor arguments; unknown names are an error. Returns self."""
        for name, value in params.items():
            if name not in self._param_names():
                raise VaekitError(
                    f"{type(self).__name__} has no parameter {name!r}; see {type(self).__name__}.get_params()"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = {k: v for k, v in self.get_params().items() if v != defaults[k].default}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags (it calls this; scikit-learn >= 1.6): an unsupervised transformer
        of dense, finite arrays whose output is float32; y is needed only when conditional."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=bool(self.conditional)),  # type: ignore[attr-defined]
            transformer_tags=TransformerTags(preserves_dtype=["float32"]),
            input_tags=InputTags(allow_nan=False, sparse=False),
        )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "module_")

    def check_feature_names(self, X: Any, reset: bool) -> None:
        """Record (reset) or compare the column names of a data frame X as scikit-learn does
        (``feature_names_in_``); nothing without scikit-learn or when no names are involved."""
        if not (_has_names(X) or hasattr(self, "feature_names_in_")):
            return
        try:
            from sklearn.utils.validation import validate_data
        except ImportError:
            return
        validate_data(self, X, reset=reset, skip_check_array=True)

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """``fit(X, y, **fit_params).transform(X, y)``: the posterior means ``(n, latent_dim)``."""
        return self.fit(X, y, **fit_params).transform(X, y)  # type: ignore[attr-defined]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the transform's columns: "vae0" ... "vae{J-1}" (scikit-learn's convention of
        the lower-cased class name and the column number), as an object array.

        input_features : the input's column names, only checked (against ``feature_names_in_``,
            or their number against ``n_features_in_``)
        """
        if not hasattr(self, "module_"):
            raise not_fitted()
        if input_features is not None:
            given = np.asarray(input_features, dtype=object)
            names = getattr(self, "feature_names_in_", None)
            if names is not None and not np.array_equal(given, names):
                raise VaekitError("input_features is not equal to feature_names_in_")
            if len(given) != self.n_features_in_:  # type: ignore[attr-defined]
                raise VaekitError(
                    f"input_features should have length equal to number of features "
                    f"({self.n_features_in_}), got {len(given)}"  # type: ignore[attr-defined]
                )
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.module_.latent_dim)], dtype=object)  # type: ignore[attr-defined]

    def set_output(self, *, transform: str | None = None) -> Transformer:
        """Make transform and fit_transform return a pandas DataFrame (transform "pandas") or numpy
        arrays ("default"); None: unchanged, which follows scikit-learn's global ``transform_output``."""
        if transform is None:
            return self
        if transform != "default" and transform not in OUTPUTS:
            raise VaekitError(
                f"set_output: transform must be one of {['default', *OUTPUTS]}, got {transform!r}"
            )
        self._sklearn_output_config = {"transform": transform}  # the attribute scikit-learn reads
        return self

    def wrap_output(self, Z: np.ndarray, X: Any) -> Any:
        """Z ``(n, latent_dim)`` in the container set_output asked for (index from X's rows)."""
        own = self.__dict__.get("_sklearn_output_config", {})
        sklearn = sys.modules.get("sklearn")  # its global setting, when it is loaded
        output = own.get("transform", sklearn.get_config()["transform_output"] if sklearn else "default")
        if output == "default":
            return Z
        return OUTPUTS[output](Z, X, self.get_feature_names_out())
