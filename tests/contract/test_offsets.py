"""Offsets: the wire format's guarantees, and the offsets a log actually issues."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.log.base import ChunkLog
from service.log.offsets import ZERO, Offset, OffsetError
from tests.contract._support import BINARY, make, read_all

_MAX = 10**16 - 1
_WIRE = re.compile(r"[0-9]{16}_[0-9]{16}")  # ASCII digits only, by construction

offsets = st.builds(Offset, st.integers(0, _MAX), st.integers(0, _MAX))
wire_offsets = st.from_regex(r"\A[0-9]{16}_[0-9]{16}\Z")
unicode_digits = st.characters(categories=["Nd"])


def _mutations(text: str) -> st.SearchStrategy[str]:
    """Strings one edit away from ``text``: a character inserted, removed or replaced."""
    i = st.integers(0, len(text) - 1)
    char = st.characters()
    return st.one_of(
        st.tuples(st.integers(0, len(text)), char).map(
            lambda a: text[: a[0]] + a[1] + text[a[0] :]
        ),
        i.map(lambda k: text[:k] + text[k + 1 :]),
        st.tuples(i, char).map(lambda a: text[: a[0]] + a[1] + text[a[0] + 1 :]),
    )


not_offsets = st.one_of(
    st.text(),
    st.text(alphabet="0123456789_-", max_size=40),
    wire_offsets.flatmap(_mutations),
    st.tuples(
        st.text(unicode_digits, min_size=16, max_size=16),
        st.text(unicode_digits, min_size=16, max_size=16),
    ).map("_".join),
    st.tuples(wire_offsets, st.sampled_from(["\n", "\r\n", " ", "\x00", "/", ",", "_0"])).map(
        "".join
    ),
    st.tuples(st.sampled_from(["\n", " ", "+", "-", "0", "_"]), wire_offsets).map("".join),
).filter(lambda s: _WIRE.fullmatch(s) is None)


@given(offsets)
def test_str_is_fixed_width_ascii_and_parses_back(offset: Offset) -> None:
    text = str(offset)
    assert len(text) == 33
    assert _WIRE.fullmatch(text)
    assert Offset.parse(text) == offset
    assert (int(text[:16]), int(text[17:])) == (offset.entries, offset.bytes)


@given(wire_offsets)
def test_every_wire_offset_round_trips(text: str) -> None:
    assert str(Offset.parse(text)) == text


@given(offsets, offsets)
def test_string_order_is_numeric_order(a: Offset, b: Offset) -> None:
    numeric = (a.entries, a.bytes) < (b.entries, b.bytes)
    assert (str(a) < str(b)) is numeric
    assert (a < b) is numeric
    assert (str(a) == str(b)) is (a == b)


@given(not_offsets)
@example("")
@example("-1")
@example("now")
@example("0_0")
@example("0" * 16 + "_" + "0" * 15)
@example("0" * 17 + "_" + "0" * 16)
@example("0" * 16 + "_" + "0" * 16 + "\n")
@example("0" * 16 + "-" + "0" * 16)
@example("\u0660" * 16 + "_" + "0" * 16)  # ARABIC-INDIC DIGIT ZERO
@example("0" * 16 + "_" + "\uff10" * 16)  # FULLWIDTH DIGIT ZERO
def test_parse_rejects_anything_else(text: str) -> None:
    with pytest.raises(OffsetError):
        Offset.parse(text)


@pytest.mark.parametrize(("entries", "size"), [(-1, 0), (0, -1), (_MAX + 1, 0), (0, _MAX + 1)])
def test_offsets_out_of_range_are_refused(entries: int, size: int) -> None:
    with pytest.raises(OffsetError):
        Offset(entries, size)


def test_extremes() -> None:
    assert str(ZERO) == "0000000000000000_0000000000000000"
    assert Offset.parse("9999999999999999_9999999999999999") == Offset(_MAX, _MAX)
    assert ZERO.advance(5) == Offset(1, 5)
    assert Offset(2, 10).advance(7, count=3) == Offset(5, 17)


_paths = itertools.count()


@pytest.mark.asyncio
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    initial=st.lists(st.binary(min_size=1, max_size=40), max_size=2),
    batches=st.lists(
        st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=3),
        min_size=1,
        max_size=8,
    ),
    max_bytes=st.integers(1, 120),
)
async def test_issued_offsets_increase_and_address_exact_suffixes(
    log: ChunkLog, initial: list[bytes], batches: list[list[bytes]], max_bytes: int
) -> None:
    path = f"/v1/stream/prop-{next(_paths)}"
    tail = (await make(log, path, BINARY, initial)).next_offset
    items = list(initial)
    returned = [tail]
    for batch in batches:
        result = await log.append(path, batch, content_type=BINARY)
        assert str(result.next_offset) > str(returned[-1])
        returned.append(result.next_offset)
        items.extend(batch)

    chunks = await read_all(log, path, ZERO, max_bytes)
    ends = [c.end for c in chunks]
    assert [c.data for c in chunks] == items
    sizes = list(itertools.accumulate(len(item) for item in items))
    assert ends == [Offset(i + 1, size) for i, size in enumerate(sizes)]
    assert all(str(x) < str(y) for x, y in itertools.pairwise([ZERO, *ends]))
    assert set(returned) <= {ZERO, *ends}
    assert returned[-1] == ends[-1]

    for k, position in enumerate([ZERO, *ends]):
        suffix = await read_all(log, path, position, max_bytes)
        assert [c.data for c in suffix] == items[k:]
        assert [c.end for c in suffix] == ends[k:]
