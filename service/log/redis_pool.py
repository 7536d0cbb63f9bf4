"""The one way Rivulet opens a Redis connection pool (log, job queue, limit store).

Every pool is blocking (callers queue for a connection under load instead of failing), has
bounded connect and socket timeouts (a hung Redis fails a request with 503, it does not hang
it), TCP keepalive, and **no automatic retries**: an append, a create or an XADD retried after
a lost reply could happen twice; the few idempotent calls retry by hand.

Maintenance notifications are off. They are a Redis Enterprise/Cloud feature Rivulet does not
use, and redis-py 8.1 with RESP3 turns them on by default ("auto"), which also switches off
the pool's check for connections the server closed (redis/redis-py#4252, fixed upstream by
#4260, not released yet): after a Redis restart, the first command on each idle pooled
connection failed with "Connection closed by server" instead of reconnecting.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

__all__ = ["blocking_pool"]


def blocking_pool(
    url: str,
    *,
    max_connections: int,
    socket_timeout: float | None,
    connect_timeout: float,
    health_check_interval: float = 15.0,
) -> BlockingConnectionPool:
    """A pool for ``url`` (``redis://``, ``rediss://`` or ``unix://``) as described above."""
    return BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=None,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 0),
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        **({"socket_keepalive": True} if urlsplit(url).scheme != "unix" else {}),
    )
