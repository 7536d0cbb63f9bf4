"""The fake's script: a pure function of the request, with validated parameters."""

from __future__ import annotations

import pytest

from service.generation.providers.base import Message
from service.generation.providers.fake_script import (
    WORDS,
    AttemptCounter,
    FakeParamsError,
    input_token_count,
    plan,
    script,
)

USER = [("user", "tell me a story")]


def test_same_request_same_tokens_and_tokens_are_words_with_leading_spaces() -> None:
    tokens = script(USER, "m", {"fake": {"tokens": 30}})
    assert tokens == script(USER, "m", {"fake": {"tokens": 30}})
    assert len(tokens) == 30
    assert tokens[0] in WORDS
    assert all(t.startswith(" ") and t[1:] in WORDS for t in tokens[1:])
    assert script(USER, "m", {}) == tokens[:12]  # default length; a shorter answer is a prefix
    assert script(USER, "other-model", {"fake": {"tokens": 30}}) != tokens
    assert script([("user", "another prompt")], "m", {"fake": {"tokens": 30}}) != tokens


def test_pinned_answer_does_not_drift() -> None:
    # The word choice is part of the contract (docs and other suites quote whole answers);
    # a change here must be deliberate, never a side effect of a refactor or a new Python.
    answer = "".join(script([("user", "hello")], "fake-1", {"fake": {"tokens": 6}}))
    assert answer == "copper ember marble glacier ember heron"
    assert len(set(script(USER, "m", {"fake": {"tokens": 200}}))) > 20


def test_message_shapes_are_interchangeable_and_system_text_is_merged() -> None:
    as_tuples = [("system", "a"), ("user", "hi"), ("system", "b")]
    as_dicts = [{"role": r, "content": c} for r, c in as_tuples]
    as_messages = [Message(r, c) for r, c in as_tuples]
    merged = [("system", "a\n\nb"), ("user", "hi")]
    answers = {str(script(m, "m", {})) for m in (as_tuples, as_dicts, as_messages, merged)}
    assert len(answers) == 1
    assert input_token_count(as_tuples) == 2 + 3


def test_max_tokens_and_finish_reason() -> None:
    assert plan(USER, "m", {"max_tokens": 5}).finish_reason == "length"
    assert len(plan(USER, "m", {"max_tokens": 5}).tokens) == 5
    assert plan(USER, "m", {"max_tokens": 12}).finish_reason == "stop"
    assert plan(USER, "m", {"fake": {"tokens": 0}}).tokens == ()


def test_fail_after_and_timing() -> None:
    p = plan(USER, "m", {"fake": {"tokens": 4, "fail_after": 9, "rate": 10}})
    assert (p.fail_after, p.tokens_to_send) == (4, 4)  # failure replaces the finish
    p = plan(USER, "m", {"fake": {"rate": 4, "stall_before_first": 1.5}})
    assert [p.due(i) for i in range(3)] == [1.5, 1.75, 2.0]
    assert plan(USER, "m", {"fake": {"rate": 0}}).due(100) == 0.0
    p = plan(USER, "m", {"fake": {"rate": 4, "pause_after": 2, "pause": 10}})
    assert [p.due(i) for i in range(4)] == [0.0, 0.25, 10.5, 10.75]  # quiet after 2 tokens


def test_fingerprint_covers_params_and_attempts_count_per_fingerprint() -> None:
    a = plan(USER, "m", {"fake": {"fail_attempts": 2}})
    b = plan(USER, "m", {"fake": {"fail_attempts": 2}, "temperature": 0.5})
    assert a.fingerprint != b.fingerprint
    counter = AttemptCounter(capacity=2)
    assert [a.fails_before_first(counter.next(a.fingerprint)) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    counter.next("x")
    counter.next("y")  # evicts a's count: bounded memory
    assert counter.next(a.fingerprint) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"fake": "fast"},
        {"fake": {"tokenz": 3}},
        {"fake": {"tokens": -1}},
        {"fake": {"tokens": True}},
        {"fake": {"tokens": 1.5}},
        {"fake": {"tokens": 10**6}},
        {"fake": {"rate": -1}},
        {"fake": {"rate": float("nan")}},
        {"fake": {"fail_attempts": 101}},
        {"fake": {"fail_status": 200}},
        {"fake": {"stall_before_first": 601}},
        {"fake": {"pause": 5}},
        {"fake": {"pause_after": 3}},
        {"fake": {"pause_after": 0, "pause": 5}},
        {"fake": {"pause_after": 3, "pause": 601}},
        {"max_tokens": 0},
        {"max_tokens": "5"},
    ],
)
def test_malformed_params_are_rejected_with_a_readable_message(params) -> None:
    with pytest.raises(FakeParamsError) as info:
        plan(USER, "m", params)
    assert "params.fake" in str(info.value) or "max_tokens" in str(info.value)
