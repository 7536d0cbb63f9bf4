"""Forks: inherited prefixes, sub-offsets, chains, soft-delete and cascading collection."""

from __future__ import annotations

import pytest

from service.log.base import (
    ChunkLog,
    ForkFrom,
    InvalidFork,
    InvalidOffset,
    Producer,
    StreamConfig,
    StreamConflict,
    StreamGone,
    StreamNotFound,
)
from service.log.offsets import ZERO, Offset
from tests.contract._support import BINARY, JSON, TEXT, append, content, entries, make, read_all

pytestmark = pytest.mark.asyncio

_BEYOND = Offset(9_999_999_999_999_999, 9_999_999_999_999_999)


async def fork(
    log: ChunkLog,
    path: str,
    source: str,
    offset: Offset | None = None,
    sub: int = 0,
    content_type: str | None = None,
    initial: tuple[bytes, ...] = (),
    **config: int | None,
) -> Offset:
    """Create a fork that must be new; return its tail."""
    info = await make(
        log, path, content_type, initial, fork=ForkFrom(source, offset, sub), **config
    )
    return info.next_offset


# -- creation ---------------------------------------------------------------------------------


async def test_fork_without_offset_inherits_everything_and_the_content_type(
    log: ChunkLog,
) -> None:
    await make(log, "/src", "application/json; charset=utf-8", [b'{"a":1}', b'{"b":2}'])
    info, created = await log.create("/f", StreamConfig(None, fork=ForkFrom("/src")))

    assert created is True
    assert info.content_type == "application/json; charset=utf-8"
    assert info.next_offset == Offset(2, 14)
    assert info.closed is False
    assert await entries(log, "/f") == [b'{"a":1}', b'{"b":2}']
    result = await log.read("/f", ZERO, 1024)
    assert result.content_type == "application/json; charset=utf-8"


async def test_fork_at_every_offset(log: ChunkLog) -> None:
    await make(log, "/src")
    anchors = [ZERO]
    for item in (b"A", b"B", b"C"):
        anchors.append(await append(log, "/src", item))

    for i, anchor in enumerate(anchors):
        tail = await fork(log, f"/f{i}", "/src", anchor)
        assert tail == anchor
        assert await content(log, f"/f{i}") == b"ABC"[:i]
        result = await log.read(f"/f{i}", ZERO, 1024)
        assert result.up_to_date is True


async def test_fork_offsets_continue_the_sources_numbering(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"source "])
    at = await append(log, "/src", b"data ")
    await fork(log, "/f", "/src", at)

    own = await append(log, "/f", b"fork only")

    assert own == Offset(3, 21)
    assert await content(log, "/f") == b"source data fork only"
    assert await content(log, "/f", at) == b"fork only"
    assert await content(log, "/f", Offset(1, 7)) == b"data fork only"


async def test_forks_and_sources_are_independent_after_the_fork(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"initial"])
    await fork(log, "/f", "/src")
    await append(log, "/src", b" extra")
    await append(log, "/f", b" own")

    assert await content(log, "/src") == b"initial extra"
    assert await content(log, "/f") == b"initial own"
    # The source's position after " extra" is not a position in the fork.
    with pytest.raises(InvalidOffset):
        await log.read("/f", Offset(2, 13), 1024)


async def test_fork_of_a_missing_source_is_not_found(log: ChunkLog) -> None:
    with pytest.raises(StreamNotFound):
        await log.create("/f", StreamConfig(TEXT, fork=ForkFrom("/nope")))
    with pytest.raises(StreamNotFound):
        await log.info("/f")


@pytest.mark.parametrize(
    ("offset", "sub"),
    [
        (_BEYOND, 0),
        (Offset(2, 10), 0),  # one entry past the tail
        (Offset(1, 3), 0),  # inside an entry
        (Offset(0, 1), 0),
        (None, 1),  # sub-offset at the tail: there is nothing to cut into
        (ZERO, 6),  # longer than the entry
    ],
    ids=["beyond", "past-tail", "mid-entry", "zero-entries-some-bytes", "sub-at-tail", "sub-long"],
)
async def test_fork_point_outside_the_source_is_invalid(
    log: ChunkLog, offset: Offset | None, sub: int
) -> None:
    await make(log, "/src", TEXT, [b"hello"])
    with pytest.raises(InvalidFork):
        await log.create("/f", StreamConfig(TEXT, fork=ForkFrom("/src", offset, sub)))
    with pytest.raises(StreamNotFound):
        await log.info("/f")
    # No reference was taken: deleting the source removes it outright.
    await log.delete("/src")
    with pytest.raises(StreamNotFound):
        await log.info("/src")


async def test_fork_with_another_content_type_conflicts_and_leaks_no_reference(
    log: ChunkLog,
) -> None:
    await make(log, "/src", TEXT, [b"data"])
    with pytest.raises(StreamConflict):
        await log.create("/f", StreamConfig(JSON, fork=ForkFrom("/src")))
    with pytest.raises(StreamNotFound):
        await log.info("/f")

    await log.delete("/src")
    with pytest.raises(StreamNotFound):
        await log.info("/src")


async def test_fork_onto_an_existing_stream_with_other_config_conflicts(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"data"])
    await make(log, "/taken", JSON, [b"1"])
    with pytest.raises(StreamConflict):
        await log.create("/taken", StreamConfig(TEXT, fork=ForkFrom("/src")))
    assert await entries(log, "/taken") == [b"1"]
    await log.delete("/src")
    with pytest.raises(StreamNotFound):
        await log.info("/src")


async def test_identical_fork_is_idempotent(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"hello"])
    same = StreamConfig(TEXT, fork=ForkFrom("/src", ZERO, 2))
    _, first = await log.create("/f", same)
    info, second = await log.create("/f", StreamConfig(TEXT, fork=ForkFrom("/src", ZERO, 2)))
    assert (first, second) == (True, False)
    assert info.next_offset == Offset(1, 2)

    with pytest.raises(StreamConflict):
        await log.create("/f", StreamConfig(TEXT, fork=ForkFrom("/src", ZERO, 3)))
    with pytest.raises(StreamConflict):
        await log.create("/f", StreamConfig(TEXT))
    assert await content(log, "/f") == b"he"

    # Sub-offset 0 is the same request as no sub-offset.
    _, new = await log.create("/g", StreamConfig(TEXT, fork=ForkFrom("/src")))
    _, again = await log.create("/g", StreamConfig(TEXT, fork=ForkFrom("/src", None, 0)))
    assert (new, again) == (True, False)


async def test_fork_of_a_closed_source_is_open(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"done"], closed=True)
    info = (await log.create("/f", StreamConfig(TEXT, fork=ForkFrom("/src"))))[0]
    assert info.closed is False
    await append(log, "/f", b" and more")
    assert await content(log, "/f") == b"done and more"
    assert (await log.info("/src")).closed is True


async def test_closing_one_side_leaves_the_other_open(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"x"])
    await fork(log, "/f", "/src")
    await log.append("/f", [], content_type=None, close=True)
    assert (await log.info("/f")).closed is True
    assert (await log.info("/src")).closed is False

    await fork(log, "/g", "/src")
    await log.append("/src", [], content_type=None, close=True)
    await append(log, "/g", b"y")
    assert (await log.info("/g")).closed is False


async def test_many_forks_of_one_source(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"shared data"])
    for i in range(10):
        await fork(log, f"/f{i}", "/src")
    for i in range(10):
        assert await content(log, f"/f{i}") == b"shared data"


async def test_forks_of_forks(log: ChunkLog) -> None:
    await make(log, "/l0", TEXT, [b"X"])
    await fork(log, "/l1", "/l0")
    await append(log, "/l1", b"Y")
    await fork(log, "/l2", "/l1")
    await append(log, "/l2", b"Z")
    await append(log, "/l0", b"0")
    await append(log, "/l1", b"1")

    assert await content(log, "/l0") == b"X0"
    assert await content(log, "/l1") == b"XY1"
    assert await content(log, "/l2") == b"XYZ"
    assert await content(log, "/l2", Offset(1, 1)) == b"YZ"
    # A fork of a fork may also cut inside the grandparent's part.
    await fork(log, "/l3", "/l2", Offset(1, 1))
    assert await content(log, "/l3") == b"X"


async def test_reading_across_the_fork_boundary_in_small_pages(log: ChunkLog) -> None:
    await make(log, "/l0", TEXT, [b"a1", b"a2"])
    await fork(log, "/l1", "/l0")
    await append(log, "/l1", b"b1", b"b2")
    await fork(log, "/l2", "/l1")
    await append(log, "/l2", b"c1")

    for max_bytes in (1, 2, 3, 4, 5, 1024):
        chunks = await read_all(log, "/l2", max_bytes=max_bytes)
        assert [c.data for c in chunks] == [b"a1", b"a2", b"b1", b"b2", b"c1"], max_bytes
        assert [c.end for c in chunks] == [Offset(i, 2 * i) for i in range(1, 6)]


async def test_json_fork_reads_as_one_sequence(log: ChunkLog) -> None:
    await make(log, "/src", JSON, [b'{"from":"source"}'])
    await fork(log, "/f", "/src")
    await log.append("/f", [b'{"from":"fork"}'], content_type=JSON)
    assert await entries(log, "/f") == [b'{"from":"source"}', b'{"from":"fork"}']


async def test_producer_state_is_not_inherited(log: ChunkLog) -> None:
    await make(log, "/src", TEXT)
    p = Producer("p", 0, 0)
    await log.append("/src", [b"hello"], content_type=TEXT, producer=p)
    await fork(log, "/f", "/src")
    await fork(log, "/g", "/src", ZERO, 3)

    on_fork = await log.append("/f", [b"!"], content_type=TEXT, producer=p)
    on_sub = await log.append("/g", [b"LO"], content_type=TEXT, producer=p)

    assert (on_fork.duplicate, on_sub.duplicate) == (False, False)
    assert await content(log, "/f") == b"hello!"
    assert await content(log, "/g") == b"helLO"


# -- sub-offsets ------------------------------------------------------------------------------


@pytest.mark.parametrize(("sub", "expected"), [(1, b"h"), (3, b"hel"), (5, b"hello")])
async def test_binary_sub_offset_copies_a_prefix_of_the_next_entry(
    log: ChunkLog, sub: int, expected: bytes
) -> None:
    await make(log, "/src", BINARY, [b"hello", b"world"])
    tail = await fork(log, "/f", "/src", ZERO, sub)

    assert tail == Offset(1, sub)
    result = await log.read("/f", ZERO, 1024)
    assert [(c.data, c.end) for c in result.chunks] == [(expected, Offset(1, sub))]
    at_tail = await log.read("/f", tail, 1024)
    assert (at_tail.chunks, at_tail.up_to_date) == ((), True)


async def test_sub_offset_past_the_entry_is_invalid(log: ChunkLog) -> None:
    await make(log, "/src", BINARY, [b"hi", b"there"])
    with pytest.raises(InvalidFork):
        await log.create("/f", StreamConfig(BINARY, fork=ForkFrom("/src", ZERO, 5)))
    await make(log, "/empty", BINARY)
    with pytest.raises(InvalidFork):
        await log.create("/g", StreamConfig(BINARY, fork=ForkFrom("/empty", ZERO, 1)))
    for path in ("/f", "/g"):
        with pytest.raises(StreamNotFound):
            await log.info(path)


async def test_sub_offset_from_a_mid_stream_anchor(log: ChunkLog) -> None:
    anchor = (await make(log, "/src", TEXT, [b"first"])).next_offset
    await append(log, "/src", b"second")
    tail = await fork(log, "/f", "/src", anchor, 3)
    assert tail == Offset(2, 8)
    assert await content(log, "/f") == b"firstsec"
    assert await content(log, "/f", anchor) == b"sec"


async def test_appends_and_initial_data_follow_the_prefix(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"hello"])
    await fork(log, "/f", "/src", ZERO, 3)
    await fork(log, "/g", "/src", ZERO, 3, initial=(b"XY",))
    tail = await append(log, "/f", b"LO")
    assert tail == Offset(2, 5)
    assert await content(log, "/f") == b"helLO"
    assert await content(log, "/g") == b"helXY"
    assert (await log.info("/g")).next_offset == Offset(2, 5)


async def test_sub_offset_of_a_closed_source(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"hello"], closed=True)
    await fork(log, "/f", "/src", ZERO, 3)
    assert await content(log, "/f") == b"hel"


@pytest.mark.parametrize(("sub", "count"), [(1, 1), (2, 2), (4, 4)])
async def test_json_sub_offset_counts_messages_of_the_append(
    log: ChunkLog, sub: int, count: int
) -> None:
    batch = [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}']
    await make(log, "/src", JSON, batch)
    await log.append("/src", [b'{"e":5}'], content_type=JSON)

    info, created = await log.create("/f", StreamConfig(None, fork=ForkFrom("/src", ZERO, sub)))

    assert created is True
    assert info.content_type == JSON
    assert await entries(log, "/f") == batch[:count]
    tail = info.next_offset
    assert tail == Offset(count, 7 * count)
    at_tail = await log.read("/f", tail, 1024)
    assert (at_tail.chunks, at_tail.up_to_date) == ((), True)
    await log.append("/f", [b'{"z":0}'], content_type=JSON)
    assert await entries(log, "/f") == [*batch[:count], b'{"z":0}']


async def test_json_sub_offset_stays_inside_one_append(log: ChunkLog) -> None:
    await make(log, "/src", JSON, [b"1", b"2", b"3"])
    await log.append("/src", [b"4"], content_type=JSON)

    await fork(log, "/all", "/src", ZERO, 3)
    with pytest.raises(InvalidFork):
        await log.create("/over", StreamConfig(JSON, fork=ForkFrom("/src", ZERO, 4)))
    # From the middle of the batch, only what is left of it can be taken.
    await fork(log, "/rest", "/src", Offset(1, 1), 2)
    with pytest.raises(InvalidFork):
        await log.create("/over2", StreamConfig(JSON, fork=ForkFrom("/src", Offset(1, 1), 3)))

    assert await entries(log, "/all") == [b"1", b"2", b"3"]
    assert await entries(log, "/rest") == [b"1", b"2", b"3"]
    with pytest.raises(StreamNotFound):
        await log.info("/over")


async def test_json_sub_offset_into_a_later_append(log: ChunkLog) -> None:
    anchor = (await make(log, "/src", JSON, [b"1"])).next_offset
    await log.append("/src", [b"2", b"3", b"4"], content_type=JSON)
    await fork(log, "/f", "/src", anchor, 2)
    assert await entries(log, "/f") == [b"1", b"2", b"3"]
    assert await entries(log, "/f", anchor) == [b"2", b"3"]


async def test_chained_binary_sub_offsets(log: ChunkLog) -> None:
    await make(log, "/l0", TEXT, [b"abcdef"])
    await fork(log, "/l1", "/l0", ZERO, 4)
    await fork(log, "/l2", "/l1", ZERO, 2)
    await append(log, "/l2", b"Z")

    assert await content(log, "/l1") == b"abcd"
    assert await content(log, "/l2") == b"abZ"
    with pytest.raises(InvalidFork):
        await log.create("/l3", StreamConfig(TEXT, fork=ForkFrom("/l1", ZERO, 5)))


async def test_chained_json_sub_offsets(log: ChunkLog) -> None:
    await make(log, "/l0", JSON, [b"1", b"2", b"3", b"4"])
    await fork(log, "/l1", "/l0", ZERO, 3)
    await fork(log, "/l2", "/l1", ZERO, 2)

    assert await entries(log, "/l1") == [b"1", b"2", b"3"]
    assert await entries(log, "/l2") == [b"1", b"2"]
    # The parent's cut bounds its own forks.
    with pytest.raises(InvalidFork):
        await log.create("/l3", StreamConfig(JSON, fork=ForkFrom("/l1", ZERO, 4)))


# -- TTL inheritance ----------------------------------------------------------------------------


async def test_fork_inherits_ttl_unless_it_sets_its_own(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"x"], ttl=10)
    await fork(log, "/inherit", "/src")
    await fork(log, "/longer", "/src", ttl=99_999)
    await fork(log, "/absolute", "/src", expires_at_ms=4_102_444_800_000)

    inherit = await log.info("/inherit")
    longer = await log.info("/longer")
    absolute = await log.info("/absolute")
    assert inherit.ttl_seconds == 10
    assert longer.ttl_seconds == 99_999
    assert (absolute.ttl_seconds, absolute.expires_at_ms) == (None, 4_102_444_800_000)


async def test_fork_inherits_expires_at(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"x"], expires_at_ms=4_102_444_800_000)
    await fork(log, "/f", "/src")
    info = await log.info("/f")
    assert (info.ttl_seconds, info.expires_at_ms) == (None, 4_102_444_800_000)


# -- deletion ---------------------------------------------------------------------------------


async def test_deleting_a_fork_leaves_the_source(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"source data"])
    await fork(log, "/f", "/src")
    await log.delete("/f")
    with pytest.raises(StreamNotFound):
        await log.info("/f")
    assert await content(log, "/src") == b"source data"


async def test_deleted_source_with_forks_is_gone_but_its_data_lives_on(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"preserved data"])
    await fork(log, "/f", "/src")
    await log.delete("/src")

    with pytest.raises(StreamGone):
        await log.info("/src")
    with pytest.raises(StreamGone):
        await log.touch("/src")
    with pytest.raises(StreamGone):
        await log.read("/src", ZERO, 1024)
    with pytest.raises(StreamGone):
        await log.append("/src", [b"x"], content_type=TEXT)
    with pytest.raises(StreamGone):
        await log.append("/src", [], content_type=None, close=True)
    with pytest.raises(StreamGone):
        await log.delete("/src")
    with pytest.raises(StreamConflict):
        await log.create("/src", StreamConfig(TEXT))
    with pytest.raises(StreamConflict):
        await log.create("/g", StreamConfig(TEXT, fork=ForkFrom("/src")))
    with pytest.raises(StreamNotFound):
        await log.info("/g")

    assert await content(log, "/f") == b"preserved data"
    await append(log, "/f", b"!")
    assert await content(log, "/f") == b"preserved data!"


async def test_deleting_the_last_fork_collects_a_deleted_source(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"a"])
    await fork(log, "/f1", "/src")
    await fork(log, "/f2", "/src")
    await log.delete("/src")

    await log.delete("/f1")
    with pytest.raises(StreamGone):
        await log.info("/src")
    await log.delete("/f2")
    with pytest.raises(StreamNotFound):
        await log.info("/src")

    info, created = await log.create("/src", StreamConfig(JSON))
    assert (created, info.next_offset) == (True, ZERO)
    assert await entries(log, "/src") == []


async def test_deleting_every_fork_of_a_live_source_keeps_it(log: ChunkLog) -> None:
    await make(log, "/src", TEXT, [b"alive"])
    await fork(log, "/f1", "/src")
    await fork(log, "/f2", "/src")
    await log.delete("/f1")
    await log.delete("/f2")
    assert await content(log, "/src") == b"alive"
    # And the source holds no stale reference: deleting it now removes it.
    await log.delete("/src")
    with pytest.raises(StreamNotFound):
        await log.info("/src")


async def test_cascade_collection_through_a_chain(log: ChunkLog) -> None:
    await make(log, "/l0", TEXT, [b"A"])
    await fork(log, "/l1", "/l0")
    await append(log, "/l1", b"B")
    await fork(log, "/l2", "/l1")
    await append(log, "/l2", b"C")

    await log.delete("/l0")
    await log.delete("/l1")
    with pytest.raises(StreamGone):
        await log.info("/l0")
    with pytest.raises(StreamGone):
        await log.info("/l1")
    assert await content(log, "/l2") == b"ABC"

    await log.delete("/l2")
    for path in ("/l2", "/l1", "/l0"):
        with pytest.raises(StreamNotFound):
            await log.info(path)
    for path in ("/l0", "/l1", "/l2"):
        assert (await log.create(path, StreamConfig(TEXT)))[1] is True


async def test_deleting_the_middle_of_a_chain(log: ChunkLog) -> None:
    await make(log, "/l0", TEXT, [b"A"])
    await fork(log, "/l1", "/l0")
    await append(log, "/l1", b"B")
    await fork(log, "/l2", "/l1")
    await append(log, "/l2", b"C")

    await log.delete("/l1")

    with pytest.raises(StreamGone):
        await log.info("/l1")
    assert await content(log, "/l2") == b"ABC"
    assert await content(log, "/l0") == b"A"

    await log.delete("/l2")
    with pytest.raises(StreamNotFound):
        await log.info("/l1")
    assert await content(log, "/l0") == b"A"
    await log.delete("/l0")
    with pytest.raises(StreamNotFound):
        await log.info("/l0")


async def test_sub_offset_fork_keeps_a_deleted_source_readable(log: ChunkLog) -> None:
    anchor = (await make(log, "/src", TEXT, [b"first"])).next_offset
    await append(log, "/src", b"second")
    await fork(log, "/f", "/src", anchor, 3)
    await log.delete("/src")
    with pytest.raises(StreamGone):
        await log.info("/src")
    assert await content(log, "/f") == b"firstsec"
    await log.delete("/f")
    with pytest.raises(StreamNotFound):
        await log.info("/src")
