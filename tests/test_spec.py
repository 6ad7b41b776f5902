"""The one GroupSpec: what the runtime ships to its router and replicas, and what the simulator
builds its cores from. No Ray."""

from __future__ import annotations

import dataclasses

import cloudpickle
import pytest

from ftactors.core.config import CoreConfig
from ftactors.runtime.settings import load_settings
from ftactors.spec import GroupSpec
from ftactors.testing import Simulator, draw_options


def runtime_spec() -> GroupSpec:
    s = load_settings(replicas=3, style="passive", scheduling="priority")
    return GroupSpec(group="g", config=s.core_config(), scheduling=s.scheduling, settings=s.model_dump(),
                     cls_bytes=cloudpickle.dumps(dict), init_bytes=cloudpickle.dumps(((), {})),
                     actor_options={"num_cpus": 0}, namespace="shop")


def test_the_runtime_spec_survives_pickling_and_the_router_gets_it_without_the_class() -> None:
    spec = runtime_spec()
    back = cloudpickle.loads(cloudpickle.dumps(spec))
    assert back == spec and back.config.style == "passive" and back.scheduling == "priority"
    light = dataclasses.replace(spec, cls_bytes=b"", init_bytes=b"")
    assert not light.cls_bytes and light.config == spec.config and light.namespace == "shop"


def test_the_simulator_builds_its_groups_from_the_same_spec() -> None:
    sim = Simulator(draw_options(7))
    assert all(isinstance(spec, GroupSpec) and spec.group == name for name, spec in sim.groups.items())
    assert set(sim.models) == set(sim.groups)
    assert all(spec.settings == {} and spec.cls_bytes == b"" for spec in sim.groups.values())


def test_a_spec_needs_a_name_and_a_core_config() -> None:
    with pytest.raises(ValueError, match="name"):
        GroupSpec(group="", config=CoreConfig())
    with pytest.raises(TypeError, match="CoreConfig"):
        GroupSpec(group="g", config={"style": "passive"})  # type: ignore[arg-type]
