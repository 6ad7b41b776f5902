"""A caller's request crosses Ray as plain values (issue 11): ``flat_request`` / ``request_of``."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from ftactors.core import Announcement, Kind, MsgId, RemoteProtocolError, Request
from ftactors.runtime.router_actor import flat_request, request_of


def _request(**kw: Any) -> Request:
    fields = dict(kind=Kind.SYNC_REQUEST, msg_id=MsgId("c1.0", 7), group="g", method="inc",
                  payload=b"\x80\x05args", priority=2, deadline_tick=1234, resources=("gpu",), ack_below=3,
                  size_bytes=9)
    fields.update(kw)
    return Request(**fields)  # type: ignore[arg-type]


def test_a_flat_request_comes_back_equal_through_msgpack_lists() -> None:
    """msgpack gives lists back (and the router takes a tuple as well)."""
    req = _request()
    flat = flat_request(req)
    assert flat is not None
    back = request_of(msgpack.unpackb(msgpack.packb(flat), use_list=True))
    assert back == req and isinstance(back.resources, tuple)
    assert request_of(req) is req  # a Request (a nested call's, a copy's) is taken as it is


def test_a_flat_request_keeps_its_carried_announcements() -> None:
    ann = Announcement(group="g", view=1, position=4, msg_id=MsgId("c1.0", 6))
    req = _request(peer_announcements=(ann,))
    assert request_of(list(flat_request(req) or ())) == req


def test_requests_that_do_not_go_flat() -> None:
    """A nested call's (source view, calling paths) and arguments in the object store keep the
    Request, which Ray pickles (its ObjectRefs tracked)."""
    assert flat_request(_request(source_view=2)) is None
    assert flat_request(_request(holds=(((1, 2), 1, 2),))) is None
    assert flat_request(_request(payload=object())) is None


@pytest.mark.parametrize("bad", [
    None, "inc", (), (1, "c", 1, "g", "inc", b"", 0, None, (), 0, ()),  # not a request, too short
    (99, "c", 1, "g", "inc", b"", 0, None, [], 0, [], 0),  # no such kind
    (1, "c", 1, "g", "", b"", 0, None, [], 0, [], 0),  # no method
    (1, "c", 1, "g", "inc", b"", "high", None, [], 0, [], 0),  # priority not an int
    (1, "c", 1, "g", "inc", b"", 0, None, "gpu", 0, [], 0),  # resources not a sequence
    (1, "c", 1, "g", "inc", b"", 0, None, [], 0, [], -1),  # negative size
])
def test_a_malformed_flat_request_is_a_protocol_error(bad: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        request_of(bad)


def _ray_msgpack_fallbacks(value: Any) -> list:
    """What Ray's argument serialiser hands to its pickler instead of packing with msgpack: Ray packs
    plain values with msgpack (strict: a tuple is not one) and pickles each object it cannot pack."""
    from ray._raylet import MessagePackSerializer

    pickled: list = []

    def fallback(obj: Any) -> int:
        pickled.append(obj)
        return len(pickled) - 1

    MessagePackSerializer.dumps(value, fallback)
    return pickled


def test_ray_packs_a_flat_request_without_its_pickler() -> None:
    """The flat request exists so that Ray serialises a call with msgpack, not pickle (issue 11): a
    tuple anywhere in it sent the whole request to Ray's pickler (about 50 us a call, caller and router)."""
    assert _ray_msgpack_fallbacks(flat_request(_request())) == []
    assert _ray_msgpack_fallbacks(flat_request(_request(resources=(), deadline_tick=None))) == []


def test_only_carried_announcements_go_through_rays_pickler() -> None:
    ann = Announcement(group="g", view=1, position=4, msg_id=MsgId("c1.0", 6))
    assert _ray_msgpack_fallbacks(flat_request(_request(peer_announcements=(ann,)))) == [ann]
