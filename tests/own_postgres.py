"""A PostgreSQL server of a test's own, which the test may stop and start at will.

It runs pgserver's bundled binaries (so a clean CI machine has them), on its own data
directory and a free loopback TCP port. As root — PostgreSQL refuses to run as root — it runs
as pgserver's unprivileged system user, exactly as the embedded server does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port


class OwnPostgres:
    def __init__(self, root: Path) -> None:
        with warnings.catch_warnings():  # pgserver warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            import pgserver._commands as commands  # bundled binaries

        self.bin = Path(commands.POSTGRES_BIN_PATH)
        self.pgdata = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.user: str | None = None
        if os.name == "posix" and os.geteuid() == 0:
            from pgserver.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self.user = "pgserver"
            entry = ensure_user_exists(self.user)
            assert entry is not None
            ensure_prefix_permissions(self.bin)
            readable = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            ensure_folder_permissions(self.bin, readable)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            root.chmod(0o755)
            self.pgdata.mkdir()
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.log.touch()
            os.chown(self.log, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "-E", "utf8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / program), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self.user,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: backends are terminated, then a clean shutdown; ``immediate``: a crash."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    root = Path(tempfile.mkdtemp(prefix="costgraph-pg-"))
    server = None
    try:
        server = OwnPostgres(root)
        server.start()
        yield server
    finally:
        if server is not None:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


async def migrated_database(server: OwnPostgres, name: str) -> str:
    """Create database ``name`` on ``server``, migrate it to head; return its URL."""
    import asyncpg

    from costgraph.app.migrate import migrate

    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server.url.rsplit("/", 1)[0] + f"/{name}"
    await migrate(url)
    return url
