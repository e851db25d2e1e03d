"""Headless Chromium for browser tests (Debian's `chromium`, which `.ci/run` installs), driven
over the Chrome DevTools Protocol (its websocket) with no network: its resolver maps every host
but 127.0.0.1 to nowhere, so a page that needed a CDN would fail here. Every request the page
makes is recorded (``requested``) so a test can check they all went to the server itself."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

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
        answer = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    async def wait_for(self, expression: str, seconds: float = 30.0) -> Any:
        """Poll the page until ``expression`` is truthy (the page has no event to await)."""
        try:
            async with asyncio.timeout(seconds):
                while not (value := await self.evaluate(expression)):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        except TimeoutError:
            text = await self.evaluate("document.body && document.body.innerText.slice(0, 2000)")
            raise AssertionError(
                f"never true: {expression}\npage text:\n{text}\nscript errors: {self.errors()}"
            ) from None
        return value

    async def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        """Save a PNG of the page (the whole page, not only the window) in SCREENSHOT_DIR."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            metrics = await self.call("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], 4000),
                "scale": 1,
            }
        shot = await self.call("Page.captureScreenshot", **params)
        path = SCREENSHOT_DIR / name
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def errors(self) -> list[str]:
        """Uncaught exceptions and console errors of the page so far."""
        found = []
        for event in self.events:
            if event.get("method") == "Runtime.exceptionThrown":
                details = event["params"]["exceptionDetails"]
                found.append(str(details.get("exception", {}).get("description") or details))
            elif event.get("method") == "Runtime.consoleAPICalled" and event["params"]["type"] in (
                "error",
                "warning",
            ):
                found.append(
                    " ".join(
                        str(a.get("value", a.get("description"))) for a in event["params"]["args"]
                    )
                )
        return found

    def requested(self) -> list[str]:
        return [
            event["params"]["request"]["url"]
            for event in self.events
            if event.get("method") == "Network.requestWillBeSent"
        ]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed for this test (.ci/run installs it)"
    return found


async def _devtools_port(profile: Path) -> int:
    async with asyncio.timeout(30):
        while not (profile / "DevToolsActivePort").exists():  # noqa: ASYNC110  # a file
            await asyncio.sleep(0.1)
        return int((profile / "DevToolsActivePort").read_text().splitlines()[0])


@asynccontextmanager
async def headless_chromium(width: int = 1280, height: int = 800) -> AsyncIterator[DevTools]:
    """A fresh profile and one page, in English (so number formats are known), no network."""
    profile = Path(tempfile.mkdtemp(prefix="costgraph-chromium-"))
    try:
        process = await asyncio.create_subprocess_exec(
            *[
                chromium(),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--lang=en-US",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                # No network: every name resolves to nothing, 127.0.0.1 excepted.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "LANG": "en_US.UTF-8", "TZ": "UTC"},
            start_new_session=True,  # its helper processes in one group, ended together
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
                await devtools.call("Runtime.enable")
                yield devtools
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 20)
    finally:
        await _removed(profile)


async def _removed(profile: Path) -> None:
    """Remove the profile once chromium's helper processes have stopped writing to it (one
    still exiting may add a file while it is removed: "Directory not empty")."""
    for _ in range(100):
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            await asyncio.sleep(0.1)
    shutil.rmtree(profile)
