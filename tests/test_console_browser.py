"""The admin console (/console) in headless Chromium with no network (tests/browser.py),
against a real server and a demo-like tenant (tests/console_tenant.py): an org admin signs in
with a pasted token, reads the P&L (equal to the API's answer), sets a budget and finds it on
the overview, acknowledges an alert, watches a usage event arrive live; a finance viewer finds
no write control on any page, and a member only its own allowance and banner. A screenshot of
each page is saved (COSTGRAPH_SCREENSHOT_DIR, default the temp dir)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx

from costgraph.app.settings import Settings
from costgraph.auth.keys import KeyStore
from costgraph.auth.tokens import mint_access_token
from costgraph.kernel.money import round_for_presentation
from tests import console_tenant, dates
from tests.browser import DevTools, headless_chromium
from tests.conftest import Tenant
from tests.pnl_support import ok
from tests.servers import running_servers

PAGES = ("overview", "pnl", "usage", "budgets", "alerts", "reports", "ledger")
#: Buttons that write: none of them may show for a finance viewer.
WRITE_BUTTONS = (
    "Save budget",
    "Raise limit",
    "Change limit",
    "Acknowledge",
    "Add channel",
    "Pause",
    "Resume",
    "Save template",
    "Delete",
    "Buy more capacity",
    "Top up",
)
PNL_FIGURES = {
    "pnl-revenue": "revenue",
    "pnl-ai-cost": "aiCost",
    "pnl-billed": "billedUsage",
    "pnl-markup": "markupEarned",
    "pnl-fees": "platformFees",
    "pnl-margin": "margin",
    "pnl-margin-percent": "marginPercent",
    "pnl-events": "eventCount",
}
FIGURES = """revenue aiCost billedUsage markupEarned platformFees margin marginPercent eventCount
  byModel { key }"""
PNL = f"query($range: DateRange!) {{ organizationPnl(range: $range) {{ {FIGURES} }} }}"
ACCOUNT_PNL = f"""query($id: ID!, $range: DateRange!) {{
  accountPnl(accountId: $id, range: $range) {{ {FIGURES} }} }}"""


def js(value: Any) -> str:
    return json.dumps(value)


def usd(value: str) -> str:
    """A USD amount as the console shows it in en-US: rounded half-to-even to cents."""
    rounded = round_for_presentation(Decimal(value), "USD")
    return f"-${-rounded:,.2f}" if rounded < 0 else f"${rounded:,.2f}"


async def sign_in(browser: DevTools, url: str, token: str) -> None:
    await browser.call("Page.navigate", url=f"{url}/")  # GET / leads to the console
    await browser.wait_for(
        "document.body?.dataset.ready && !document.getElementById('signin').hidden"
    )
    await browser.evaluate(
        f"""document.getElementById('token').value = {js(token)};
        document.getElementById('signin').requestSubmit();"""
    )
    await browser.wait_for("document.querySelectorAll('#nav a').length > 0")


async def open_page(browser: DevTools, page: str) -> None:
    await browser.evaluate(f"location.hash = '#/{page}'")
    await browser.wait_for(
        f"document.querySelector('.page[data-page={page}]')?.getAttribute('aria-busy') === 'false'"
    )


async def submit_range(
    browser: DevTools, results: str, start: str, end: str, extra: str = ""
) -> None:
    """Set the page's range (as a person picks dates) and submit its controls."""
    await browser.evaluate(
        f"""(() => {{ const form = document.querySelector('form.controls');
        form.elements.from.value = {js(start)}; form.elements.to.value = {js(end)}; {extra}
        form.requestSubmit(); }})()"""
    )
    await browser.wait_for(
        f"document.getElementById({js(results)}).getAttribute('aria-busy') === 'false'"
    )


async def shown_figures(browser: DevTools) -> dict[str, str]:
    return dict(
        await browser.evaluate(
            f"{js(list(PNL_FIGURES))}.map((id) => [id, document.getElementById(id).dataset.value])"
        )
    )


async def check_pnl(browser: DevTools, api: dict[str, Any]) -> None:
    shown = await shown_figures(browser)
    for element, name in PNL_FIGURES.items():
        expected = api[name]
        assert shown[element] == ("" if expected is None else str(expected)), (element, shown, api)
    revenue_text = await browser.evaluate("document.getElementById('pnl-revenue').textContent")
    assert revenue_text == usd(api["revenue"])
    cost_text = await browser.evaluate("document.getElementById('pnl-ai-cost').textContent")
    assert cost_text == usd(api["aiCost"])
    rows = await browser.evaluate("document.querySelectorAll('#pnl-by-model tbody tr').length")
    assert rows == len(api["byModel"]) > 0
    lines = await browser.evaluate("document.querySelectorAll('#pnl-results svg polyline').length")
    assert lines == 3  # revenue, AI cost and margin


async def write_buttons(browser: DevTools) -> list[str]:
    texts: list[str] = await browser.evaluate(
        "[...document.querySelectorAll('button')].filter((b) => b.offsetParent !== null)"
        ".map((b) => b.textContent.trim())"
    )
    return [t for t in texts if t in WRITE_BUTTONS]


def q(selector: str) -> str:
    """``document.querySelector`` of a selector, as page script."""
    return f"document.querySelector({js(selector)})"


def texts(selector: str) -> str:
    return f"[...document.querySelectorAll({js(selector)})].map((e) => e.textContent)"


async def overview_banner_and_live(
    browser: DevTools, url: str, tenant: Tenant, demo: console_tenant.ConsoleTenant
) -> None:
    await open_page(browser, "overview")
    nav = await browser.evaluate(texts("#nav a"))
    assert nav == ["Overview", "P&L", "Usage", "Budgets", "Alerts", "Reports", "Ledger"]
    # The allowance banner: the prepaid account is at 80 % of its included tokens.
    banner = await browser.wait_for(
        f"{q(f'[data-account={js(demo.prepaid_account)}]')}?.dataset.banner"
    )
    assert banner == "BUY_MORE"
    assert "Buy more capacity" in await browser.evaluate(f"{q('#banner')}.textContent")

    # Live usage: the snapshot, then an event posted to the server arrives.
    await browser.wait_for(f"{q('#live-state')}.textContent === 'live'")
    await browser.wait_for(f"!!{q('#live-totals .live-cost')}")
    event = console_tenant.event(
        str(tenant.account_id), demo.users["Grace"], 1, dates.now(), "0.0420"
    )
    async with httpx.AsyncClient(base_url=url) as http:
        posted = await http.post(
            "/graphql",
            json={"query": console_tenant.BATCH, "variables": {"input": [event]}},
            headers={"Authorization": f"Bearer {tenant.token}"},
        )
    entry_id = posted.json()["data"]["recordUsageBatch"]["entries"][0]["id"]
    await browser.wait_for(f"{q('#live-last')}.dataset.entry === {js(entry_id)}")
    assert "$0.04" in await browser.evaluate(f"{q('#live-last')}.textContent")


async def pnl_and_usage(
    browser: DevTools, tenant: Tenant, demo: console_tenant.ConsoleTenant, days: tuple[str, str]
) -> None:
    range_ = {"start": dates.rfc(dates.day(-20)), "end": dates.rfc(dates.day(1))}
    await open_page(browser, "pnl")
    await submit_range(browser, "pnl-results", *days)
    api = (await ok(tenant, PNL, {"range": range_}))["organizationPnl"]
    assert Decimal(api["aiCost"]) > 0 and Decimal(api["revenue"]) > 0
    await check_pnl(browser, api)
    agents = await browser.evaluate(texts("#pnl-agents tbody tr td:first-child"))
    assert sorted(agents) == ["triage-bot", "writer"]
    await browser.screenshot("costgraph-console-pnl.png")
    choose_account = (
        "form.elements.kind.value = 'ACCOUNT';"
        "form.elements.kind.dispatchEvent(new Event('change'));"
        f"form.elements.accounts.value = {js(demo.prepaid_account)};"
    )
    await submit_range(browser, "pnl-results", *days, choose_account)
    variables = {"id": demo.prepaid_account, "range": range_}
    await check_pnl(browser, (await ok(tenant, ACCOUNT_PNL, variables))["accountPnl"])

    # Usage by user against the previous period.
    await open_page(browser, "usage")
    by_user = "form.elements.groupBy.value = 'USER'; form.elements.compare.checked = true;"
    await submit_range(browser, "usage-results", *days, by_user)
    users = await browser.evaluate(texts("#usage-table tbody tr td:first-child"))
    assert sorted(users) == ["Ada", "Grace", "Linus"]
    await browser.screenshot("costgraph-console-usage.png")


async def budget_on_the_overview(
    browser: DevTools, tenant: Tenant, demo: console_tenant.ConsoleTenant
) -> None:
    form = q('form[aria-label="Set a budget"]')
    await open_page(browser, "budgets")
    await browser.evaluate(f"{form}.elements.limit.value = '750'; {form}.requestSubmit();")
    await browser.wait_for(f"{form}.querySelector('.outcome').textContent.startsWith('Saved')")
    budgets = (await ok(tenant, "{ budgets { id scope { kind } limit } }", {}))["budgets"]
    created = next(b for b in budgets if b["scope"]["kind"] == "ORGANIZATION")
    listed = q(f"#budget-list [data-budget={js(created['id'])}]")
    await browser.wait_for(f"!!{listed}")
    show = "[...document.querySelectorAll('#budget-list button')]"
    await browser.evaluate(f"{show}.find((b) => b.textContent === 'Show forecast').click()")
    await browser.wait_for(f"!!{q('#forecast-total')}")
    await browser.screenshot("costgraph-console-budgets.png")

    await open_page(browser, "overview")
    gauge = f"#overview-budgets [data-budget={js(created['id'])}]"
    shown_limit = await browser.wait_for(f"{q(gauge + ' .budget-limit')}?.dataset.value")
    assert shown_limit == created["limit"]
    stages = f"#overview-budgets [data-budget={js(demo.budget_id)}] line.stage"
    assert await browser.evaluate(f"document.querySelectorAll({js(stages)}).length") == 4
    await browser.wait_for(f"{q('#live-state')}.textContent === 'live'")
    await browser.screenshot("costgraph-console-overview.png")


async def alerts_reports_ledger(
    browser: DevTools,
    url: str,
    tenant: Tenant,
    demo: console_tenant.ConsoleTenant,
    days: tuple[str, str],
) -> None:
    # Acknowledge an alert (Engineering's budget stages were crossed).
    await open_page(browser, "alerts")
    alert_id = await browser.wait_for(f"{q('button[data-alert]')}?.dataset.alert")
    button = q(f"button[data-alert={js(alert_id)}]")
    await browser.evaluate(f"{button}.click()")
    await browser.wait_for(f"!{button}")
    listed = "{ alerts(first: 50) { nodes { id state acknowledgedBy } } }"
    alerts = (await ok(tenant, listed, {}))["alerts"]["nodes"]
    acknowledged = next(a for a in alerts if a["id"] == alert_id)
    assert acknowledged["state"] == "ACKNOWLEDGED" and acknowledged["acknowledgedBy"] == "tester"
    await browser.screenshot("costgraph-console-alerts.png")

    # Reports: a CSV download link made through the API; it downloads.
    await open_page(browser, "reports")
    export_form = q('form[aria-label="Export a report"]')
    await browser.evaluate(f"{export_form}.requestSubmit()")
    link = await browser.wait_for(f"{q('#export-link a')}?.href")
    assert link.startswith(f"{url}/exports/usage.csv?")
    async with httpx.AsyncClient() as http:
        assert (await http.get(link)).status_code == 200
    await browser.screenshot("costgraph-console-reports.png")

    # The ledger drilled down to one user.
    await open_page(browser, "ledger")
    await browser.evaluate(f"location.hash = '#/ledger?user={demo.users['Ada']}'")
    await browser.wait_for(f"!!{q('#user-drill')}")
    await submit_range(browser, "ledger-results", *days)
    await browser.wait_for(f"!!{q('#user-drill')}")
    shown_users = await browser.evaluate(texts("#ledger-table tbody tr td:nth-child(4)"))
    assert shown_users and set(shown_users) == {"Ada"}
    await browser.screenshot("costgraph-console-ledger.png")


async def test_the_console_end_to_end(settings: Settings, tenant: Tenant, keys: KeyStore) -> None:
    demo = await console_tenant.build(tenant)
    days = (dates.day(-20).date().isoformat(), dates.day(0).date().isoformat())
    finance = tenant.token_for(roles=["finance_viewer"])
    member = mint_access_token(
        keys.active,
        issuer=settings.issuer,
        audience=settings.audience,
        subject="ada",
        organization_id=tenant.org.id,
        roles=["member"],
        ttl=timedelta(minutes=30),
        accounts=[uuid.UUID(demo.prepaid_account)],
    )

    with running_servers(settings, 1) as (url,):
        async with headless_chromium() as browser:
            await sign_in(browser, url, tenant.token)
            await overview_banner_and_live(browser, url, tenant, demo)
            await pnl_and_usage(browser, tenant, demo, days)
            await budget_on_the_overview(browser, tenant, demo)
            await alerts_reports_ledger(browser, url, tenant, demo, days)

            # A finance viewer: every page, no write control.
            await browser.evaluate(f"{q('#signout')}.click()")
            await sign_in(browser, url, finance)
            for page in PAGES:
                await open_page(browser, page)
                if page == "alerts":
                    await browser.wait_for(f"!!{q('#alerts-table')}")
                assert await write_buttons(browser) == [], page
            banner = await browser.evaluate(f"{q('#banner')}.textContent")
            assert "ask an organisation admin" in banner
            await open_page(browser, "budgets")
            await browser.screenshot("costgraph-console-finance-viewer.png")

            # A member: its own allowance and banner, nothing else.
            await browser.evaluate(f"{q('#signout')}.click()")
            await sign_in(browser, url, member)
            await open_page(browser, "mine")
            assert await browser.evaluate(texts("#nav a")) == ["My usage"]
            used = await browser.wait_for(f"{q('.own-used')}?.dataset.value")
            assert int(used) == console_tenant.INCLUDED_TOKENS * 8 // 10
            assert await browser.evaluate(f"{q('[data-banner]')}.dataset.banner") == "BUY_MORE"
            assert await write_buttons(browser) == []
            await browser.screenshot("costgraph-console-member.png")

        assert browser.errors() == []
        requested = [r for r in browser.requested() if not r.startswith("data:")]  # inline
        assert requested and [r for r in requested if not r.startswith(url)] == []
