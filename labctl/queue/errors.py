"""Errors of the job store. All are ValueErrors with one line that names the job or field."""

from __future__ import annotations


class QueueError(ValueError):
    """Base of every job-store error the CLI turns into exit code 2."""


class InvalidJobSpec(QueueError):
    """A job as given cannot be stored (bad field, unknown dependency)."""


class JobNotFound(QueueError):
    """No job with that id."""


class InvalidTransition(QueueError):
    """The operation does not apply to the job in its present state (or to this worker)."""


class StoreUnavailable(QueueError):
    """The store cannot be opened: bad location, unreachable server, newer schema."""
