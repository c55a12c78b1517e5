"""procrastinate's psycopg connector, made to wait out a PostgreSQL restart.

procrastinate stops a worker when one of its side tasks fails (procrastinate
#1116): the LISTEN connection cannot reconnect while the server is down, and a
heartbeat that meets a closed connection raises. A restart must not stop
signdb's workers (their runs keep training and retry their own writes), so:

* LISTEN is re-established with backoff for as long as it takes; jobs
  inserted meanwhile are found by the worker's polling;
* a statement that fails because the connection or the server is gone is
  tried again with backoff for up to ``retry_seconds`` (``SIGNDB_RETRY_SECONDS``).
  A retried fetch whose first reply was lost can leave a job claimed by nobody;
  the reaper (:mod:`signdb.queue.reaper`) queues such a run again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from procrastinate import PsycopgConnector, exceptions, sql

logger = logging.getLogger("signdb.queue")
T = TypeVar("T")


def is_connection_error(error: BaseException) -> bool:
    """True when ``error`` (a ConnectorException or a driver error) means the server is away."""
    for cause in (error, error.__cause__, error.__context__):
        if isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError)):
            return True
        if isinstance(cause, psycopg_pool.PoolTimeout):
            return True
    return False


class ResilientConnector(PsycopgConnector):
    """A :class:`procrastinate.PsycopgConnector` that retries through lost connections."""

    def __init__(self, *, retry_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_seconds = retry_seconds

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.25
        while True:
            try:
                return await call()
            except exceptions.ConnectorException as e:
                if not is_connection_error(e) or time.monotonic() + delay > deadline:
                    raise
                logger.debug("the queue's database is away (%s); retrying", e.__cause__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def execute_query_async(self, query: Any, **arguments: Any) -> None:
        parent = super().execute_query_async
        try:
            return await self._retrying(lambda: parent(query, **arguments))
        except exceptions.ConnectorException as e:
            if query != sql.queries["finish_job"] or 'not in "doing"' not in str(e.__cause__):
                raise
            # This worker was silent past the grace (paused, cut off) and a reaper
            # closed the job and queued its run again: there is nothing left to record.
            logger.warning(
                "job %s was closed by another worker's reaper while this worker was silent",
                arguments.get("job_id"),
            )
            return None

    async def execute_query_one_async(self, query: Any, **arguments: Any) -> dict[str, Any]:
        parent = super().execute_query_one_async
        return await self._retrying(lambda: parent(query, **arguments))

    async def execute_query_all_async(self, query: Any, **arguments: Any) -> list[dict[str, Any]]:
        parent = super().execute_query_all_async
        return await self._retrying(lambda: parent(query, **arguments))

    async def listen_notify(self, on_notification: Any, channels: Iterable[str]) -> None:
        channels = list(channels)
        delay = 0.25
        while True:
            started = time.monotonic()
            try:
                await super().listen_notify(on_notification=on_notification, channels=channels)
            except exceptions.ConnectorException as e:
                if not is_connection_error(e):
                    raise
                if time.monotonic() - started > 30:
                    delay = 0.25  # it listened for a while: a new outage
                logger.debug("LISTEN lost its connection (%s); reconnecting", e.__cause__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
