"""The one exception type vaekit raises for problems a user can fix."""


class VaekitError(Exception):
    """A bad input, file, flag or state, described in one line.

    The command line prints the message alone (no traceback) and exits with
    code 2; the Python API lets it propagate. Messages name the file or argument
    at fault and what is wrong with it.
    """


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C that stopped a run; the message says what was kept and how to continue."""
