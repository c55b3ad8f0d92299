"""How often a conditional MNIST run's samples for label c are classified as c.

A softmax regression on pixels is trained on 10,000 MNIST training digits (its
accuracy on the test digits is printed too); then ``-n`` prior samples per label
are drawn from the run (decoder means, as in ``vaekit sample RUN --label c``) and
classified. Chance is 0.1.

    python benchmarks/conditional_accuracy.py RUN [-n 100] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from vaekit import VAE
from vaekit.data import load_mnist


def softmax_regression(x: torch.Tensor, labels: torch.Tensor, steps: int = 300) -> torch.nn.Linear:
    """Full-batch Adam on the cross-entropy of a linear layer ``(d -> 10)``."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(x.shape[1], 10)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(layer(x), labels).backward()
        optimizer.step()
    return layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("-n", type=int, default=100, help="samples per label (default: 100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mnist, vae = load_mnist(), VAE.load(args.run)
    classifier = softmax_regression(mnist.x_train[:10000], mnist.y_train[:10000])
    with torch.no_grad():
        real = float((classifier(mnist.x_test).argmax(1) == mnist.y_test).float().mean())
        print(f"classifier accuracy on the 10,000 MNIST test digits: {real:.3f}")
        for label in range(vae.n_classes_ or 0):
            samples = torch.from_numpy(vae.sample(args.n, seed=args.seed + label, y=label))
            predicted = classifier(samples).argmax(1)
            share = float((predicted == label).float().mean())
            print(f"label {label}: {share:.2f} of {args.n} samples classified as {label}")
        labels = np.repeat(np.arange(vae.n_classes_ or 0), args.n)
        samples = torch.from_numpy(vae.sample(len(labels), seed=args.seed, y=labels))
        overall = float((classifier(samples).argmax(1) == torch.from_numpy(labels)).float().mean())
    print(f"all labels: {overall:.3f} (chance 0.1)")


if __name__ == "__main__":
    main()
