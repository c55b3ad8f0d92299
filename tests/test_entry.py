"""The ``vaekit`` entry point answers --help and --version without importing torch."""

import argparse
import subprocess
import sys

import pytest

from vaekit import __version__, cli, entry

#: runs the command as the installed script does, then reports whether torch was imported
WRAPPER = """
import sys
from vaekit.entry import main
code = main(sys.argv[1:])
print("torch imported:", "torch" in sys.modules, "numpy imported:", "numpy" in sys.modules)
raise SystemExit(code)
"""


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"]])
def test_top_level_does_not_import_torch(args):
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "torch imported: False numpy imported: False"
    expected = (
        f"vaekit {__version__}" if args == ["--version"] else "explore             serve a local web page"
    )
    assert expected in result.stdout


def test_no_command_is_one_line_error(capsys):
    assert entry.main([]) == 2
    assert capsys.readouterr().err == (
        "vaekit: error: the following arguments are required: command (see vaekit --help)\n"
    )


def test_every_command_has_one_help_line():
    """The top level lists the commands vaekit.cli parses and runs, each with the same help."""
    sub = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert helps == entry.COMMAND_HELP
    assert set(cli.COMMANDS) == set(entry.COMMAND_HELP)
