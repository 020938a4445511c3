"""The GET cache of the front door, and the data watermark that invalidates it.

A cached answer is keyed by (course, API, route path, sorted query, notebook version,
data watermark): publishing a new version or new events arriving makes new keys, and
old entries age out of the LRU. The watermark is the small interface the event store
plugs into: a callable ``watermark(course_id) -> str`` (or an awaitable str) that changes
whenever the data the notebooks read changes. Provided here:

- :class:`SQLWatermark`: one SQL query (default ``SELECT MAX(pk), COUNT(*) FROM
  statements``), run off the event loop (the analytics service itself uses each course's
  extract generation, :mod:`.extracts`);
- :class:`FileWatermark`: the size and modification time of files (a SQLite store with
  its ``-wal`` file);
- :class:`ThrottledWatermark`: asks the underlying source at most every
  ``interval`` seconds per course, so a burst of cache hits costs no queries.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "CachedResponse",
    "FileWatermark",
    "ResponseCache",
    "SQLWatermark",
    "ThrottledWatermark",
    "cache_key",
    "make_etag",
]


def cache_key(
    course: str,
    api: str,
    route: str,
    query: Iterable[tuple[str, str]],
    version: str,
    watermark: str,
):
    return (course, api, route, tuple(sorted(query)), version, watermark)


def make_etag(version: str, body: bytes) -> str:
    return (
        '"' + version[:8] + "-" + hashlib.sha1(body, usedforsecurity=False).hexdigest()[:20] + '"'
    )


@dataclass
class CachedResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    etag: str
    stored_at: float = field(default_factory=time.monotonic)


class ResponseCache:
    """A bounded LRU of answers, with single-flight: one miss per key goes to the gateway."""

    def __init__(
        self, max_entries: int = 2000, max_bytes: int = 64 * 1024 * 1024, ttl: float = 300.0
    ):
        self.max_entries, self.max_bytes, self.ttl = max_entries, max_bytes, ttl
        self._entries: OrderedDict[tuple, CachedResponse] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[tuple, asyncio.Future] = {}
        self.hits = self.misses = 0

    def get(self, key) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.ttl and time.monotonic() - entry.stored_at > self.ttl:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key, entry: CachedResponse) -> None:
        if len(entry.body) > self.max_bytes // 4:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self._bytes += len(entry.body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.body)

    def drop_api(self, course: str, api: str) -> None:
        for key in [k for k in self._entries if k[0] == course and k[1] == api]:
            self._drop(key)

    async def get_or_fetch(self, key, fetch: Callable) -> tuple[CachedResponse | None, bool]:
        """(entry, hit). Concurrent misses of one key share a single ``fetch()``.

        ``fetch`` returns (CachedResponse or None, cacheable).
        """
        entry = self.get(key)
        if entry is not None:
            self.hits += 1
            return entry, True
        pending = self._inflight.get(key)
        if pending is not None:
            entry = await asyncio.shield(pending)
            if entry is not None:
                self.hits += 1
                return entry, True
        self.misses += 1
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            entry, cacheable = await fetch()
            if cacheable and entry is not None:
                self.put(key, entry)
            fut.set_result(entry if cacheable else None)
            return entry, False
        except BaseException:
            fut.set_result(None)
            raise
        finally:
            self._inflight.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class SQLWatermark:
    """``str`` of one row of a SQL query on the event store (run in a thread).

    The default counts the statements too: on PostgreSQL concurrent writers commit out of
    pk (and ``stored``) order, so a statement committed late moves neither maximum."""

    def __init__(self, url: str, query: str = "SELECT MAX(pk), COUNT(*) FROM statements"):
        from sqlalchemy import create_engine, text

        self.engine = create_engine(url.replace("{course}", "_"), pool_pre_ping=False)
        self.query = text(query)
        self._uses_course = ":course" in query

    def _read(self, course_id: str) -> str:
        params = {"course": course_id} if self._uses_course else {}
        with self.engine.connect() as db:
            return repr(tuple(db.execute(self.query, params).one()))

    async def __call__(self, course_id: str) -> str:
        return await asyncio.to_thread(self._read, course_id)


class FileWatermark:
    """Size and mtime of files (e.g. a SQLite store and its ``-wal``)."""

    def __init__(self, *paths: str):
        self.paths = paths

    def __call__(self, course_id: str) -> str:
        parts = []
        for path in self.paths:
            try:
                st = os.stat(path)
                parts.append(f"{st.st_size}:{st.st_mtime_ns}")
            except FileNotFoundError:
                parts.append("-")
        return "|".join(parts)


class ThrottledWatermark:
    """Ask ``source`` at most every ``interval`` seconds per course (and once at a time)."""

    def __init__(
        self, source: Callable, interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ):
        self.source, self.interval, self.clock = source, interval, clock
        self._values: dict[str, tuple[float, str]] = {}
        self._pending: dict[str, asyncio.Future] = {}

    async def __call__(self, course_id: str) -> str:
        now = self.clock()
        known = self._values.get(course_id)
        if known is not None and now - known[0] < self.interval:
            return known[1]
        pending = self._pending.get(course_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._pending[course_id] = fut
        try:
            value = self.source(course_id)
            if inspect.isawaitable(value):
                value = await value
            value = str(value)
            self._values[course_id] = (now, value)
            fut.set_result(value)
            return value
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: the waiters re-raise it
            raise
        finally:
            self._pending.pop(course_id, None)
