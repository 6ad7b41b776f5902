"""The ftactors protocol core: pure, deterministic state machines (sans-I/O).

Nothing here imports ray, asyncio, threading, time, random or socket. Inputs
go in (messages, ticks, execution results); effects come out (messages to
send, calls to execute, replies to release). The Ray runtime
(``ftactors.runtime``) and the simulator (``ftactors.testing``) drive it.
"""

from ftactors.core.cancels import CancelRenotices, Renotices
from ftactors.core.client import ClientCore
from ftactors.core.config import CoreConfig
from ftactors.core.dedup import DedupTable
from ftactors.core.errors import (
    AcknowledgedDuplicateError,
    ConfigError,
    FtActorsError,
    GroupOverloadedError,
    LocalProtocolError,
    RemoteProtocolError,
    ReplyUnavailableError,
    StaleViewError,
)
from ftactors.core.messages import (
    Announcement,
    Checkpoint,
    Deliver,
    Delivered,
    Kind,
    MsgId,
    NewView,
    Outcome,
    Reply,
    Request,
    StateReport,
)
from ftactors.core.replica import Execute, ReplicaCore, Restore, Role, Snapshot, nested_source
from ftactors.core.router import Abandoned, Phase, RouterCore, RouterReady
from ftactors.core.scheduler import BUILTIN as SCHEDULERS, Queued, ScheduleContext, Scheduler, make_scheduler

__all__ = [
    "Abandoned", "AcknowledgedDuplicateError", "Announcement", "CancelRenotices", "Checkpoint", "ClientCore", "ConfigError", "CoreConfig", "DedupTable", "Deliver",
    "Delivered", "Execute", "FtActorsError", "GroupOverloadedError", "Kind", "LocalProtocolError", "MsgId",
    "NewView", "Outcome", "Phase", "Queued", "RemoteProtocolError", "Renotices", "Reply", "ReplyUnavailableError",
    "ReplicaCore", "Request", "Restore", "Role", "RouterCore", "RouterReady", "SCHEDULERS", "ScheduleContext",
    "Scheduler", "Snapshot", "StaleViewError", "StateReport", "make_scheduler", "nested_source",
]
