"""The query page in a real browser with no network: headless Chromium (Debian's `chromium`,
which `.ci/run` installs) opens it, runs a query with a pasted token, and saves a screenshot.

The browser is driven over the Chrome DevTools Protocol (its websocket), and its resolver
maps every host but 127.0.0.1 to nowhere, so a page that needed a CDN would fail here; every
request the page makes is also recorded and must go to the server itself.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from costgraph.app.settings import Settings
from tests.conftest import Tenant
from tests.servers import running_servers

SCREENSHOT_DIR = Path(os.environ.get("COSTGRAPH_SCREENSHOT_DIR", tempfile.gettempdir()))


class DevTools:
    """A minimal CDP session on one page: commands answered by id, events kept in order."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        await self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == message_id:
                assert "error" not in message, message
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return answer["result"].get("value")

    async def wait_for(self, expression: str, seconds: float = 20.0) -> Any:
        """Poll the page until ``expression`` is truthy (the page has no event to await)."""
        async with asyncio.timeout(seconds):
            while not (value := await self.evaluate(expression)):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        return value


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed for this test (.ci/run installs it)"
    return found


async def _devtools_port(profile: Path) -> int:
    async with asyncio.timeout(30):
        while not (profile / "DevToolsActivePort").exists():  # noqa: ASYNC110  # a file
            await asyncio.sleep(0.1)
        return int((profile / "DevToolsActivePort").read_text().splitlines()[0])


@pytest.fixture
async def browser() -> AsyncIterator[DevTools]:
    with tempfile.TemporaryDirectory(prefix="costgraph-chromium-") as profile_dir:
        profile = Path(profile_dir)
        process = await asyncio.create_subprocess_exec(
            *[
                _chromium(),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                # No network: every name resolves to nothing, 127.0.0.1 excepted.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=1280,800",
                "about:blank",
            ],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            port = await _devtools_port(profile)
            async with httpx.AsyncClient() as http:
                targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
            page = next(t for t in targets if t["type"] == "page")
            async with connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
                devtools = DevTools(socket)
                await devtools.call("Page.enable")
                await devtools.call("Network.enable")
                yield devtools
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 20)


async def test_the_query_page_runs_a_query_offline(
    browser: DevTools, settings: Settings, tenant: Tenant
) -> None:
    with running_servers(settings, 1, COSTGRAPH_GRAPHQL_IDE="true") as (url,):
        await browser.call("Page.navigate", url=f"{url}/")  # GET / leads to the page
        await browser.wait_for(
            "document.readyState === 'complete' && !!document.getElementById('run')"
        )
        status = await browser.evaluate("document.getElementById('status').textContent")
        assert "Paste a token" in status  # it opens waiting for a token, not on an error
        assert await browser.evaluate("document.getElementById('result').textContent") == ""

        await browser.evaluate(
            f"""document.getElementById('token').value = {json.dumps(tenant.token)};
            document.getElementById('query').value =
              '{{ me {{ subject roles }} organization {{ name reportingCurrency }} }}';
            document.getElementById('run').click();"""
        )
        text = await browser.wait_for("document.getElementById('result').textContent")
        answer = json.loads(text)
        assert answer["data"]["organization"]["name"] == tenant.org.name
        assert answer["data"]["me"]["roles"] == ["org_admin"]
        assert "errors" not in answer

        shot = await browser.call("Page.captureScreenshot", format="png")
        path = SCREENSHOT_DIR / "costgraph-query-page.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.stat().st_size > 10_000  # a rendered page, not a blank one

    requested = [
        event["params"]["request"]["url"]
        for event in browser.events
        if event.get("method") == "Network.requestWillBeSent"
    ]
    assert requested, "the browser made no request at all"
    assert all(r.startswith(url) for r in requested), requested
