"""Integration: a replicated actor behaves like a Ray actor (real Ray, local)."""

from __future__ import annotations

import asyncio
import pickle

import pytest
import ray

import ftactors
from tests.conftest import converged, wait_for

pytestmark = pytest.mark.ray


class Account:
    def __init__(self, balance: int = 0) -> None:
        self.balance = balance
        self.log: list = []

    def deposit(self, amount: int) -> int:
        if amount < 0:
            raise ValueError(f"negative deposit {amount}")
        self.balance += amount
        return self.balance

    def get(self) -> int:
        return self.balance

    def note(self, item: str) -> None:
        self.log.append(item)

    def notes(self) -> list:
        return list(self.log)

    def stamp(self) -> tuple:
        value = (ftactors.now(), ftactors.random())
        self.log.append(value)
        return value

    async def adeposit(self, amount: int) -> int:
        await asyncio.sleep(0)
        self.balance += amount
        return self.balance

    def _secret(self) -> int:
        return 42


@pytest.fixture(scope="module")
def acct(ray_local):
    h = ftactors.replicated(replicas=3)(ray.remote(Account)).remote(100)
    yield h
    ftactors.shutdown(h)


def test_call_returns_real_objectref_with_result(acct):
    ref = acct.deposit.remote(5)
    assert isinstance(ref, ray.ObjectRef)
    before = ray.get(acct.get.remote())
    assert ray.get(acct.deposit.remote(10)) == before + 10


def test_describe_reports_group(acct):
    info = ftactors.describe(acct)
    assert isinstance(info, ftactors.GroupInfo)
    assert info.style == "semi-active" and info.view >= 1
    assert info.primary.role == "primary"
    assert [b.role for b in info.backups] == ["backup", "backup"]
    assert len({r.pid for r in info.replicas}) == 3
    assert all(isinstance(r.node_id, str) and r.node_id for r in info.replicas)


def test_backups_reach_same_state(acct):
    for i in range(20):
        acct.deposit.remote(1)
    final = ray.get(acct.deposit.remote(1))
    wait_for(lambda: converged(acct, 3), what="backups to catch up with equal digests")
    assert ray.get(acct.get.remote()) == final


def test_wait_await_and_actor_pool(acct):
    refs = [acct.deposit.remote(1) for _ in range(10)]
    ready, not_ready = ray.wait(refs, num_returns=10, timeout=30)
    assert len(ready) == 10 and not not_ready

    async def main():
        return await acct.deposit.remote(0)

    assert asyncio.run(main()) == ray.get(acct.get.remote())
    pool = ray.util.ActorPool([acct])
    out = list(pool.map(lambda a, v: a.deposit.remote(v), [0, 0, 0]))
    assert len(out) == 3 and out[0] == out[2]


def test_exception_arrives_with_its_type_and_state_stays_equal(acct):
    before = ray.get(acct.get.remote())
    with pytest.raises(ValueError, match="negative deposit"):
        ray.get(acct.deposit.remote(-1))
    assert ray.get(acct.get.remote()) == before
    wait_for(lambda: converged(acct, 3), what="equal digests")


def test_driver_defined_exception_and_value_types_are_the_callers_own(ray_local):
    """A class defined in the driver's script (pickled by value, like ``__main__``'s) comes back as itself.

    With a plain Ray actor, ``except MyError`` catches the method's exception and a returned
    ``Point`` is a ``Point``: the class travels by value under one tracker id, and unpickling it
    again in the driver finds the driver's own class. Both must hold through the replicas and the
    router too.
    """

    class MyError(Exception):
        pass

    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    class Shapes:
        def boom(self) -> None:
            raise MyError("custom boom")

        def point(self, p: Point) -> Point:
            return Point(p.x + 1)

    h = ftactors.replicated(replicas=2)(Shapes).remote()
    try:
        with pytest.raises(MyError, match="custom boom"):
            ray.get(h.boom.remote())
        p = ray.get(h.point.remote(Point(1)))
        assert isinstance(p, Point) and p.x == 2
    finally:
        ftactors.shutdown(h)


def test_a_bad_ray_option_value_is_reported_as_itself_not_as_a_name_clash(ray_local):
    """Ray refuses ``num_cpus=-1`` with a ``ValueError`` naming it; creating the group used to turn every
    ``ValueError`` of a replica's creation into "a replicated group named ... already exists"."""
    cls = ftactors.replicated(replicas=2)(Account)
    with pytest.raises(ValueError) as err:
        cls.options(num_cpus=-1).remote()
    assert "already exists" not in str(err.value) and "num_cpus" in str(err.value), str(err.value)


def test_handle_pickles_into_tasks_and_actors(acct):
    @ray.remote
    def use(h):
        return ray.get(h.deposit.remote(0))

    @ray.remote
    class User:
        def __init__(self, h):
            self.h = h

        def go(self):
            return ray.get(self.h.deposit.remote(0))

    expected = ray.get(acct.get.remote())
    assert ray.get(use.remote(acct)) == expected
    assert ray.get(User.remote(acct).go.remote()) == expected
    assert pickle.loads(pickle.dumps(acct)).group == acct.group


def test_async_methods(acct):
    before = ray.get(acct.get.remote())
    assert ray.get(acct.adeposit.remote(3)) == before + 3


def test_oneway_message_returns_none_and_takes_effect(acct):
    assert acct.note.options(oneway=True).remote("hello") is None
    wait_for(lambda: "hello" in ray.get(acct.notes.remote()), what="one-way message to take effect")


def test_nondeterminism_helpers_are_replayed_by_backups(acct):
    stamps = ray.get([acct.stamp.remote() for _ in range(5)])
    assert len({s[1] for s in stamps}) == 5
    ray.get(acct.deposit.remote(0))
    wait_for(lambda: converged(acct, 3), what="equal digests after now()/random()")


def test_bad_input_errors_at_call_site_and_group_keeps_working(acct):
    import threading

    with pytest.raises(TypeError, match="cannot be serialized"):
        acct.deposit.remote(threading.Lock())
    with pytest.raises(AttributeError, match="no method 'withdraw'"):
        acct.withdraw
    with pytest.raises(AttributeError, match="private"):
        acct._secret
    with pytest.raises(TypeError, match="priority"):
        acct.deposit.options(priority="high")
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        acct.deposit(1)
    before = ray.get(acct.get.remote())
    assert ray.get(acct.deposit.remote(1)) == before + 1


def test_message_size_bound(ray_local):
    h = ftactors.replicated(replicas=2, max_message_bytes=1000)(Account).remote()
    try:
        with pytest.raises(ValueError, match="max_message_bytes"):
            h.note.remote("x" * 5000)
        assert ray.get(h.deposit.remote(1)) == 1
    finally:
        ftactors.shutdown(h)


def test_large_argument_goes_through_object_store(ray_local):
    h = ftactors.replicated(replicas=3, large_arg_bytes=1000)(Account).remote()
    try:
        blob = "y" * 200_000
        ray.get(h.note.remote(blob))
        assert ray.get(h.notes.remote()) == [blob]
        wait_for(lambda: converged(h, 3), what="backups to apply the large argument")
    finally:
        ftactors.shutdown(h)


def test_configuration_errors_name_the_problem(ray_local):
    with pytest.raises(ftactors.ConfigError, match="replicas"):
        ftactors.replicated(replicas=1)(Account)
    with pytest.raises(ftactors.ConfigError, match="style"):
        ftactors.replicated(style="active")(Account)
    with pytest.raises(ftactors.ConfigError, match="scheduling"):
        ftactors.replicated(scheduling="random")(Account)
    with pytest.raises(ftactors.ConfigError, match="bogus"):
        ftactors.replicated(bogus=1)(Account)
    with pytest.raises(TypeError, match="decorates a class"):
        ftactors.replicated()(lambda: None)
    with pytest.raises(ftactors.ConfigError, match="strict-spread"):
        ftactors.replicated(replicas=3, placement="strict-spread")(Account).remote()


def test_handle_after_shutdown(ray_local):
    h = ftactors.replicated(replicas=2)(Account).remote()
    assert ray.get(h.deposit.remote(1)) == 1
    ftactors.shutdown(h)
    with pytest.raises(ftactors.GroupShutdownError):
        h.deposit.remote(1)
    with pytest.raises(ftactors.NotReplicatedError):
        ftactors.describe(object())


def test_replies_a_caller_received_are_forgotten(acct):
    """The exactly-once tables keep a reply only until its caller has it (Ray retries only a
    call whose result did not arrive), so they stay near the calls in flight, not the calls made."""
    for _ in range(200):
        ray.get(acct.deposit.remote(1))
    ray.get([acct.deposit.remote(1) for _ in range(200)])
    for _ in range(40):  # a caller checks which results arrived every few calls
        ray.get(acct.get.remote())
    info = ftactors.describe(acct)
    assert 0 <= info.retained["replies"] <= 64, info.retained
    wait_for(lambda: all(0 <= r.replies_cached <= 64 for r in ftactors.describe(acct).replicas),
             what="replicas to forget acknowledged replies")


def test_one_callers_pipelined_calls_run_in_submission_order(ray_local):
    h = ftactors.replicated(replicas=2)(Account).remote()
    try:
        ray.get([h.note.remote(str(i)) for i in range(300)])
        assert ray.get(h.notes.remote()) == [str(i) for i in range(300)]
    finally:
        ftactors.shutdown(h)
