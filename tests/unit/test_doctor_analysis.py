"""``rivulet doctor``'s judgement on recorded connections (no network; real proxies are in
tests/edge). Each case builds what a client would have seen and checks the verdict."""

from __future__ import annotations

from service.doctor import Connection, Plan, Token, analyse

PLAN = Plan(tokens=6, rate=4.0, pause_after=3, pause=5.0, heartbeat=2.0)
SSE = {"content-type": "text/event-stream", "cache-control": "no-cache"}


def _offset(i: int) -> str:
    return f"{i + 1:016d}_{(i + 1) * 10:016d}"


def _streaming(replicas: tuple[str | None, str | None] = (None, None)) -> list[Connection]:
    """A healthy run: tokens on time, heartbeats in the silence, one deliberate reconnect."""
    emitted = [0.0, 0.25, 0.5, 5.75, 6.0, 6.25]  # the provider's clock (silence after 3)
    delay = 100.0  # this machine's clock minus the provider's: any constant
    first = Connection(opened=99.0, http_version="HTTP/1.1", status=200, headers=dict(SSE))
    first.tokens = [Token(_offset(i), emitted[i] + delay + 0.005, emitted[i]) for i in range(4)]
    first.heartbeats = [100.5 + 2.001, 100.5 + 4.002]
    first.end, first.closed, first.last_byte = "doctor", 105.8, 105.8
    second = Connection(opened=106.0, http_version="HTTP/1.1", status=200, headers=dict(SSE))
    second.tokens = [Token(_offset(i), emitted[i] + delay + 0.5, emitted[i]) for i in (4, 5)]
    second.terminal, second.end, second.closed = ["finish"], "terminal", 106.4
    for conn, replica in zip((first, second), replicas, strict=True):
        if replica:
            conn.headers["rivulet-replica"] = replica
    return [first, second]


def _verdicts(conns: list[Connection]) -> dict[str, str]:
    return {c.name: c.status for c in analyse(PLAN, conns, heartbeat_advertised=True, long=False)}


def test_a_healthy_edge_passes_everything_it_can_measure() -> None:
    verdicts = _verdicts(_streaming())
    assert verdicts.pop("cross-replica") == "SKIP"
    assert set(verdicts.values()) == {"PASS"}, verdicts


def test_cross_replica_resume_is_reported_from_the_replica_header() -> None:
    assert _verdicts(_streaming(("api-a", "api-b")))["cross-replica"] == "PASS"
    assert _verdicts(_streaming(("api-a", "api-a")))["cross-replica"] == "WARN"


def test_a_buffering_edge_fails_buffering_and_heartbeats() -> None:
    conns = _streaming()
    # Everything the first connection got arrived at once, when the silence ended.
    for token in conns[0].tokens:
        token.received = 105.76
    conns[0].heartbeats = [105.76, 105.76]
    verdicts = _verdicts(conns)
    assert verdicts["buffering"] == "FAIL"
    assert verdicts["heartbeats"] == "FAIL"


def test_content_length_and_compression_fail_with_their_fixes() -> None:
    conns = _streaming()
    conns[0].headers |= {"content-length": "1234", "content-encoding": "br"}
    checks = {c.name: c for c in analyse(PLAN, conns, heartbeat_advertised=True, long=False)}
    assert checks["headers"].status == "FAIL"
    assert "Content-Length" in checks["headers"].fix
    assert checks["compression"].status == "FAIL"
    assert "gzip_types" in checks["compression"].fix


def test_a_cut_fails_idle_timeout_and_a_lost_or_doubled_token_fails_resume() -> None:
    conns = _streaming()
    conns[0].end, conns[0].detail = "cut", "the connection broke mid-response"
    verdicts = _verdicts(conns)
    assert verdicts["idle timeout"] == "FAIL"
    assert verdicts["resume"] == "PASS"  # the cut cost nothing
    doubled = _streaming()
    doubled[1].tokens.insert(0, doubled[0].tokens[-1])
    assert _verdicts(doubled)["resume"] == "FAIL"
    lost = _streaming()
    del lost[1].tokens[0]
    assert _verdicts(lost)["resume"] == "FAIL"


def test_an_http_1_0_edge_is_a_warning() -> None:
    conns = _streaming()
    conns[0].http_version = "HTTP/1.0"
    assert _verdicts(conns)["headers"] == "WARN"
