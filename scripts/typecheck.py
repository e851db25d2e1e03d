"""Run mypy --strict on the package as it is imported (``costgraph.*``).

The top-level folders install under ``costgraph`` through setuptools' package-dir mapping,
which mypy cannot follow in an editable install; this builds the same tree from symlinks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "app",
    "schema",
    "resolvers",
    "billing",
    "models",
    "auth",
    "subscriptions",
    "alerts",
    "kernel",
    "migrations",
    "client",
)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="costgraph-mypy-") as tmp:
        package = Path(tmp) / "costgraph"
        package.mkdir()
        (package / "__init__.py").write_text("")
        for name in PACKAGES:
            (package / name).symlink_to(ROOT / name, target_is_directory=True)
        env = dict(os.environ, MYPYPATH=tmp)
        command = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "-p",
            "costgraph",
        ]
        return subprocess.call(command, cwd=tmp, env=env)  # noqa: S603 - fixed argv


if __name__ == "__main__":
    sys.exit(main())
