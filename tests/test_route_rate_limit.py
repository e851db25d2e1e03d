"""The request budgets of ``/graphql`` also cover the plain HTTP routes a token opens (CSV
exports, report files), and signed links, which draw on the budget of who made them: one
count per principal across all of them, 429 with ``Retry-After`` and ``RATE_LIMITED``."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from costgraph.app.settings import Settings
from tests.conftest import make_tenant
from tests.dates import month_key
from tests.test_exports_csv import CREATE_LINK, RANGE
from tests.test_rate_limit import ME, client_token, limited_app, post, refused


async def test_exports_and_reports_draw_on_the_principal_budget(
    settings: Settings, database_url: str, mint: Any
) -> None:
    async with limited_app(
        settings,
        database_url,
        rate_limit_principal_per_minute=4,
        rate_limit_client_per_minute=0,
    ) as (client, state):
        tenant = await make_tenant(state, client, mint)
        bearer = {"Authorization": f"Bearer {tenant.token}"}
        export = "/exports/usage.csv"
        # 1: a GraphQL request; 2: an export; 3: a report file; 4: a signed link's download.
        made = await post(
            client, tenant.token, CREATE_LINK, input={"report": "LEDGER", "range": RANGE}
        )
        link = made.json()["data"]["createExportLink"]["url"]
        assert (await client.get(export, params=RANGE, headers=bearer)).status_code == 200
        summary = await client.get(f"/reports/summary.pdf?month={month_key(-9)}", headers=bearer)
        assert summary.status_code == 200, summary.text
        parts = urlsplit(link)
        by_link = f"{parts.path}?{parts.query}"
        assert (await client.get(by_link)).status_code == 200
        # The budget is spent, for every route and for the links this principal made.
        refused(await client.get(export, params=RANGE, headers=bearer), "principal")
        refused(
            await client.get(f"/reports/summary.xlsx?month={month_key(-9)}", headers=bearer),
            "principal",
        )
        template = f"/reports/templates/{uuid.uuid4()}/{month_key(-9)}"
        refused(await client.get(template, headers=bearer), "principal")
        refused(await client.get(by_link), "principal")
        refused(await post(client, tenant.token, ME), "principal")
        # Another person of the organisation has a budget of their own.
        colleague = {"Authorization": f"Bearer {mint(tenant.org.id, ['org_admin'], subject='c')}"}
        assert (await client.get(export, params=RANGE, headers=colleague)).status_code == 200
        # A refused token is refused before the budget is consulted (401, not 429).
        bad = await client.get(export, params=RANGE, headers={"Authorization": "Bearer x"})
        assert bad.status_code == 401


async def test_an_oauth_client_budget_covers_exports(
    settings: Settings, database_url: str, mint: Any, keys: Any
) -> None:
    async with limited_app(
        settings,
        database_url,
        rate_limit_principal_per_minute=0,
        rate_limit_client_per_minute=2,
    ) as (client, state):
        tenant = await make_tenant(state, client, mint)
        client_id = f"cg_{tenant.org.id.hex}_{uuid.uuid4().hex[:8]}"
        first = client_token(keys, settings, tenant.org.id, client_id)
        second = client_token(keys, settings, tenant.org.id, client_id)
        export = "/exports/usage.csv"
        ok = await client.get(export, params=RANGE, headers={"Authorization": f"Bearer {first}"})
        assert ok.status_code == 200, ok.text
        assert (await post(client, second, ME)).status_code == 200
        spent = await client.get(
            export, params=RANGE, headers={"Authorization": f"Bearer {second}"}
        )
        refused(spent, "client")
