"""The query page in a real browser with no network: headless Chromium (Debian's `chromium`,
which `.ci/run` installs) opens it, runs a query with a pasted token, and saves a screenshot.

The browser is driven over the Chrome DevTools Protocol (its websocket), and its resolver
maps every host but 127.0.0.1 to nowhere, so a page that needed a CDN would fail here; every
request the page makes is also recorded and must go to the server itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from costgraph.app.settings import Settings
from tests.browser import SCREENSHOT_DIR, DevTools, headless_chromium
from tests.conftest import Tenant
from tests.servers import running_servers


@pytest.fixture
async def browser() -> AsyncIterator[DevTools]:
    async with headless_chromium() as devtools:
        yield devtools


async def test_the_query_page_runs_a_query_offline(
    browser: DevTools, settings: Settings, tenant: Tenant
) -> None:
    with running_servers(settings, 1, COSTGRAPH_GRAPHQL_IDE="true") as (url,):
        await browser.call("Page.navigate", url=f"{url}/graphql")
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
