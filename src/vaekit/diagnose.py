"""What went wrong in a finished run, read from its per-epoch metrics: a few one-line warnings.

A run can end with finite but useless numbers: a KL term of 10^5 nats when the data are on a
scale of 10^3 and were not standardized, or a test ELBO that fell for the last several epochs.
:func:`diagnose` looks at the metric rows (:data:`vaekit.runs.METRICS`: ``train_elbo``,
``train_recon``, ``train_kl`` and, with held-out data, ``test_elbo``, ``test_recon``, ``test_kl``;
nats per example) and says what it sees and its likely cause, so that the user does not have to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: the most nats per data dimension a code can carry about float32 data: 24 bits of mantissa,
#: log(2^24) = 16.6 nats. A KL(q(z|x) || p(z)) above that per dimension is no information about
#: x but a posterior pushed far from the prior (an encoder fed inputs of size 10^3)
KL_NATS_PER_DIM = 24 * math.log(2)
#: a reconstruction term below -this many nats per dimension has exploded: a Gaussian density of
#: data on any scale float32 holds is far above it (log N(x; mu, s^2) ~ -1.4 - log s per dimension)
RECON_NATS_PER_DIM = 100.0
#: this many epochs running with a falling test ELBO at the end of a run is worth a warning
FALLING_EPOCHS = 3
#: raw columns with a standard deviation above this are "on a large scale" for a Gaussian decoder
LARGE_SCALE = 10.0
OVERFITTING = "overfitting; train fewer epochs, or add data or --weight-decay"


@dataclass(frozen=True)
class RunFacts:
    """What the warnings' causes depend on besides the metrics.

    data_dim : d, the number of data dimensions (the limits above are per dimension)
    lr : the learning rate
    raw_scale : the largest standard deviation of a column a real-line likelihood models
        unstandardized (``standardize`` off), else None
    """

    data_dim: int
    lr: float
    raw_scale: float | None = None


def _split(row: Mapping[str, float]) -> str:
    """The split a row's final terms are read from: 'test' when it has them, else 'train'."""
    return "test" if "test_kl" in row else "train"


def _large_scale_cause(facts: RunFacts) -> str | None:
    if facts.raw_scale is None or facts.raw_scale <= LARGE_SCALE:
        return None
    return (
        f"the data are on a large scale (columns with standard deviation up to {facts.raw_scale:.3g}); "
        f"standardize them (--standardize auto) or lower --lr (now {facts.lr:g})"
    )


#: what a check finds, and its likely cause (one line each)
Finding = tuple[str, str]


def _kl_cause(facts: RunFacts) -> str:
    """Why a KL term grows without bound: raw data on a large scale, else too large steps."""
    cause = f"lower --lr (now {facts.lr:g}) or warm the KL up (--warmup-steps)"
    return _large_scale_cause(facts) or cause


def exploded_terms(row: Mapping[str, float], facts: RunFacts) -> Finding | None:
    """The final KL or reconstruction term when it is beyond what data of this width can give."""
    split = _split(row)
    kl, recon, d = row[f"{split}_kl"], row[f"{split}_recon"], facts.data_dim
    found = []
    if kl > KL_NATS_PER_DIM * d:
        found.append(
            f"the {split} KL grew to {kl:.3g} nats ({kl / d:.3g} per dimension, more than the "
            f"{KL_NATS_PER_DIM:.1f} float32 data can carry)"
        )
    if recon < -RECON_NATS_PER_DIM * d:
        found.append(
            f"the {split} reconstruction term fell to {recon:.3g} nats ({recon / d:.3g} per dimension)"
        )
    if not found:
        return None
    if kl > KL_NATS_PER_DIM * d:
        return " and ".join(found), _kl_cause(facts)
    cause = f"the decoder's variance collapsed or training diverged; lower --lr (now {facts.lr:g})"
    return " and ".join(found), _large_scale_cause(facts) or cause


def falling_test_elbo(history: Sequence[Mapping[str, float]], facts: RunFacts) -> Finding | None:
    """How the test ELBO fell in each of the last :data:`FALLING_EPOCHS` or more epochs,
    with its likely cause: a growing KL term, overfitting (the train ELBO rose), or instability."""
    rows = [row for row in history if "test_elbo" in row]
    run = 0
    while run + 1 < len(rows) and rows[-run - 1]["test_elbo"] < rows[-run - 2]["test_elbo"]:
        run += 1
    if run < FALLING_EPOCHS:
        return None
    first, last = rows[-run - 1], rows[-1]
    fall, kl_rise = first["test_elbo"] - last["test_elbo"], last["test_kl"] - first["test_kl"]
    fell = (
        f"the test ELBO fell in each of the last {run} epochs, from {first['test_elbo']:.2f} "
        f"to {last['test_elbo']:.2f} nats"
    )
    if kl_rise > fall / 2:  # most of the fall is the KL term growing
        return f"{fell}, as its KL term grew by {kl_rise:.3g}", _kl_cause(facts)
    if last["train_elbo"] > first["train_elbo"]:
        return f"{fell} while the train ELBO rose", OVERFITTING
    cause = _large_scale_cause(facts) or f"training is unstable; lower --lr (now {facts.lr:g})"
    return f"{fell}, and the train ELBO with it", cause


def diagnose(history: Sequence[Mapping[str, float]], facts: RunFacts) -> list[str]:
    """The warnings about a finished run's per-epoch metric rows: one line per likely cause (at
    most two), ``"what was seen; what else was seen: likely cause"``."""
    if not history:
        return []
    found = [f for f in (exploded_terms(history[-1], facts), falling_test_elbo(history, facts)) if f]
    causes = dict.fromkeys(cause for _, cause in found)  # in order, once each
    return [f"{'; '.join(seen for seen, c in found if c == cause)}: {cause}" for cause in causes]
