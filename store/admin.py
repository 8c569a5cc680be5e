"""Database administration for scripts and tests: create or drop a PostgreSQL database named by
a URL (connecting to the server's `postgres` maintenance database), then migrate.

  python -m store.admin create [URL]   # default: ARMGYM_DATABASE_URL; idempotent; migrates
  python -m store.admin drop URL
"""

from __future__ import annotations

import sys

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from . import db
from .settings import get_farm_settings


def _server(url: str):  # type: ignore[no-untyped-def]
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    return admin, parsed.database


def create(url: str) -> bool:
    """Create the database unless it exists; True when it was created."""
    if url.startswith("sqlite"):
        return False
    admin, name = _server(url)
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                              {"n": name}).scalar()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return not exists


def drop(url: str) -> None:
    admin, name = _server(url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("create", "drop"):
        print(__doc__, file=sys.stderr)
        return 2
    url = argv[1] if len(argv) > 1 else get_farm_settings().sqlalchemy_url
    if argv[0] == "drop":
        drop(url)
        return 0
    created = create(url)
    db.upgrade(url)
    print(f"database {'created and ' if created else ''}migrated to head")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
