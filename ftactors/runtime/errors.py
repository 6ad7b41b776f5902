"""Errors the Ray runtime raises, beside the core's typed errors."""

from __future__ import annotations

from ftactors.core.errors import FtActorsError


class GroupLostError(FtActorsError):
    """Every replica of the group failed (or it was shut down) before the call completed."""


class GroupShutdownError(FtActorsError):
    """The handle's group was shut down with ``ftactors.shutdown``."""


class NotReplicatedError(FtActorsError, TypeError):
    """An object that is not a replicated handle was given where one is needed."""
