"""The primary's Deliver-path harness (ftactors.bench.primary_path) runs and its replica answers each call."""

from ftactors.bench.primary_path import PrimaryPath, measure


def test_harness_answers_each_call_with_the_methods_value():
    path = PrimaryPath(calls_per_tick=5)
    res = path.run(300)  # call() raises unless each reply is the counter's next value
    assert path.expected == 300 and len(path.values) == 300
    assert sorted(path.values.values()) == list(range(1, 301))
    assert res["delivers"] >= 300 and res["us_per_deliver"] > 0
    assert path.replica.obj.n == 300


def test_measure_reports_a_minimum():
    res = measure(calls=50, repeats=2, warmup=10)
    assert res["us_per_deliver"] == min(r["us_per_deliver"] for r in res["runs"])


def test_the_router_sees_no_divergence():
    path = PrimaryPath(calls_per_tick=5)
    path.run(450)  # digests are compared every 200 messages
    # before the backups took the primary's digest: "[('bench-r1', 200), ('bench-r2', 200), ...]"
    assert not path.router.diverged and path.router.view == 1
    assert path.router.counts["divergences"] == 0 and path.router.counts["resyncs"] == 0
