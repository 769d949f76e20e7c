"""Bearer tokens with scopes for ``serve-model``: ``predict``, ``feedback``, ``metrics``.

A token is ``vl_<id>_<secret>``. The token file (``serve.tokens_file``, default ``.variantlab/serve-tokens.json``)
holds, per token, its id, name, scopes, times and the sha256 of the whole token, never the token itself: the
secret is 32 random bytes, so a plain digest is as good as a slow hash, and the process holds only digests.
``variantlab serve-token create|revoke|list`` edits the file (atomically); a running service re-reads it when it
changes, so a new or revoked token takes effect without a restart.

Rules: with no active token the service is open, as it always was, which is only allowed on loopback (it refuses
to start on another address without tokens unless ``--insecure``). Once the file holds any token, every endpoint
with a scope needs a valid token of that scope, except ``/invocations`` on loopback while
``serve.open_predict_on_loopback`` is true (the newcomer's default). Revoking or outliving every token locks the
service rather than opening it. ``/ping``, ``/health`` and ``/version`` are always open.

A token may expire (``serve-token create --days N``); an expired one gets 401 "expired". The file's path is
``VARIANTLAB_SERVE_TOKENS`` when set (a mounted secret in a container), else ``serve.tokens_file``, else the
default.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from variantlab.errors import ConfigError

SCOPES = ("predict", "feedback", "metrics")
ENDPOINT_SCOPES = {"invocations": "predict", "feedback": "feedback", "feedback_queue": "feedback", "metrics": "metrics"}
DEFAULT_FILE = Path(".variantlab") / "serve-tokens.json"
TOKENS_ENV = "VARIANTLAB_SERVE_TOKENS"
RELOAD_S = 0.5  # how often a request may look at the file's modification time


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    scopes: tuple[str, ...]
    sha256: str
    created_at: str
    revoked_at: str | None = None
    expires_at: str | None = None

    def expired(self, at: dt.datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        return dt.datetime.fromisoformat(self.expires_at) <= (at or dt.datetime.now(dt.UTC))

    def state(self) -> str:
        if self.revoked_at:
            return f"revoked {self.revoked_at}"
        if self.expired():
            return f"expired {self.expires_at}"
        return f"active until {self.expires_at}" if self.expires_at else "active"


def tokens_path(configured: str | None, root: Path) -> Path:
    """$VARIANTLAB_SERVE_TOKENS, serve.tokens_file, or the project's default: the one file serve-model reads and
    serve-token edits."""
    chosen = os.environ.get(TOKENS_ENV) or configured
    return Path(chosen) if chosen else root / DEFAULT_FILE


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_records(path: Path) -> list[TokenRecord]:
    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        records = [TokenRecord(**{**r, "scopes": tuple(r["scopes"])}) for r in raw["tokens"]]
        for r in records:
            r.expired()  # a malformed date is an error of the file, said here rather than on a request
        return records
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{path}: not a token file ({error})") from None


def write_records(path: Path, records: list[TokenRecord]) -> None:
    from variantlab.io.files import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"tokens": [asdict(r) for r in records]})
    os.chmod(path, 0o600)


def create(path: Path, name: str, scopes: list[str], days: float | None = None) -> tuple[TokenRecord, str]:
    """A new token: its record (written) and the token itself (shown once, stored nowhere). ``days``: it expires
    that long from now (None: it lives until revoked)."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ConfigError(f"scopes must be some of {', '.join(SCOPES)}, got {', '.join(scopes) or 'none'}")
    if days is not None and not days > 0:
        raise ConfigError(f"--days must be more than 0, got {days}")
    records = read_records(path)
    token_id = secrets.token_hex(4)
    token = f"vl_{token_id}_{secrets.token_urlsafe(32)}"
    created = dt.datetime.now(dt.UTC)
    expires = (created + dt.timedelta(days=days)).isoformat(timespec="seconds") if days is not None else None
    now = created.isoformat(timespec="seconds")
    record = TokenRecord(token_id, name, tuple(dict.fromkeys(scopes)), digest(token), now, expires_at=expires)
    write_records(path, [*records, record])
    return record, token


def revoke(path: Path, token_id: str) -> TokenRecord:
    records = read_records(path)
    found = next((r for r in records if r.id == token_id), None)
    if found is None:
        raise ConfigError(f"no token with id '{token_id}' in {path}")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    revoked = TokenRecord(**{**asdict(found), "revoked_at": found.revoked_at or now})
    write_records(path, [revoked if r.id == token_id else r for r in records])
    return revoked


class Denied(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class TokenStore:
    """The active tokens of the file, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._checked = 0.0
        self._active: dict[str, TokenRecord] = {}
        self._revoked: set[str] = set()
        self.reload()

    def reload(self) -> None:
        mtime = self.path.stat().st_mtime if self.path.is_file() else None
        records = read_records(self.path)
        with self._lock:
            self._mtime = mtime
            self._active = {r.id: r for r in records if r.revoked_at is None}
            self._revoked = {r.id for r in records if r.revoked_at is not None}

    def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_S:
            return
        self._checked = now
        mtime = self.path.stat().st_mtime if self.path.is_file() else None
        if mtime != self._mtime:
            with contextlib.suppress(ConfigError):  # a file half-written by hand: keep the tokens we had
                self.reload()

    @property
    def enabled(self) -> bool:
        """Some token can be used now (what serving beyond loopback needs to start)."""
        self._fresh()
        return any(not r.expired() for r in self._active.values())

    @property
    def guarded(self) -> bool:
        """The file holds any token, even revoked or expired: scoped endpoints need a valid one from then on."""
        self._fresh()
        return bool(self._active or self._revoked)

    def check(self, headers: Any, query: Any, scope: str) -> TokenRecord:
        """The token of a request that needs ``scope``; raises ``Denied`` (401 or 403)."""
        self._fresh()
        header = headers.get("authorization")
        if header is None:
            elsewhere = [k for k in ("x-api-key", "x-auth-token", "token") if headers.get(k)]
            if elsewhere or "token" in query or "access_token" in query:
                raise Denied(401, "wrong_header", "send the token as 'Authorization: Bearer <token>'")
            raise Denied(401, "missing", f"this endpoint needs a token with scope '{scope}' (Authorization: Bearer)")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Denied(401, "wrong_header", "send the token as 'Authorization: Bearer <token>'")
        token = token.strip()
        parts = token.split("_", 2)
        token_id = parts[1] if len(parts) == 3 and parts[0] == "vl" else ""
        if token_id in self._revoked:
            raise Denied(401, "revoked", f"token {token_id} was revoked")
        record = self._active.get(token_id)
        if record is None or not hmac.compare_digest(record.sha256, digest(token)):
            raise Denied(401, "invalid", "the token is not valid")
        if record.expired():
            raise Denied(401, "expired", f"token {token_id} expired at {record.expires_at}")
        if scope not in record.scopes:
            raise Denied(403, "scope", f"token {token_id} lacks scope '{scope}' (it has: {', '.join(record.scopes)})")
        return record


class RateLimiter:
    """A token bucket per source (a token's id, or the client's address): ``rate`` requests a second on average,
    bursts of up to ``burst``. ``take`` answers how long to wait (0: allowed, and counted)."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, source: str) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, when = self._buckets.get(source, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            if tokens >= 1.0:
                self._buckets[source] = (tokens - 1.0, now)
                return 0.0
            self._buckets[source] = (tokens, now)
            return (1.0 - tokens) / self.rate
