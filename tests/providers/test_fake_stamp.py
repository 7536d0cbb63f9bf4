"""The fake's ``stamp`` option: each token carries its emit time, words unchanged."""

from __future__ import annotations

import time

import pytest

from service.generation.events import ContentDelta
from service.generation.providers.base import GenerationRequest, Message
from service.generation.providers.fake import FakeProvider
from service.generation.providers.fake_script import FakeOptions, FakeParamsError, script, unstamp

MESSAGES = [{"role": "user", "content": "stamp me"}]


@pytest.mark.asyncio
async def test_stamped_tokens_carry_their_emit_time_and_the_same_words() -> None:
    params = {"fake": {"tokens": 5, "rate": 0, "stamp": True}}
    request = GenerationRequest("fake", "m", [Message("user", "stamp me")], params)
    before = time.time()
    deltas = [e.delta async for e in FakeProvider().stream(request) if isinstance(e, ContentDelta)]
    after = time.time()
    words = [unstamp(d)[0] for d in deltas]
    stamps = [unstamp(d)[1] for d in deltas]
    assert words == script(MESSAGES, "m", {"fake": {"tokens": 5, "rate": 0}})
    assert all(before <= t <= after for t in stamps)
    assert stamps == sorted(stamps)


def test_stamp_must_be_a_boolean() -> None:
    with pytest.raises(FakeParamsError, match="stamp"):
        FakeOptions.from_params({"fake": {"stamp": "yes"}})
