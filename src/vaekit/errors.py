"""The one exception type vaekit raises for problems a user can fix."""


class VaekitError(ValueError):
    """A bad input, file, flag or state, described in one line.

    The command line prints the message alone (no traceback) and exits with
    code 2; the Python API lets it propagate. Messages name the file or argument
    at fault and what is wrong with it. A ValueError, as Python and scikit-learn
    expect of a bad argument (``GridSearchCV``, ``check_estimator``).
    """


class VaekitTypeError(VaekitError, TypeError):
    """A value of a type the argument cannot hold (a dict among numbers): also a TypeError,
    as Python's own conversions (``float({})``) and scikit-learn raise for it."""


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C that stopped a run; the message says what was kept and how to continue."""
