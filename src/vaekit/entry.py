"""The ``vaekit`` command's entry point: ``vaekit --help`` and ``vaekit --version`` answer at once.

Importing torch takes seconds, so the top level is parsed here, from the standard library
alone; a command (``vaekit train ...``, also ``vaekit train --help``, whose flags come from the
configs and the registries of torch-backed classes) is handed to :func:`vaekit.cli.main`.
"""

from __future__ import annotations

import argparse
import sys
import typing

from vaekit import __version__

DESCRIPTION = "The ``vaekit`` command line: a thin layer over the Python API."
#: the commands and their one-line help (vaekit.cli builds each one's flags)
COMMAND_HELP = {
    "train": "train a VAE and write a run folder",
    "sample": "decode draws from the prior into a picture",
    "reconstruct": "picture of inputs above their reconstructions",
    "encode": "posterior means of data, saved as .npy or .csv (by -o's suffix)",
    "eval": "test ELBO and importance-sampled log p(x), written into the run folder",
    "reproduce": "rerun a paper's MNIST experiment into a run folder",
    "plot": "a picture of a trained run, saved as PNG",
    "score": "per-example anomaly scores (NLL, reconstruction error) as CSV",
    "decode": "decoder means of latents from a .npy file, saved as .npy, .csv or (images) a .png grid",
    "export": "write the encoder and decoder as ONNX or TorchScript files",
    "explore": "serve a local web page to walk the run's latent space",
}


class Parser(argparse.ArgumentParser):
    """argparse with vaekit's one-line errors (no usage block); subcommand parsers inherit it."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"vaekit: error: {message} (see {self.prog} --help)\n")


def top_parser() -> tuple[Parser, argparse._SubParsersAction]:
    """The top-level parser (--version, one sub-parser per command) and its sub-parsers."""
    parser = Parser(prog="vaekit", description=DESCRIPTION.replace("``", ""))
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    return parser, parser.add_subparsers(dest="command", required=True)


def main(argv: list[str] | None = None) -> int:
    """The ``vaekit`` command; returns the exit code. Without a command (--help, --version, nothing)
    the top level answers here; everything else is :func:`vaekit.cli.main`'s."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser, sub = top_parser()
        for name, text in COMMAND_HELP.items():
            sub.add_parser(name, help=text)
        try:
            parser.parse_args(argv)
        except SystemExit as e:  # the help or version (0), or the missing command (2), printed
            return int(e.code or 0)
    from vaekit.cli import main as command

    return command(argv)
