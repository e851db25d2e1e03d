"""Drop the database whose URL a file holds (the test database CI kept for `costgraph verify`,
see tests/conftest.py ``COSTGRAPH_TEST_KEEP_DATABASE``); nothing when the file is empty or
missing. Usage: python scripts/drop_database.py <file>"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url


async def drop(url: str) -> None:
    parsed = make_url(url)
    name = parsed.database
    if not name or not name.startswith("costgraph_test_"):
        sys.exit(f"refusing to drop {name!r}: not a test database")
    server = parsed.set(drivername="postgresql", database="postgres")
    admin = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = Path(sys.argv[1])
    url = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    if url:
        asyncio.run(drop(url))
        print(f"dropped {make_url(url).database}")


if __name__ == "__main__":
    main()
