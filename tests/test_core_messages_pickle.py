"""Every core message pickles and comes back equal, through every pickler a message meets.

A caller's ``Request`` crosses Ray's serializer (cloudpickle) on every call, and the Delivers and
Delivereds cross ``ftactors.runtime.wire``. The messages pickle as their fields' values and are
rebuilt through their constructors (``__reduce__``), so a forged or corrupted pickle is checked by
the same ``__post_init__`` as a message built in code; ``Kind`` pickles by name (issue 11).
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any, List

import cloudpickle
import pytest

from ftactors.core import messages as m
from ftactors.core.errors import RemoteProtocolError

MID = m.MsgId("c", 3)
ANN = m.Announcement("g", 2, 7, MID, nondet=(1.5, "x"), resume=1, wake=("reply", "c#2"))
REP = m.Reply(MID, "g", 2, 7, m.Outcome(True, {"v": 1}), announcements=(ANN,))
CP = m.Checkpoint("g", 2, 7, state=b"state", dedup={"c": 3}, digest="d")
NV = m.NewView(2, ("r0", "r1"))
REQUESTS = [m.Request(kind=k, msg_id=m.MsgId("c", i), group="g", method="m", payload=b"args", priority=2,
                      deadline_tick=9, resources=("gpu",), ack_below=2, source_view=1, peer_announcements=(ANN,),
                      size_bytes=4, holds=(((1,), 2, 2), ((), 3, 3)))
            for i, k in enumerate(sorted(m.REQUEST_KINDS), start=1)]

#: one message of every kind (the three request kinds are Requests)
EXAMPLES: List[Any] = [
    MID, ANN, m.Outcome(False, None), REP, CP, NV, *REQUESTS,
    m.Deliver(view=2, requests=tuple(REQUESTS), announcements=(ANN,), reply_copies=(REP,), new_view=NV,
              checkpoint=CP, snapshot_wanted=True, join=True, give_up_from=4),
    m.Deliver(view=3),  # a heartbeat / null message
    m.Delivered("r0", 2, replies=(REP,), announcements=(ANN,), acked_position=7, checkpoint=CP,
                digests=((7, "d"),), suspended=1, reply_copies=(REP,)),
    m.StateReport("r1", 2, 6, requests=tuple(REQUESTS), announcements=(ANN,), source_views=(("A", 3),)),
]

PICKLERS = {
    **{f"pickle-{p}": (lambda o, p=p: pickle.dumps(o, protocol=p)) for p in range(2, pickle.HIGHEST_PROTOCOL + 1)},
    "cloudpickle": cloudpickle.dumps,  # what Ray uses for a task's arguments
}


def test_every_kind_has_an_example() -> None:
    kinds = {x.kind for x in EXAMPLES if isinstance(getattr(x, "kind", None), m.Kind)}
    # NULL is a Deliver without requests, STATE_QUERY and JOIN are Delivers' flags: no class of their own
    assert kinds | {m.Kind.NULL, m.Kind.STATE_QUERY, m.Kind.JOIN} == set(m.Kind)


@pytest.mark.parametrize("pickler", sorted(PICKLERS))
@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda x: type(x).__name__)
def test_every_message_round_trips_equal(msg: Any, pickler: str) -> None:
    back = pickle.loads(PICKLERS[pickler](msg))
    assert type(back) is type(msg)
    assert back == msg
    assert copy.copy(msg) == msg and copy.deepcopy(msg) == msg


@pytest.mark.parametrize("kind", list(m.Kind), ids=lambda k: k.name)
def test_kind_pickles_by_name_and_comes_back_the_same_member(kind: m.Kind) -> None:
    for dumps in PICKLERS.values():
        body = dumps(kind)
        assert kind.name.encode() in body
        assert pickle.loads(body) is kind


@pytest.mark.parametrize("cls", [c for c in vars(m).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
                                 and c.__module__ == m.__name__], ids=lambda c: c.__name__)
def test_messages_pickle_as_their_fields_through_the_constructor(cls: type) -> None:
    """Every field is in the pickle, in the constructor's order: nothing is dropped on the way."""
    ex = next(x for x in EXAMPLES if type(x) is cls)
    if "__reduce__" in vars(cls):
        rebuild, args = ex.__reduce__()
        assert rebuild is cls
        assert args == tuple(getattr(ex, f.name) for f in dataclasses.fields(cls))


def _forged(cls: type, fields: tuple) -> bytes:
    """A pickle that rebuilds ``cls`` from ``fields``, as a peer could send it."""
    class Forge:
        def __reduce__(self) -> Any:
            return cls, fields
    return pickle.dumps(Forge(), protocol=5)


@pytest.mark.parametrize("cls,fields,match", [
    (m.MsgId, ("", 1), "source"),
    (m.MsgId, ("c", 0), "seq"),
    (m.Request, (m.Kind.REPLY, MID, "g", "m"), "kind"),
    (m.Request, (m.Kind.SYNC_REQUEST, MID, "g", "m", None, 0, None, (), 0, None, (), 0, "holds"), "holds"),
    (m.Announcement, ("g", 1, 0, MID), "position"),
])
def test_a_forged_pickle_with_invalid_fields_is_rejected_by_the_constructor(cls: type, fields: tuple,
                                                                          match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        pickle.loads(_forged(cls, fields))


def test_a_message_pickled_by_the_old_dataclass_state_is_checked_too() -> None:
    """A MsgId that bypassed its constructor (``object.__setattr__``) does not survive a round trip:
    its ``__reduce__`` rebuilds it through the constructor."""
    bad = object.__new__(m.MsgId)
    object.__setattr__(bad, "source", "c")
    object.__setattr__(bad, "seq", -1)
    with pytest.raises(RemoteProtocolError, match="seq"):
        pickle.loads(pickle.dumps(bad))
