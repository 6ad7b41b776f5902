"""ftactors: Ray actors that survive failures with their state intact.

    import ray, ftactors

    @ftactors.replicated(replicas=3)
    @ray.remote
    class Account:
        def __init__(self, balance=0): self.balance = balance
        def deposit(self, amount): self.balance += amount; return self.balance

    acct = Account.remote(100)
    ray.get(acct.deposit.remote(5))   # 105, even if the primary dies meanwhile
"""

import os as _os

# Ray retries a caller's pending calls when it restarts a group's router, and by default prints
# "Task _AsyncRouter.invoke failed ... will be retried" for each: nothing a user can act on. Set this
# before ray.init() (export it as 1 to see Ray's retry messages again).
_os.environ.setdefault("RAY_enable_output_error_log_if_still_retry", "0")

from ftactors.core.errors import (
    ConfigError,
    FtActorsError,
    GroupOverloadedError,
    ReplyUnavailableError,
    StaleViewError,
)
from ftactors.core.scheduler import Scheduler
from ftactors.runtime.api import (
    GroupInfo,
    ReplicaInfo,
    ReplicatedClass,
    ReplicatedHandle,
    describe,
    get_actor,
    replicated,
    set_unavailable,
    shutdown,
    stats,
)
from ftactors.runtime.context import now, random
from ftactors.runtime.errors import CallCancelledError, GroupLostError, GroupShutdownError, MethodAbortedError, NotReplicatedError
from ftactors.runtime.settings import ReplicationSettings, load_settings

__version__ = "0.1.0"

__all__ = [
    "CallCancelledError", "ConfigError", "FtActorsError", "GroupInfo", "GroupLostError", "GroupOverloadedError", "GroupShutdownError",
    "MethodAbortedError", "NotReplicatedError", "ReplicaInfo", "ReplicatedClass", "ReplicatedHandle",
    "ReplicationSettings", "ReplyUnavailableError", "Scheduler", "StaleViewError", "describe", "get_actor",
    "load_settings", "now", "random",
    "replicated", "set_unavailable", "shutdown", "stats",
]
