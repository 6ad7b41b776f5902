"""Replication settings: validated with pydantic, loadable from YAML.

Seconds here are converted to the core's ticks with ``tick_s``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Tuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ftactors.core.config import BUSY_POLL_OFF_TICKS, CoreConfig
from ftactors.core.errors import ConfigError
from ftactors.core.scheduler import make_scheduler
from ftactors.host.links import LinkSettings
from ftactors.host.spares import SPARES_MAX, SpareSettings

log = logging.getLogger("ftactors")

#: distinct setting combinations warned about at most, per process (each is warned about once)
WARNED_MAX = 64
#: A replica's Ray threads beyond one per Deliver outstanding to a primary (control calls, link readers)
REPLICA_SPARE_THREADS = 8
#: ``heartbeat_interval_s`` when the user leaves it unset: this default, or less so that the links
#: suspect a hung replica within ``LINK_SUSPICION_SHARE`` of ``failure_timeout_s``
HEARTBEAT_INTERVAL_DEFAULT_S = 0.25
#: Settings that were removed, with what to do instead: naming one is a ``ConfigError`` that says so
#: (any other unknown name is refused by pydantic as an extra input).
REMOVED_SETTINGS = {
    "router_actor": "removed on 2026-12-03: the router is always an async Ray actor (a threaded one was "
                    "measured slower, issue 11); drop the setting",
}
#: the share of ``failure_timeout_s`` after which a derived ``heartbeat_interval_s`` has the direct
#: links suspect a silent replica (1.25 s of the default 2 s)
LINK_SUSPICION_SHARE = 0.625
_warned: "OrderedDict[Tuple[float, int, float], None]" = OrderedDict()


class ReplicationSettings(BaseModel):
    """How a replicated actor is replicated.

    Every field can be given to ``@ftactors.replicated(...)`` or in a YAML file
    (``config=path``); keyword arguments override the file.

    ``spares`` (default 0) keeps that many *warm spare* replica processes per group besides the
    members: started and constructed (the class loaded, the constructor run) but not in the view,
    so they receive no calls and hold no state. When a member fails, a spare becomes its
    replacement (it joins by state transfer, as any new replica), so no process starts during the
    failover; a new spare starts ``spare_respawn_delay_s`` later, once no recovery or join runs. A
    spare that dies is replaced without affecting the group; spares go on other nodes than the
    members where ``placement`` allows, exit when the group's router is gone for good
    (``orphan_timeout_s``), and stop with ``ftactors.shutdown``. Each spare costs one process (and
    its constructor's memory) per group.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    replicas: int = Field(3, ge=2, description="replicas at creation: a primary and replicas-1 backups")
    style: Literal["semi-active", "passive"] = "semi-active"
    scheduling: Any = Field("reception", description="reception|sequence|priority|deadline|fair|resources")
    checkpoint_every: int = Field(100, ge=1, description="passive: checkpoint every N messages")
    null_message_after_s: float = Field(0.05, gt=0, description="announcements wait this long for a ride")
    relay_after_s: float = Field(0.05, ge=0, description="request copies wait at most this long to reach "
                                 "the backups in one batch (0: at once)")
    min_replicas: Optional[int] = Field(None, ge=1, description="re-replicate below this (default: replicas)")
    placement: Literal["spread", "strict-spread", "pack"] = "spread"
    heartbeat_s: float = Field(0.25, gt=0, description="the router pings a replica it has not heard from "
                               "for this long (a heartbeat on its direct link when it has one, else a Ray call)")
    failure_timeout_s: float = Field(2.0, gt=0)
    reorder_wait_s: float = Field(0.5, gt=0, description="a call waits at most this long at the router for "
                                  "an earlier call of its caller (Ray may start an async actor's "
                                  "tasks out of order); time the router gets no CPU does not count")
    tick_s: float = Field(0.01, gt=0, le=1.0)
    spares: int = Field(0, ge=0, le=SPARES_MAX, description="warm spare replica processes per group: "
                        "started and constructed, not members; a failed member's replacement takes one "
                        "instead of starting a process")
    spare_respawn_delay_s: float = Field(2.0, ge=0, description="after a spare became a member (or died), "
                                         "wait this long before starting the next one")
    orphan_timeout_s: float = Field(30.0, gt=0, description="a replica not called by its router for this "
                                    "long checks that the router still exists, and exits if not")
    digest_every: int = Field(200, ge=0, description="compare state digests every N messages (0: never)")
    max_message_bytes: int = Field(512 * 1024 * 1024, ge=1)
    large_arg_bytes: int = Field(100 * 1024, ge=1, description="arguments above this go via ray.put once")
    reply_cache_max: int = Field(100_000, ge=1)
    sources_max: int = Field(100_000, ge=1, description="sources a replica's exactly-once table tracks at most "
                             "(nested calls mint one per calling message); a forgotten source's duplicates "
                             "are refused, never run twice")
    log_max: int = Field(100_000, ge=1)
    inflight_max: int = Field(100_000, ge=1)
    batch_max: int = Field(512, ge=1)
    query_on_failover: bool = Field(False, description="semi-active: ask the survivors for their state "
                                    "after a primary failure even when the router holds every message "
                                    "(one more round trip)")
    replies_wait_for_backup: bool = Field(False, description="release a reply only once a backup executed "
                                          "(passive: logged) its call, so an acknowledged call survives the "
                                          "primary's crash followed by the router's; the caller waits for "
                                          "that backup too (a group of one does not wait)")
    busy_poll_s: Optional[float] = Field(None, gt=0, description="None (default): off; 0.05 suits calls of very "
                                         "different lengths from one caller. The primary has sat "
                                         "this long on a batch while callers wait (a long call runs): the "
                                         "router polls it, and it answers with the replies of the calls "
                                         "it finished before (a short call's reply does not wait for a long "
                                         "call batched after it); one such poll is out at a time "
                                         "(docs/faults.md, rows 76 and 81)")
    primary_inflight_max: Optional[int] = Field(
        None, ge=1, description="batches outstanding to the primary (default: 1 for reception order, "
        "8 otherwise, so the primary's scheduler sees every waiting call)")

    data_plane: Literal["direct", "ray"] = Field(
        "direct", description="direct: the router sends Delivers to the replicas over its own authenticated "
        "TCP connections; ray: as Ray actor calls (the fallback)")
    port_range: Optional[Tuple[int, int]] = Field(
        None, description="direct data plane: (first, last) TCP ports a replica listens on, on its node's IP "
        "(None: any free port); open them between the nodes")
    frame_bytes_max: int = Field(64 * 1024 * 1024, ge=1024, description="direct data plane: the largest frame; "
                                 "larger messages take a Ray call, a peer sending one is disconnected")
    heartbeat_interval_s: float = Field(HEARTBEAT_INTERVAL_DEFAULT_S, gt=0, description="direct data plane: a "
                                        "link silent this long gets a heartbeat (traffic counts as liveness: a "
                                        "busy link sends none); unset, 0.25 or less, derived from "
                                        "failure_timeout_s and heartbeat_misses_max so that the links suspect "
                                        "a hung replica first (derived_heartbeat_interval_s)")
    heartbeat_misses_max: int = Field(4, ge=1, description="direct data plane: heartbeats missed in a row that "
                                      "make a replica suspected (hung or cut off): after about "
                                      "(heartbeat_misses_max + 1) * heartbeat_interval_s of silence")

    @field_validator("port_range")
    @classmethod
    def _check_port_range(cls, v: Optional[Tuple[int, int]]) -> Optional[Tuple[int, int]]:
        if v is not None and not 1 <= v[0] <= v[1] <= 65535:
            raise ValueError("port_range must be (first, last) with 1 <= first <= last <= 65535")
        return v

    @field_validator("scheduling")
    @classmethod
    def _check_scheduling(cls, v: Any) -> Any:
        make_scheduler(v)  # raises ConfigError naming the choices
        return v

    @model_validator(mode="after")
    def _check_times(self) -> "ReplicationSettings":
        if "heartbeat_interval_s" not in self.model_fields_set:
            # not marked as set: ``.options(failure_timeout_s=...)`` derives it again
            self.__dict__["heartbeat_interval_s"] = self.derived_heartbeat_interval_s()
        if self.failure_timeout_s <= self.heartbeat_s:
            raise ValueError("failure_timeout_s must be greater than heartbeat_s")
        if self.min_replicas is not None and self.min_replicas > self.replicas:
            raise ValueError("min_replicas must be <= replicas")
        if self.heartbeat_interval_s < self.tick_s:
            raise ValueError("heartbeat_interval_s must be at least tick_s")
        return self

    def derived_heartbeat_interval_s(self) -> float:
        """``heartbeat_interval_s`` when the user did not set it: the default (0.25 s), or less when
        ``failure_timeout_s`` is short, so that the direct links suspect a hung replica after
        ``LINK_SUSPICION_SHARE`` of ``failure_timeout_s`` (``failure_timeout_s=1.0`` with 4 misses:
        0.125 s, suspected after 0.625 s), never below ``tick_s``.

        Returns:
            The interval in seconds.
        """
        share_s = self.failure_timeout_s * LINK_SUSPICION_SHARE / (self.heartbeat_misses_max + 1)
        return max(self.tick_s, min(HEARTBEAT_INTERVAL_DEFAULT_S, share_s))

    def heartbeats_set(self) -> bool:
        """Whether the user set ``heartbeat_interval_s`` or ``heartbeat_misses_max`` explicitly."""
        return bool({"heartbeat_interval_s", "heartbeat_misses_max"} & self.model_fields_set)

    def link_suspicion_s(self) -> float:
        """The longest a hung replica's direct link stays unsuspected after it was last heard from:
        ``(heartbeat_misses_max + 1) * heartbeat_interval_s``."""
        return (self.heartbeat_misses_max + 1) * self.heartbeat_interval_s

    def suspicion_order_problem(self) -> Optional[str]:
        """What is wrong with the order of the two failure detectors, if anything.

        On the direct data plane the link heartbeats are meant to suspect a hung or cut-off
        replica before the core's own silence timeout (``failure_timeout_s``) does. Set the other
        way round they never fire first: the settings still work (the replica is removed after
        ``failure_timeout_s``), but the heartbeats only cost traffic. Not an error: a user may
        lower ``failure_timeout_s`` alone to detect failures sooner.

        Returns:
            A message naming both settings and what to change, or None when the order is right
            (or the data plane is ``"ray"``, which has no link heartbeats).
        """
        if self.data_plane != "direct" or self.link_suspicion_s() < self.failure_timeout_s:
            return None
        return (f"heartbeat_interval_s={self.heartbeat_interval_s} and heartbeat_misses_max="
                f"{self.heartbeat_misses_max} suspect a hung replica only after "
                f"(heartbeat_misses_max + 1) * heartbeat_interval_s = {self.link_suspicion_s():g} s, not before "
                f"failure_timeout_s={self.failure_timeout_s}: the core's timeout removes it first and the "
                f"direct links' heartbeats never fire first; lower heartbeat_interval_s or heartbeat_misses_max "
                f"(or raise failure_timeout_s) to have them detect a hung replica sooner")

    def ticks(self, seconds: float) -> int:
        """Seconds to ticks, at least 1."""
        return max(1, round(seconds / self.tick_s))

    def primary_inflight_depth(self) -> int:
        """Batches outstanding to the primary."""
        if self.primary_inflight_max is not None:
            return self.primary_inflight_max
        return 1 if self.scheduling == "reception" else 8

    def replica_threads(self) -> int:
        """A replica actor's Ray threads (its ``max_concurrency``, and its direct link's worker
        threads): one per Deliver that may be outstanding to it as the primary, plus
        ``REPLICA_SPARE_THREADS`` for the router's control calls (state queries, checkpoints, retire).

        Returns:
            The thread count.
        """
        return self.primary_inflight_depth() + REPLICA_SPARE_THREADS

    def link_settings(self) -> LinkSettings:
        """The direct links' heartbeats in ticks (:class:`ftactors.host.links.LinkSettings`)."""
        return LinkSettings(heartbeat_interval_ticks=self.ticks(self.heartbeat_interval_s),
                            heartbeat_misses_max=self.heartbeat_misses_max)

    def spare_settings(self) -> SpareSettings:
        """The warm spares in ticks (:class:`ftactors.host.spares.SpareSettings`): pinged every
        ``heartbeat_s``, presumed dead after ``failure_timeout_s`` of silence."""
        heartbeat = self.ticks(self.heartbeat_s)
        return SpareSettings(spares=self.spares,
                             respawn_ticks=0 if self.spare_respawn_delay_s == 0 else self.ticks(self.spare_respawn_delay_s),
                             heartbeat_ticks=heartbeat,
                             timeout_ticks=max(self.ticks(self.failure_timeout_s), heartbeat + 1))

    def core_config(self) -> CoreConfig:
        """The core's settings in ticks."""
        return CoreConfig(
            style=self.style,
            checkpoint_every_messages=self.checkpoint_every,
            null_message_ticks=self.ticks(self.null_message_after_s),
            heartbeat_ticks=self.ticks(self.heartbeat_s),
            failure_timeout_ticks=max(self.ticks(self.failure_timeout_s), self.ticks(self.heartbeat_s) + 1),
            sequence_gap_ticks=self.ticks(self.reorder_wait_s),
            recovery_timeout_ticks=max(self.ticks(self.failure_timeout_s), 2),
            reply_cache_max=self.reply_cache_max,
            sources_max=self.sources_max,
            log_max=self.log_max,
            # a replica holds the calls in flight and, lagging, up to log_max more before it is
            # replaced: the router refuses calls past this sum, so it replaces a lagging backup first
            pending_max=self.inflight_max + self.log_max,
            inflight_max=self.inflight_max,
            batch_max=self.batch_max,
            primary_inflight_max=self.primary_inflight_depth(),
            backup_inflight_max=1,
            relay_delay_ticks=0 if self.relay_after_s == 0 else self.ticks(self.relay_after_s),
            digest_every_messages=self.digest_every,
            min_replicas=self.min_replicas or self.replicas,
            query_on_failover=self.query_on_failover,
            replies_wait_for_backup=self.replies_wait_for_backup,
            busy_poll_ticks=BUSY_POLL_OFF_TICKS if self.busy_poll_s is None else self.ticks(self.busy_poll_s),
        )


def first_error(exc: ValidationError, default: str) -> Tuple[str, str]:
    """The first problem of a validation error: (dotted field name, message)."""
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"]) or default, err["msg"]


def read_yaml_section(path: Union[str, Path], section: str) -> Dict[str, Any]:
    """A YAML file's ``section:`` mapping, or its top level when it has no such section.

    Raises:
        ConfigError: a missing file, bad YAML, or a section that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data = loaded.get(section, loaded)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the {section}: section must be a mapping")
    return dict(data)


def load_settings(config: Union[str, Path, Dict[str, Any], None] = None, **overrides: Any) -> ReplicationSettings:
    """Build settings from a YAML file or dict, then keyword overrides.

    Args:
        config: a YAML path (its top level, or its ``replication:`` section), a dict, or None.
        **overrides: fields that win over the file.

    Returns:
        Validated settings.

    Raises:
        ConfigError: a missing file, bad YAML, a bad field or a removed one (``REMOVED_SETTINGS``; the
            message names it).
    """
    data: Dict[str, Any] = {}
    if isinstance(config, (str, Path)):
        data = read_yaml_section(config, "replication")
    elif isinstance(config, dict):
        data = dict(config)
    elif config is not None:
        raise ConfigError(f"config must be a path or a dict, got {type(config).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    removed = sorted(set(data) & set(REMOVED_SETTINGS))
    if removed:
        raise ConfigError(f"replication setting {removed[0]!r} was {REMOVED_SETTINGS[removed[0]]}")
    try:
        settings = ReplicationSettings(**data)
    except ValidationError as exc:
        field, msg = first_error(exc, "settings")
        raise ConfigError(f"invalid replication setting {field!r}: {msg}") from None
    _warn_once(settings)
    return settings


def _warn_once(settings: ReplicationSettings) -> None:
    """Log :meth:`ReplicationSettings.suspicion_order_problem` once per process and combination
    (the actors rebuild their settings without :func:`load_settings`: they do not repeat it), only
    when the user set the heartbeats: unset, they are derived from ``failure_timeout_s`` (a
    ``failure_timeout_s`` too short even for heartbeats every ``tick_s`` is not the user's doing).

    Args:
        settings: validated settings.
    """
    problem = settings.suspicion_order_problem()
    key = (settings.heartbeat_interval_s, settings.heartbeat_misses_max, settings.failure_timeout_s)
    if problem is None or key in _warned or not settings.heartbeats_set():
        return
    _warned[key] = None
    while len(_warned) > WARNED_MAX:
        _warned.popitem(last=False)
    log.warning("ftactors settings: %s", problem)
