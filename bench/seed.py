"""Users and posts, made through the service's own API, and the request files wrk replays.

Each scenario gets its own group of users, so one scenario never disturbs another's state:
writes by the ``writer`` users never invalidate the lists the cache-hit scenario reads, the
``miss`` users' lists stay at ten posts, the ``delete`` users hold the pool of posts to delete.

A request file has one request a line: METHOD, PATH, TOKEN ("-" for none), USER (the owner's id,
for the reference apps, which do no authentication; "-" for none) and BODY (JSON or empty),
tab-separated (see ``bench/lua/replay.lua``). Lines alternate between users, so
consecutive requests never pile onto one user.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

PASSWORD = "bench-password-not-a-secret"  # noqa: S105 (a throwaway account's password)
FILLER = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. "

Row = tuple[str, str, "Account | None", str | None]  # method, path, who (token, id), JSON body
T = TypeVar("T")


def post_text(n: int, chars: int) -> str:
    """A post of exactly ``chars`` characters, different for each ``n``."""
    head = f"Post {n}: "
    return (head + FILLER * (chars // len(FILLER) + 1))[:chars]


def text_body(n: int, chars: int) -> str:
    """The JSON body of a create or an update."""
    return json.dumps({"text": post_text(n, chars)})


@dataclass
class Account:
    """A signed-up user, its token and the ids of its posts (oldest first)."""

    email: str
    token: str
    post_ids: list[int] = field(default_factory=list)

    @property
    def user_id(self) -> int:
        """The user's id: the ``sub`` of its access token (read, not verified)."""
        payload = self.token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["sub"])

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header of this user."""
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    """The few calls seeding needs, each checked for its documented success status."""

    def __init__(self, client: httpx.AsyncClient, concurrency: int = 8) -> None:
        """Use ``client`` (its base URL set) with at most ``concurrency`` requests in flight."""
        self.client = client
        self.slots = asyncio.Semaphore(concurrency)

    @classmethod
    def at(cls, base_url: str, concurrency: int = 8) -> Api:
        """An ``Api`` for the server at ``base_url``."""
        return cls(httpx.AsyncClient(base_url=base_url, timeout=60), concurrency)

    async def close(self) -> None:
        """Close the connections."""
        await self.client.aclose()

    async def _call(self, expected: int, method: str, path: str, **kw: object) -> httpx.Response:
        async with self.slots:
            response = await self.client.request(method, path, **kw)  # type: ignore[arg-type]
        if response.status_code != expected:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    async def sign_up(self, email: str) -> Account:
        """Create an account."""
        body = {"email": email, "password": PASSWORD}
        response = await self._call(201, "POST", "/auth/signup", json=body)
        return Account(email, response.json()["access_token"])

    async def create_post(self, account: Account, text: str) -> int:
        """Create a post and remember its id on ``account``."""
        response = await self._call(
            201, "POST", "/posts/post", json={"text": text}, headers=account.auth
        )
        post_id = int(response.json()["post_id"])
        account.post_ids.append(post_id)
        return post_id

    async def log_in(self, account: Account) -> None:
        """Log in with the right password."""
        body = {"email": account.email, "password": PASSWORD}
        await self._call(200, "POST", "/auth/login", json=body)

    async def get_post(self, account: Account, post_id: int) -> None:
        """Read one post."""
        await self._call(200, "GET", f"/posts/post/{post_id}", headers=account.auth)

    async def update_post(self, account: Account, post_id: int, text: str) -> None:
        """Replace a post's text."""
        body = {"text": text}
        await self._call(200, "PUT", f"/posts/post/{post_id}", json=body, headers=account.auth)

    async def delete_post(self, account: Account, post_id: int) -> None:
        """Delete a post."""
        await self._call(204, "DELETE", f"/posts/post/{post_id}", headers=account.auth)

    async def list_body(self, account: Account) -> bytes:
        """The raw body of the user's GET /posts."""
        return (await self._call(200, "GET", "/posts", headers=account.auth)).content

    async def post_ids(self, account: Account) -> list[int]:
        """The ids of the user's posts, oldest first."""
        return [post["post_id"] for post in json.loads(await self.list_body(account))]


async def sign_up_group(api: Api, prefix: str, count: int) -> list[Account]:
    """``count`` new accounts named after ``prefix``."""
    return list(
        await asyncio.gather(*(api.sign_up(f"{prefix}-{i}@example.com") for i in range(count)))
    )


async def add_posts(api: Api, accounts: Sequence[Account], per_user: int, chars: int) -> None:
    """Give every account ``per_user`` posts of ``chars`` characters, in order."""

    async def fill(account: Account, offset: int) -> None:
        for n in range(per_user):
            await api.create_post(account, post_text(offset + n, chars))

    await asyncio.gather(*(fill(a, i * per_user) for i, a in enumerate(accounts)))


async def insert_big_posts(database_url: str, account: Account, *, count: int, size: int) -> None:
    """Give ``account`` ``count`` posts of ``size`` ASCII characters, inserted in the database.

    Straight into ``posts`` with SQLAlchemy Core on the service's own engine (the API would
    refuse a body over ``MAX_BODY_BYTES``, and it would take far longer); the ids are kept on
    ``account``.
    """
    from sqlalchemy import insert

    from posts_api.core.config import Settings
    from posts_api.core.db import create_engine, utcnow
    from posts_api.posts.models import Post

    settings = Settings(_env_file=None, database_url=database_url, secret_key="k" * 32)
    engine = create_engine(settings)
    try:
        for n in range(count):
            now = utcnow()
            text = post_text(n, size)
            async with engine.begin() as conn:
                result = await conn.execute(
                    insert(Post).values(
                        user_id=account.user_id, text=text, created_at=now, updated_at=now
                    )
                )
            account.post_ids.append(int(result.inserted_primary_key[0]))  # type: ignore[index]
    finally:
        await engine.dispose()


async def owned_post_ids(database_url: str, accounts: Sequence[Account]) -> list[list[int]]:
    """The ids of the posts each of ``accounts`` owns, oldest first, read from the database.

    Read directly, not through GET /posts: posts made through reference b or the raw driver
    never invalidate posts-api's cached lists.
    """
    from sqlalchemy import select

    from posts_api.core.config import Settings
    from posts_api.core.db import create_engine
    from posts_api.posts.models import Post

    settings = Settings(_env_file=None, database_url=database_url, secret_key="k" * 32)
    engine = create_engine(settings)
    owners = {account.user_id: i for i, account in enumerate(accounts)}
    found: list[list[int]] = [[] for _ in accounts]
    try:
        async with engine.connect() as conn:
            stmt = select(Post.id, Post.user_id).where(Post.user_id.in_(owners)).order_by(Post.id)
            for post_id, user_id in await conn.execute(stmt):
                found[owners[user_id]].append(post_id)
    finally:
        await engine.dispose()
    return found


def interleave(per_user: Iterable[Sequence[T]]) -> list[T]:
    """One item of each user in turn: user A's 1st, B's 1st, ..., A's 2nd, ..."""
    columns = itertools.zip_longest(*per_user)
    return [item for column in columns for item in column if item is not None]


def write_requests(path: Path, rows: Iterable[Row]) -> int:
    """Write a request file for ``replay.lua``; return the number of lines."""
    lines = [
        "\t".join(
            (
                method,
                target,
                who.token if who else "-",
                str(who.user_id) if who else "-",
                body or "",
            )
        )
        for method, target, who, body in rows
    ]
    if not lines:
        raise ValueError(f"no requests for {path.name}")
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def list_rows(accounts: Sequence[Account]) -> list[Row]:
    """GET /posts of each user."""
    return [("GET", "/posts", a, None) for a in accounts]


def get_one_rows(accounts: Sequence[Account]) -> list[Row]:
    """GET /posts/post/{id} of each post, users alternating."""
    return interleave([("GET", f"/posts/post/{p}", a, None) for p in a.post_ids] for a in accounts)


def create_rows(accounts: Sequence[Account], chars: int) -> list[Row]:
    """POST /posts/post, users alternating, texts varying."""
    return [("POST", "/posts/post", a, text_body(1000 + i, chars)) for i, a in enumerate(accounts)]


def update_rows(accounts: Sequence[Account], chars: int) -> list[Row]:
    """PUT /posts/post/{id} of each post, users alternating."""
    return interleave(
        [("PUT", f"/posts/post/{p}", a, text_body(5000 + p, chars)) for p in a.post_ids]
        for a in accounts
    )


def miss_rows(accounts: Sequence[Account], chars: int) -> list[Row]:
    """PUT one of the user's posts, then GET /posts of that user: pairs, users alternating.

    Sent pipelined (GROUP 2), the GET is served after its PUT has replaced the list's cache
    version, so every GET is a miss; with more users than connections, no other pair of the
    same user is in flight at the time to re-fill the entry.
    """
    pairs = interleave(
        [
            (
                ("PUT", f"/posts/post/{p}", a, text_body(9000 + p, chars)),
                ("GET", "/posts", a, None),
            )
            for p in a.post_ids
        ]
        for a in accounts
    )
    return [row for pair in pairs for row in pair]


def delete_rows(accounts: Sequence[Account]) -> list[Row]:
    """DELETE /posts/post/{id} of every post the users have, users alternating."""
    return interleave(
        [("DELETE", f"/posts/post/{p}", a, None) for p in a.post_ids] for a in accounts
    )


def login_rows(accounts: Sequence[Account]) -> list[Row]:
    """POST /auth/login with each user's correct password."""
    return [
        ("POST", "/auth/login", None, json.dumps({"email": a.email, "password": PASSWORD}))
        for a in accounts
    ]
