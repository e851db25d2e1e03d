"""Every Python package under the top-level folders ships in the wheel.

setuptools installs only the packages listed in ``[tool.setuptools] packages``; an editable
install finds the rest through the folder mapping, so a forgotten subpackage works in
development and is missing from a built wheel. This test keeps the list complete.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _configured() -> tuple[set[str], dict[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"]), dict(config["package-dir"])


def test_every_package_folder_is_listed() -> None:
    packages, folders = _configured()
    found = set()
    for name, folder in folders.items():
        if name.count(".") != 1:
            continue  # nested mappings are covered by walking their parent folder
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base)
            found.add(".".join([name, *relative.parts]))
    assert found, "no package folders found: the mapping or the layout changed"
    assert found - packages == set(), "add these to [tool.setuptools] packages"
    assert packages - found == set(), "listed but missing on disk"
