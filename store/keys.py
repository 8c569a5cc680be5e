"""API keys: generated, stored as SHA-256 only, checked per request, revocable.

A slow password hash would protect low-entropy secrets; these keys are 256-bit random tokens, so
a plain SHA-256 cannot be reversed and keeps the per-request check to one indexed lookup.
Keys configured by environment (bootstrap) are hashed the same way and upserted on start.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import ApiKey, utcnow

SUBMIT, READ, ADMIN = "submit", "read", "admin"
DEFAULT_SCOPES = (SUBMIT, READ)
PREFIX = "agk_"


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    scopes: frozenset[str]
    prefix: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_plaintext() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.name, frozenset(row.scopes.split(",")), row.prefix)


def ensure(session: Session, name: str, plaintext: str, scopes: tuple[str, ...]) -> KeyInfo:
    """Insert (or re-enable with these scopes) a key given in configuration."""
    digest = hash_key(plaintext)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None:
        row = ApiKey(name=name, key_hash=digest, prefix=plaintext[:8], scopes=",".join(scopes))
        session.add(row)
    else:
        row.name, row.scopes, row.revoked_at = name, ",".join(scopes), None
    session.flush()
    return _info(row)


def create(session: Session, name: str, scopes: tuple[str, ...]) -> tuple[KeyInfo, str]:
    """A new key; the plaintext is returned once and never stored."""
    plaintext = new_plaintext()
    return ensure(session, name, plaintext, scopes), plaintext


def authenticate(session: Session, plaintext: str) -> KeyInfo | None:
    """The key's row, found by the SHA-256 of what was sent (the index sees only digests, so
    its timing tells nothing about the key) and compared again in constant time."""
    digest = hash_key(plaintext)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest,
                                              ApiKey.revoked_at.is_(None)))
    if row is None or not hmac.compare_digest(row.key_hash.encode(), digest.encode()):
        return None
    return _info(row)


def revoke(session: Session, key_id: int) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def listing(session: Session) -> list[dict[str, object]]:
    rows = session.scalars(select(ApiKey).order_by(ApiKey.id))
    return [{"id": r.id, "name": r.name, "prefix": r.prefix, "scopes": r.scopes.split(","),
             "created_at": r.created_at, "revoked_at": r.revoked_at} for r in rows]


def parse_config(api_keys: str, admin_key: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """`ARMGYM_API_KEYS="alice:KEY,bob:KEY2"` (bare keys are named key1, key2, ...) and
    `ARMGYM_ADMIN_KEY` as (name, plaintext, scopes)."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for i, entry in enumerate(e.strip() for e in api_keys.split(",")):
        if not entry:
            continue
        name, _, key = entry.rpartition(":")
        out.append((name or f"key{i + 1}", key, DEFAULT_SCOPES))
    if admin_key:
        out.append(("admin", admin_key, (ADMIN, SUBMIT, READ)))
    return out
