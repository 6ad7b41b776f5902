"""Errors the Ray runtime raises, beside the core's typed errors."""

from __future__ import annotations

import ray

from ftactors.core.errors import CallGivenUpError, FtActorsError, ReplyUnavailableError


class PulledReplyGoneError(ReplyUnavailableError):
    """A backup's pull of a nested reply: the callee's router answered that the callee forgot the call
    (its reply or its source: ``reply_cache_max``, ``sources_max``), at no position. Only this is a reply
    gone at the callee; a ``ReplyUnavailableError`` the nested method itself raised is its outcome, which
    the backup's method gets as the primary's did (docs/faults.md, row 70). Never raised into a method:
    a step of the primary's own choice gets a plain ``ReplyUnavailableError`` (``ReplyGone.for_step``)."""


class GroupLostError(FtActorsError, ray.exceptions.ActorDiedError):
    """Every replica of the group failed (or it was shut down) before the call completed.

    Also Ray's ``ActorDiedError`` (a ``RayActorError``), which a call on a Ray actor that died under
    it raises (docs/faults.md row 85): a method that ends its process (``os._exit``) ends every
    replica that runs it.

    Args:
        message: what happened (the group, and the call that did not complete).
    """

    def __init__(self, message: str = "all replicas of the group failed") -> None:
        ray.exceptions.ActorDiedError.__init__(self)
        self.error_msg = message  # RayActorError's __str__
        Exception.__init__(self, message)  # args, for pickling

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.error_msg,))


class GroupShutdownError(FtActorsError, ray.exceptions.ActorDiedError):
    """The handle's group was shut down with ``ftactors.shutdown``.

    Also Ray's ``ActorDiedError`` (a ``RayActorError``), which a call on a Ray actor ended with
    ``ray.kill`` raises, and which the group's other handles get (docs/faults.md row 74).

    Args:
        message: what happened (the group's name).
    """

    def __init__(self, message: str = "the group was shut down") -> None:
        ray.exceptions.ActorDiedError.__init__(self)
        self.error_msg = message  # RayActorError's __str__
        Exception.__init__(self, message)  # args, for pickling


class CallCancelledError(FtActorsError, ray.exceptions.TaskCancelledError):
    """A call cancelled with ``ray.cancel``: also Ray's ``TaskCancelledError``, which ``ray.get`` of a
    cancelled task raises. Ray's cancel of an actor task is best effort: the router may receive the
    cancelled call after the caller's notice, and refuses it (it never runs) with this error
    (docs/faults.md row 79).

    Args:
        message: which call, and why it did not run.
    """

    def __init__(self, message: str = "the call was cancelled") -> None:
        ray.exceptions.TaskCancelledError.__init__(self, error_message=message)
        Exception.__init__(self, message)  # args, for pickling

    @classmethod
    def of(cls, exc: CallGivenUpError) -> "CallCancelledError":
        """The error a caller gets for a call the router refused as given up.

        Args:
            exc: the core's refusal.

        Returns:
            The error, naming the call.
        """
        return cls(f"cancelled (ray.cancel) before the group took it; it did not run ({exc})")


class NotReplicatedError(FtActorsError, TypeError):
    """An object that is not a replicated handle was given where one is needed."""


class MethodAbortedError(FtActorsError, RuntimeError):
    """A replicated method raised ``SystemExit``, ``KeyboardInterrupt``, ``CancelledError`` or
    another exception that is not an ``Exception``.

    In a plain Ray actor such an exception ends the actor. A replicated method runs on every
    replica, so it would end them all, one after the other: ftactors turns it into this error
    instead, on every replica alike, and the group stays up. The call that raised it fails.

    Args:
        message: what happened, in one line.
        original_type: the name of the exception the method raised (``"SystemExit"``).
    """

    def __init__(self, message: str, original_type: str = "") -> None:
        super().__init__(message)
        self.original_type = original_type

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (MethodAbortedError, (str(self), self.original_type))

