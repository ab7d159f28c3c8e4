"""Typed errors with one-line messages.

Every failure a user can cause (bad question, broken corpus file, missing index, unreachable server) is raised
as a subclass of `RagError`. The faces (CLI, UI, eval) catch `RagError` and show `str(error)` as a single line,
so the message must say what went wrong and what to do, without a traceback.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class: the message is a complete, user-facing sentence."""


class QuestionError(RagError, ValueError):
    """The question is empty, too long, or otherwise unusable."""


class CorpusError(RagError):
    """A corpus file is missing, unreadable or malformed; names the file and, where known, the line."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path = path
        self.line = line
        self.reason = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class IndexError_(RagError):
    """The index is missing, unwritable, built with another embedding model, or its server is unreachable."""


class BackendError(RagError):
    """The generator backend is unknown, its model file is missing, or its server cannot be reached."""


class ConfigError(RagError, ValueError):
    """A setting has a value the bot cannot use."""
