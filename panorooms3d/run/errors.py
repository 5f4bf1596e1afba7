"""The one exception type of user mistakes.

A :class:`UserError` is raised by library code for a mistake the user can fix (a wrong path, a
folder in use, a file that is not a checkpoint). Its message says what is wrong, which path, and
what to do. It is a :class:`click.ClickException`, so any command it escapes from prints
``Error: <message>`` and exits with status 1, without a traceback; :mod:`panorooms3d.cli` also
turns OSErrors on user paths and a missing CUDA into that form. Anything else that escapes a
command is a bug and keeps its traceback.
"""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """A mistake of the user (not a bug): the message names the path and what to do."""

    def __str__(self) -> str:
        return self.message
