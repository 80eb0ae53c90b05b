"""The project's own error types.

Every failure a user can cause (bad file, bad label, bad config key, unknown model) raises one of
these, with a message that names the file/field and says what to do. Callers that process many
items (prepare, predict, evaluate) catch `TexscribeError`, record it as a skipped item and go on.
"""

from __future__ import annotations


class TexscribeError(Exception):
    """Base class for every error texscribe raises on purpose."""


class InputError(TexscribeError):
    """A user-supplied file or record is unusable.

    `source` names the file (and `line` the 1-based line) so that reports can list what was skipped.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(f"{where}{message}")
        self.reason = message


class ImageError(InputError):
    """An image cannot be decoded, is empty, or exceeds the configured pixel limit."""


class LabelError(InputError):
    """A LaTeX label cannot be tokenised or is malformed."""


class ConfigError(TexscribeError):
    """A configuration file or override names an unknown key or holds a wrong value."""


class ModelLoadError(TexscribeError):
    """A model name/path cannot be resolved, or a checkpoint is incomplete or from another version."""
