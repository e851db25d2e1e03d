"""The console's files as the server ships them (the browser test drives the pages): where
GET / and /console lead, the policy on each answer, every module import resolving to a file the
package ships, and the currency digits the pages round to equal to the server's table."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import httpx
import iso4217

from costgraph.app.console import CONTENT_SECURITY_POLICY

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "app" / "static" / "console"
IMPORT = re.compile(r"""(?:from\s+|import\()\s*'(\.{1,2}/[^']+)'""")


async def test_home_leads_to_the_console_served_with_its_policy(client: httpx.AsyncClient) -> None:
    home = await client.get("/")
    assert home.status_code == 307 and home.headers["location"] == "/console/"
    bare = await client.get("/console")
    assert bare.status_code == 307 and bare.headers["location"] == "/console/"
    page = await client.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert '<script type="module" src="app.js">' in page.text
    script = await client.get("/console/pages/overview.js")
    assert script.status_code == 200
    assert script.headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    assert (await client.get("/console/missing.js")).status_code == 404
    assert (await client.get("/console/../console.py")).status_code == 404


def test_every_import_is_a_shipped_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["costgraph.app"]
    files = [p for p in CONSOLE.rglob("*") if p.is_file()]
    for path in files:
        relative = path.relative_to(ROOT / "app").as_posix()
        assert any(fnmatch(relative, g) for g in globs), f"{relative} is not package data"
        if path.suffix == ".js":
            for target in IMPORT.findall(path.read_text()):
                assert (path.parent / target).resolve().is_file(), f"{path.name} imports {target}"


def test_the_pages_round_money_to_the_servers_minor_units() -> None:
    text = (CONSOLE / "format.js").read_text()
    table = re.search(r"MINOR_UNITS = \{(.*?)\};", text, re.S)
    assert table
    shown = {code: int(digits) for code, digits in re.findall(r"([A-Z]{3}): (\d)", table.group(1))}
    expected = {c.code: c.exponent or 0 for c in iso4217.Currency if (c.exponent or 0) != 2}
    assert shown == expected
