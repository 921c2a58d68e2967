"""The one base of every error a user's input causes, so the command line can tell them from bugs."""

from __future__ import annotations


class InvalidInput(ValueError):
    """A spec, data file, prediction file or option value that is wrong; its message names the file and the line,
    record or key. The command line prints it on one line and exits 1; any other exception is an internal error
    (exit 3, with its traceback in a log file)."""
