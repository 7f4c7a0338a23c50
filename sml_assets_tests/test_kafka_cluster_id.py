"""The KRaft cluster id devstack and the tests' private broker format their storage with: never one
that `kafka.tools.StorageTool format -t` refuses (an id starting with '-' reads as an option)."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sml_assets_tests.faults import devstack_kafka

BASE64URL_22 = re.compile(r"[A-Za-z0-9_-]{22}")
RESERVED = [bytes(16), bytes(15) + b"\x01"]

new_cluster_id = devstack_kafka().new_cluster_id

sixteen_bytes = st.binary(min_size=16, max_size=16)
dash_first = st.tuples(st.integers(0xF8, 0xFB), st.binary(min_size=15, max_size=15)).map(
    lambda parts: bytes([parts[0]]) + parts[1]
)
"""16 bytes whose first 6 bits are 111110, base64url's '-'."""
refused = st.one_of(dash_first, st.sampled_from(RESERVED))
accepted = sixteen_bytes.filter(lambda raw: raw not in RESERVED and not base64.urlsafe_b64encode(raw).startswith(b"-"))


def assert_accepted(cluster_id: str) -> bytes:
    assert BASE64URL_22.fullmatch(cluster_id), cluster_id
    assert not cluster_id.startswith("-"), cluster_id
    raw = base64.urlsafe_b64decode(cluster_id + "==")
    assert len(raw) == 16 and raw not in RESERVED, cluster_id
    assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == cluster_id
    return raw


def draws(values: list[bytes]) -> Iterator[bytes]:
    yield from values
    raise AssertionError("new_cluster_id drew more values than it was given")


def test_dash_first_bytes_really_encode_to_a_leading_dash() -> None:
    assert base64.urlsafe_b64encode(b"\xf8" + bytes(15)).startswith(b"-")
    assert base64.urlsafe_b64encode(b"\xfb" + b"\xff" * 15).startswith(b"-")
    assert not base64.urlsafe_b64encode(b"\xf7" + b"\xff" * 15).startswith(b"-")
    assert not base64.urlsafe_b64encode(b"\xfc" + bytes(15)).startswith(b"-")


@settings(max_examples=1000, deadline=None)
@given(bad=st.lists(refused, max_size=5), good=accepted)
def test_refused_draws_are_drawn_again_and_the_first_accepted_one_is_the_id(bad: list[bytes], good: bytes) -> None:
    values = iter(draws([*bad, good]))
    cluster_id = new_cluster_id(lambda: next(values))
    assert assert_accepted(cluster_id) == good


@settings(max_examples=3000, deadline=None)
@given(raw=sixteen_bytes)
def test_any_accepted_draw_is_kept_as_is(raw: bytes) -> None:
    encoded = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    if encoded.startswith("-") or raw in RESERVED:
        return
    assert new_cluster_id(lambda: raw) == encoded
    assert_accepted(encoded)


def test_a_large_sample_of_real_ids_holds_none_the_tool_refuses() -> None:
    """100,000 ids from the default draw (uuid4): about 1,600 raw draws start with '-'; none of the ids."""
    ids = [new_cluster_id() for _ in range(100_000)]
    for cluster_id in ids:
        assert BASE64URL_22.fullmatch(cluster_id) and not cluster_id.startswith("-"), cluster_id
    assert len(set(ids)) == len(ids)
    assert all(len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 for cluster_id in ids)


def test_the_default_draw_is_a_version_4_uuid() -> None:
    raw = base64.urlsafe_b64decode(new_cluster_id() + "==")
    assert uuid.UUID(bytes=raw).version == 4


def test_a_draw_of_the_wrong_length_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="16 bytes, the draw gave 15"):
        new_cluster_id(lambda: bytes(15))
