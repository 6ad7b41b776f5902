"""Ray for the ``ftactors`` commands: a local Ray, an existing cluster, or N nodes on this machine."""

from __future__ import annotations

import os
import socket
from typing import Any, Dict, Optional

from ftactors.chaos.errors import CampaignError

#: Fast node-failure detection (about 1.5 s instead of about 13 s); see configs/cluster.yaml.
HEALTH_CHECK_ENV = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
                    "RAY_health_check_timeout_ms": "1000"}

#: Messages Ray prints for what a chaos run does on purpose (shown with --debug).
_EXPECTED = ("A worker died or was killed while executing a task",
             "creating a detached actor in an anonymous namespace")


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with one line, when ``host:port`` does not answer.

    Raises:
        CampaignError: unreachable or malformed address.
    """
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise CampaignError(f"--address {address!r}: expected host:port, ray://host:port, auto or local")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise CampaignError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


def start_cluster(nodes: int, quiet: Dict[str, Any]) -> Any:
    """``nodes`` Ray nodes on this machine (one CPU each), joined by this driver.

    Raises:
        CampaignError: ``nodes`` < 1.
    """
    import ray
    from ray.cluster_utils import Cluster

    if nodes < 1:
        raise CampaignError(f"--nodes must be >= 1, got {nodes}")
    for k, v in HEALTH_CHECK_ENV.items():  # before the GCS starts, so that it inherits them
        os.environ.setdefault(k, v)
    # A prior local ray.init in this process sets RAY_AUTH_MODE=token; be explicit so that
    # other drivers (`ftactors status --address ...`) can join this cluster.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, **quiet)
    return cluster


def start_ray(address: Optional[str] = None, nodes: Optional[int] = None, debug: bool = False,
              num_cpus: int = 4) -> Any:
    """Connect to Ray: local (default), an existing cluster (``address``), or ``nodes`` local nodes.

    Returns:
        The ``ray.cluster_utils.Cluster`` when ``nodes`` is given, else None.

    Raises:
        CampaignError: bad combination, or the cluster cannot be reached.
    """
    import ray

    quiet: Dict[str, Any] = dict(logging_level="info" if debug else "error", log_to_driver=debug,
                                 include_dashboard=False)
    if not debug:
        _quiet_expected_warnings()
    if nodes is not None:
        if address is not None:
            raise CampaignError("--nodes starts a local cluster; it cannot be combined with --address")
        return start_cluster(nodes, quiet)
    if address is None or address == "local":
        ray.init(address="local", num_cpus=num_cpus, **quiet)
        return None
    check_address(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CampaignError(f"cannot connect to Ray at {address}: {first}") from None
    return None


def _quiet_expected_warnings() -> None:
    """Drop Ray's driver-side notices about workers we killed on purpose."""
    try:
        from ray._private import worker as ray_worker
    except Exception:  # pragma: no cover - a Ray without this internal
        return
    original = ray_worker.print_to_stdstream
    if getattr(original, "_ftactors_quiet", False):
        return

    def filtered(data: Any, *args: Any, **kwargs: Any) -> Any:
        lines = [ln for ln in data.get("lines", []) if not any(e in ln for e in _EXPECTED)]
        if not lines:
            return None
        return original({**data, "lines": lines}, *args, **kwargs)

    filtered._ftactors_quiet = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = filtered


def stop_ray(cluster: Any = None) -> None:
    """Leave Ray, and stop the local cluster if this process started one."""
    import ray

    try:
        ray.shutdown()
    finally:
        if cluster is not None:
            cluster.shutdown()
