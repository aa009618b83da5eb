"""The one family of errors the studio shows to people.

Every message says what went wrong and what to change. Pages show them with ``st.error``;
the CLI prints one line and exits non-zero. Anything that is not a ``StudioError`` is a bug
and surfaces with a traceback in the log.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class: ``str(err)`` is the user-facing message."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)


class BadInput(StudioError):
    """The user gave something the studio cannot use (a path, a field, a value)."""

    exit_code = 2


class NotFound(StudioError):
    """A named thing (model, endpoint, run) does not exist."""

    exit_code = 3


class NotAllowed(StudioError):
    """The signed-in person's role may not do this (or nobody is signed in, in team mode)."""

    exit_code = 4


class StorageError(StudioError):
    """STUDIO_HOME or the database cannot be used (read-only, full disk, busy too long)."""


class DatabaseBusy(StorageError):
    """Another process held the database longer than the busy timeout."""


class ServiceError(StudioError):
    """An embedded service failed to start, crashed, or is already running."""


class ReviewError(StudioError):
    """Argilla (embedded or external) cannot be reached, refuses the key, or answers unexpectedly."""


class ModelLoadError(StudioError):
    """A folder or file is not a loadable model."""


class BackendError(StudioError):
    """An LLM call failed; subclasses say why."""

    retryable = False


class EndpointUnreachable(BackendError):
    retryable = True


class AuthenticationFailed(BackendError):
    """401/403: the key is wrong or missing."""


class RateLimited(BackendError):
    retryable = True


class BackendTimeout(BackendError):
    retryable = True


class ServerFailed(BackendError):
    """5xx from the endpoint."""

    retryable = True


class BadResponse(BackendError):
    """The endpoint answered with something that is not a chat completion."""


class TrainingError(StudioError):
    """A training run cannot start or failed: a bad spec, too little data, a model that cannot train."""

    exit_code = 2


class TrainingCancelled(TrainingError):
    """The run was asked to stop; its last checkpoint is kept so it can resume."""
