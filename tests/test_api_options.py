"""Ray options a replicated class cannot honour are refused at decoration, with the reason and
what to do (no Ray session needed: nothing here creates a group)."""

from __future__ import annotations

import pytest
import ray

import ftactors


class Worker:
    def __init__(self) -> None:
        self.n = 0

    def step(self) -> int:
        self.n += 1
        return self.n


def test_max_concurrency_above_one_on_the_ray_class_is_refused_with_the_reason():
    with pytest.raises(ftactors.ConfigError) as err:
        ftactors.replicated(replicas=2)(ray.remote(max_concurrency=4)(Worker))
    message = str(err.value)
    assert "max_concurrency=4" in message and "@ray.remote on Worker" in message
    assert "one call at a time" in message and "Remove it" in message


def test_max_concurrency_in_options_or_settings_is_refused_with_the_reason():
    cls = ftactors.replicated(replicas=2)(Worker)
    with pytest.raises(ftactors.ConfigError, match=r"max_concurrency=8 in \.options\(\).*one call at a time"):
        cls.options(max_concurrency=8)
    with pytest.raises(ftactors.ConfigError, match=r"max_concurrency=2 in @ftactors\.replicated.*one call at a time"):
        ftactors.replicated(replicas=2, max_concurrency=2)(Worker)


def test_concurrency_groups_are_refused_with_the_reason():
    with pytest.raises(ftactors.ConfigError, match=r"concurrency_groups in @ray\.remote on Worker.*one call at a time"):
        ftactors.replicated(replicas=2)(ray.remote(concurrency_groups={"io": 2})(Worker))
    with pytest.raises(ftactors.ConfigError, match=r"concurrency_groups in \.options\(\)"):
        ftactors.replicated(replicas=2)(Worker).options(concurrency_groups={"io": 2})


def test_max_concurrency_one_is_what_ftactors_does_and_is_accepted():
    cls = ftactors.replicated(replicas=2)(ray.remote(max_concurrency=1, num_cpus=0)(Worker))
    assert "max_concurrency" not in cls._actor_options and cls._actor_options["num_cpus"] == 0
    assert "max_concurrency" not in cls.options(max_concurrency=1)._actor_options


def test_other_options_ftactors_sets_itself_say_what_to_do_instead():
    cls = ftactors.replicated(replicas=2)(Worker)
    with pytest.raises(ftactors.ConfigError, match=r"'max_restarts'.*replaces a failed replica itself"):
        cls.options(max_restarts=3)
    with pytest.raises(ftactors.ConfigError, match=r"'max_task_retries'.*exactly once"):
        cls.options(max_task_retries=2)
    with pytest.raises(ftactors.ConfigError, match=r"lifetime must be 'detached', 'non_detached' or None"):
        cls.options(lifetime="forever")  # Ray's lifetimes are supported (tests/test_ray_services.py)


@pytest.mark.parametrize("value", ["threaded", "async"])
def test_the_removed_router_actor_setting_is_refused_saying_it_was_removed(value, tmp_path):
    # the threaded router shell was removed (issue 11): a config that still names the setting is told so
    said = r"'router_actor' was removed on 2026-12-03: the router is always an async Ray actor.*drop the setting"
    with pytest.raises(ftactors.ConfigError, match=said):
        ftactors.replicated(replicas=2, router_actor=value)(Worker)
    with pytest.raises(ftactors.ConfigError, match=said):
        ftactors.replicated(replicas=2)(Worker).options(router_actor=value)
    path = tmp_path / "replication.yaml"
    path.write_text(f"replication:\n  replicas: 2\n  router_actor: {value}\n")
    with pytest.raises(ftactors.ConfigError, match=said):
        ftactors.replicated(config=str(path))(Worker)


def test_a_misspelt_option_in_options_is_refused_naming_it():
    """``.options(nme="orders")`` (a typo for ``name``) is neither a replication setting nor a Ray actor
    option. It used to be passed on to Ray for every replica, and ``.remote()`` then failed with a
    misleading "a replicated group named 'Worker-...' already exists"."""
    cls = ftactors.replicated(replicas=2)(Worker)
    with pytest.raises(ftactors.ConfigError, match=r"'nme' in \.options\(\).*neither a replication setting nor a Ray actor option"):
        cls.options(nme="orders")
    assert cls.options(num_cpus=0.5, name="orders") is not None  # real Ray options still pass


class Signatures:
    def plain(self, a, b=1):  # type: ignore[no-untyped-def]
        pass

    def keyword_only(self, a, *, key):  # type: ignore[no-untyped-def]
        pass

    def varargs(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        pass

    def positional_only(self, a, /, b=2):  # type: ignore[no-untyped-def]
        pass

    async def coroutine(self, a):  # type: ignore[no-untyped-def]
        pass

    @staticmethod
    def static(a):  # type: ignore[no-untyped-def]
        pass

    @classmethod
    def klass(cls, a):  # type: ignore[no-untyped-def]
        pass


def test_arguments_are_checked_as_python_binds_them_to_the_method_on_an_instance():
    """Row 61's check (with its shortcut for positional calls) against Python's own binding of
    every shape of call to the bound method, message included."""
    import inspect

    from ftactors.runtime.api import check_arguments, method_signatures

    names = ("plain", "keyword_only", "varargs", "positional_only", "coroutine", "static", "klass")
    params = method_signatures(Signatures, names)
    assert set(params) == set(names)
    for name in names:
        sig = inspect.signature(getattr(Signatures(), name))
        for nargs in range(4):
            for kwargs in ({}, {"a": 1}, {"key": 2}, {"b": 3}, {"zz": 1}, {"a": 1, "key": 2}):
                args = tuple(range(nargs))
                try:
                    sig.bind(*args, **kwargs)
                    want = None
                except TypeError as exc:
                    want = str(exc)
                try:
                    check_arguments(params[name], args, kwargs)
                    got = None
                except TypeError as exc:
                    got = str(exc)
                assert got == want, (name, args, kwargs)
