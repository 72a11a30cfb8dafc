"""The exceptions babysit raises: one root, a few kinds a caller may want to tell apart."""

from __future__ import annotations


class BabysitError(Exception):
    """Root of every error babysit raises on purpose."""


class InvalidValue(BabysitError, ValueError):
    """A value given by a user (hyperparameter, day, option) is not acceptable."""


class UnknownRun(BabysitError, LookupError):
    """No run with this id or name exists in the store."""


class UnknownDay(BabysitError, LookupError):
    """The run has no checkpoint for this day."""


class RunNotLive(BabysitError):
    """A command needs a running (or paused) process, and the run has none."""


class CommandRejected(BabysitError):
    """The training process read the command and refused it; the message says why."""


class CommandTimeout(BabysitError, TimeoutError):
    """The training process did not answer in time; the command stays queued."""


class StoreError(BabysitError):
    """The store is missing, unreadable, locked for too long, or from a newer babysit."""


class CheckpointError(BabysitError):
    """A checkpoint is missing, incomplete, corrupted or refused."""


class StorageError(BabysitError):
    """Shared checkpoint storage (an object store) could not be reached or refused a request;
    unlike a CheckpointError this says nothing about the checkpoint itself: retrying may work."""


class LaunchError(BabysitError):
    """A run's process could not be started (e.g. it was launched interactively)."""


class UnknownStudy(BabysitError, LookupError):
    """No study with this id or name exists in the store."""
