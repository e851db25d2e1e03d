from __future__ import annotations

from tests.conftest import Tenant


async def test_me_and_organization(tenant: Tenant) -> None:
    body = await tenant.gql(
        "{ me { subject roles organizationId } organization { slug reportingCurrency } }"
    )
    assert body["data"]["me"]["organizationId"] == str(tenant.org.id)
    assert body["data"]["organization"]["slug"] == tenant.org.slug
