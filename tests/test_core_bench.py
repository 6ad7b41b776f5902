"""The core micro-benchmark runs to completion and reports a cost for every role."""

from ftactors.testing.corebench import run


def test_corebench_answers_every_message_and_reports_costs() -> None:
    per = run(messages=500, batch=16)
    assert set(per) == {"router", "primary", "backup", "total"}
    assert all(v > 0 for v in per.values())
    assert per["total"] >= per["primary"]
