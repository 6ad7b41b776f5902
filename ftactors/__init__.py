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
    replicated,
    set_unavailable,
    shutdown,
    stats,
)
from ftactors.runtime.context import now, random
from ftactors.runtime.errors import GroupLostError, GroupShutdownError, MethodAbortedError, NotReplicatedError
from ftactors.runtime.settings import ReplicationSettings, load_settings

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "FtActorsError", "GroupInfo", "GroupLostError", "GroupOverloadedError", "GroupShutdownError",
    "MethodAbortedError", "NotReplicatedError", "ReplicaInfo", "ReplicatedClass", "ReplicatedHandle", "ReplicationSettings",
    "ReplyUnavailableError", "Scheduler", "StaleViewError", "describe", "load_settings", "now", "random",
    "replicated", "set_unavailable", "shutdown", "stats",
]
