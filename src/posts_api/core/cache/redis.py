"""The Redis backend (``CACHE_URL=redis://`` or ``rediss://``), shared by workers and hosts.

Each operation is one round trip on the process's one pipelined connection (``resp``). Redis's
error replies (``OOM``, value too large...) become ``CacheRefused``; a connection that fails or
an answer that does not come within the timeout becomes ``CacheUnavailable``.
"""

from __future__ import annotations

from collections.abc import Sequence

from posts_api.core.cache.backend import Marked, Unmark, new_token
from posts_api.core.cache.resp import Command, Execute, RespClient

# Marks are w:<writers>:<last writer's token>:<version before the first writer> (backend.py).
# KEYS: the version keys, then the generation key. ARGV: the writer's token, the mark's ttl.
# Returns, per version key, the writers now in progress; then the generation (nil if missing).
MARK = b"""
local marked = {}
for i = 1, #KEYS - 1 do
  local writers, prior = 0, ''
  local current = redis.call('GET', KEYS[i])
  if current then
    local n, before = string.match(current, '^w:(%d+):[^:]*:(.*)$')
    if n then writers, prior = tonumber(n), before else prior = current end
  end
  writers = writers + 1
  redis.call('SET', KEYS[i], 'w:' .. writers .. ':' .. ARGV[1] .. ':' .. prior, 'EX', ARGV[2])
  marked[i] = writers
end
marked[#KEYS] = redis.call('GET', KEYS[#KEYS])
return marked
"""

# KEYS: the version key [, the seed's key]. ARGV: the writer's token, the fresh version, its
# ttl, '1' if the writer changed nothing [, the seed's value, its ttl]. One writer less; the
# last sets the fresh version (or puts the prior one back), and the seed, if the mark is still
# its own.
UNMARK = b"""
local writers, token, prior = nil, nil, nil
local current = redis.call('GET', KEYS[1])
if current then writers, token, prior = string.match(current, '^w:(%d+):([^:]*):(.*)$') end
if writers and tonumber(writers) > 1 then
  redis.call('SET', KEYS[1], 'w:' .. (tonumber(writers) - 1) .. ':' .. token .. ':' .. prior,
    'KEEPTTL')
  return 0
end
local own = token == ARGV[1]
if own and ARGV[4] == '1' and prior ~= '' then
  redis.call('SET', KEYS[1], prior, 'EX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
if KEYS[2] and own then
  redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6])
end
return 1
"""

UNCOUNT_SCRIPT = """
local value = tonumber(redis.call('GET', KEYS[1]))
if value and value > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""
"""Take one back from a counter that exists and is above 0 (``DECR`` keeps its expiry)."""


class RedisBackend:
    """Redis through the cache's own small client (``redis://``, ``rediss://``).

    Timeouts are short and there are no retries: when Redis is away the service falls back to
    the database at once instead of stalling every request.
    """

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        """Connect lazily to ``url``; nothing is sent until the first command."""
        self._client = RespClient(url, timeout)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One ``MGET``."""
        if not keys:
            return []
        (values,) = await self._client.execute(("MGET", *keys))
        return values  # type: ignore[no-any-return]

    async def set(self, key: str, value: bytes, ttl: int | None) -> None:
        """One ``SET``, with ``EX`` when ``ttl`` is given."""
        expiry = ("EX", ttl) if ttl is not None else ()
        await self._client.execute(("SET", key, value, *expiry))

    async def create(self, items: Sequence[tuple[str, bytes, int | None]]) -> list[bytes]:
        """``SET key value NX [EX ttl]`` and ``GET key`` per key, pipelined: one round trip."""
        commands: list[Command] = []
        for key, value, ttl in items:
            expiry = ("EX", ttl) if ttl is not None else ()
            commands += (("SET", key, value, "NX", *expiry), ("GET", key))
        replies = await self._client.execute(*commands)
        return replies[1::2]

    async def mark(
        self, keys: Sequence[str], token: bytes, ttl: int, generation_key: str
    ) -> list[Marked]:
        """One script (``MARK``): atomic, one round trip."""
        (found,) = await self._client.execute(
            ("EVAL", MARK, len(keys) + 1, *keys, generation_key, token, ttl)
        )
        *writers, generation = found
        return [Marked(int(n), generation) for n in writers]

    async def unmark(self, ends: Sequence[Unmark]) -> None:
        """One script (``UNMARK``) per key, pipelined: one round trip."""
        commands: list[Command] = []
        for end in ends:
            if end.seed is None:
                keys: tuple[str, ...] = (end.key,)
                seed: tuple[bytes | int, ...] = ()
            else:
                keys, seed = (end.key, end.seed[0]), end.seed[1:]
            versions = (end.token, end.version, end.ttl, 1 if end.unchanged else 0)
            commands.append(("EVAL", UNMARK, len(keys), *keys, *versions, *seed))
        if commands:
            await self._client.execute(*commands)

    def watch_restarts(self, *, generation_key: str, server_key: str) -> None:
        """Check the server's run id on each new connection, before anything else is sent."""

        async def check(run_id: str, execute: Execute) -> None:
            (seen,) = await execute(("GET", server_key))
            if seen != run_id.encode():  # restarted, restored or replaced: its data may be old
                await execute(("SET", generation_key, new_token()), ("SET", server_key, run_id))

        self._client.on_connect = check

    async def count(self, keys: Sequence[str], window: int) -> list[tuple[int, int]]:
        """``SET key 0 EX window NX``, ``INCR``, ``TTL`` per key, pipelined: one round trip.

        The ``SET`` starts a window only for a missing key, and ``INCR`` keeps the expiry
        (Redis 6.2 and later; ``EXPIRE ... NX`` would need 7). A key that expired between the
        two comes back from ``INCR`` at 1 without an expiry (``TTL`` -1): one more round trip
        gives it its window, so no counter outlives it.
        """
        commands: list[Command] = []
        for key in keys:
            commands += (("SET", key, 0, "EX", window, "NX"), ("INCR", key), ("TTL", key))
        replies = await self._client.execute(*commands) if commands else []
        counted = [(int(replies[i + 1]), int(replies[i + 2])) for i in range(0, len(replies), 3)]
        endless = [
            ("EXPIRE", key, window) for key, (_, ttl) in zip(keys, counted, strict=True) if ttl < 0
        ]
        if endless:
            await self._client.execute(*endless)
        # TTL rounds: under half a second left reads 0, and the answer must still say 1.
        return [(value, window if ttl < 0 else max(ttl, 1)) for value, ttl in counted]

    async def uncount(self, keys: Sequence[str], clear: Sequence[str]) -> None:
        """A decrement-if-positive script per key and ``DEL`` of ``clear``: one round trip.

        A script because ``DECR`` of a key that expired meanwhile would make a new one, at -1
        and without an expiry.
        """
        commands: list[Command] = [("EVAL", UNCOUNT_SCRIPT, 1, key) for key in keys]
        if clear:
            commands.append(("DEL", *clear))
        if commands:
            await self._client.execute(*commands)

    async def delete(self, key: str) -> None:
        """``DEL``."""
        await self._client.execute(("DEL", key))

    async def ping(self) -> None:
        """``PING``."""
        await self._client.execute(("PING",))

    async def close(self) -> None:
        """Close the connection."""
        await self._client.close()
