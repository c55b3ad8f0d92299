"""The run folder: every file name of a run folder is spelled here, once.

A run folder (``vaekit train``, ``vaekit reproduce``, ``VAE.fit(checkpoint_dir=...)``) holds:

config.json             the model record: constructor arguments, shapes, version, the data record
model.safetensors       the trained weights (written when training ends)
checkpoint.safetensors  the trainer's state, for a bit-exact resume
metrics.jsonl           one row of metrics per epoch
eval.json               ``vaekit eval``'s numbers
*.png                   pictures (samples, reconstructions, manifold, curves, plots)
reproduce.json          a paper protocol's record (``vaekit reproduce``)
tensorboard/            TensorBoard event files (``vaekit train --tensorboard``)
"""

from __future__ import annotations

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
#: the folder of :class:`vaekit.tensorboard.TensorBoardLog`'s event files
TENSORBOARD = "tensorboard"
#: the pictures :func:`vaekit.plots.write_pictures` puts in a run folder
PICTURES = SAMPLES, RECONSTRUCTIONS, MANIFOLD, CURVES = (
    "samples.png",
    "reconstructions.png",
    "manifold.png",
    "curves.png",
)
