"""Offsets order like (entries, bytes) tuples: the hand-written comparisons agree with that."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.log.offsets import Offset

counts = st.integers(min_value=0, max_value=10**16 - 1)
offsets = st.builds(Offset, counts, counts)


@given(offsets, offsets)
def test_comparisons_match_tuple_order(a: Offset, b: Offset) -> None:
    ta, tb = (a.entries, a.bytes), (b.entries, b.bytes)
    assert (a < b) == (ta < tb)
    assert (a <= b) == (ta <= tb)
    assert (a > b) == (ta > tb)
    assert (a >= b) == (ta >= tb)
    assert (a == b) == (ta == tb)
    assert max(a, b) == Offset(*max(ta, tb))


def test_wire_order_is_numeric_order() -> None:
    a, b = Offset(9, 100), Offset(10, 5)
    assert a < b
    assert str(a) < str(b)
