"""Engines, sessions and migrations for PostgreSQL (psycopg 3) and the embedded SQLite file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO_ROOT / "migrations"


def make_engine(url: str, pool_size: int = 10, pre_ping: bool = True) -> Engine:
    """An engine tuned per backend: SQLite in WAL mode with a busy timeout, so the API thread and
    the embedded workers can write concurrently; PostgreSQL with pre-ping, so a restarted
    database costs a retry, not a stream of errors. `pre_ping` false saves a round trip per
    checkout for a caller that retries an outage itself (a pool process: workers/pipeline.py
    durably): a connection the database dropped then fails its first statement, and the pool
    is discarded for fresh connections."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=pool_size)

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=pre_ping, pool_size=pool_size,
                         max_overflow=pool_size)


def is_outage(exc: BaseException) -> bool:
    """The database is unreachable (down, restarting, connection lost), as opposed to a bug."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError,
                            sa_exc.TimeoutError))


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    """The repository's alembic.ini pointed at `url` (so code and `alembic` CLI share one setup)."""
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def reachable(engine: Engine) -> tuple[bool, str]:
    """(ok, detail) for /health: a round trip, and the schema revision it is at."""
    try:
        with engine.connect() as conn:
            rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return True, str(rev)
    except Exception as exc:  # reported, not raised: /health must answer
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
