"""PostgreSQL URLs in the two spellings the stack needs (SQLAlchemy's asyncpg dialect, and
libpq/``asyncpg.connect()``), so the app and the migrations agree on one."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def asyncpg_url(url: str) -> str:
    """Normalise any postgres URL to SQLAlchemy's asyncpg dialect."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def plain_url(url: str) -> str:
    """The same URL as libpq and ``asyncpg.connect()`` understand it."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)
