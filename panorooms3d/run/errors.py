"""The one exception type of user mistakes.

A :class:`UserError` is raised by library code for a mistake the user can fix (a wrong path, a
folder in use, a file that is not a checkpoint). Its message says what is wrong, which path, and
what to do. The command line (:mod:`panorooms3d.cli`) prints it as ``Error: <message>`` and exits
with status 1, without a traceback; anything else that escapes a command is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake of the user (not a bug): the message names the path and what to do."""
