"""Typed errors of the protocol core.

``LocalProtocolError``: we were misused (a bad argument, an illegal call for
the current role). ``RemoteProtocolError``: a peer sent something malformed or
out of place; the receiver drops it and the group is unharmed. A broken
invariant of our own is an ``AssertionError``: it stops the run.
"""

from __future__ import annotations


class FtActorsError(Exception):
    """Base class of every error ftactors raises on purpose."""


class ConfigError(FtActorsError, ValueError):
    """A setting is invalid. The message names the setting."""


class LocalProtocolError(FtActorsError):
    """The caller used the core wrongly (for example, an input illegal in this role)."""


class RemoteProtocolError(FtActorsError):
    """A peer sent a malformed or illegal message; it was rejected."""


class StaleViewError(RemoteProtocolError):
    """A message from an older view (a deposed primary, for instance) was fenced off."""


class AcknowledgedDuplicateError(RemoteProtocolError):
    """A duplicate of a request whose reply its source has acknowledged (``ack_below``).

    The source holds that reply already, so nobody waits for this copy: it is dropped.
    """


class CallGivenUpError(RemoteProtocolError):
    """A request whose caller gave it up (``ray.cancel``) before this router took it: it never runs.

    Ray's cancel of an actor task is best effort, so the cancelled call may still arrive after the
    caller's notice; the runtime answers it as Ray answers a cancelled task (docs/faults.md row 79).
    """


class ReplyUnavailableError(FtActorsError):
    """A duplicate of a request arrived after its cached reply was trimmed.

    The request was executed exactly once; only its reply is gone.
    """


class GroupOverloadedError(FtActorsError):
    """The group holds ``inflight_max`` requests already; retry later."""
