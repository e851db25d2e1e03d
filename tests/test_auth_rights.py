"""The rights table says what the issue says, and CORS answers only configured origins."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.auth.permissions import ROLES, SCOPES, Right, rights_of
from costgraph.auth.principal import Principal

WRITES = {Right.WRITE_USAGE, Right.WRITE_BILLING, Right.MANAGE_ORGANIZATION, Right.MANAGE_CLIENTS}


def principal(roles: set[str], scopes: set[str] | None = None) -> Principal:
    return Principal(
        subject="s",
        organization_id=uuid.uuid4(),
        roles=frozenset(roles),
        scopes=None if scopes is None else frozenset(scopes),
        expires_at=datetime.now(UTC),
    )


def test_roles() -> None:
    assert rights_of(principal({"platform_admin"})) == frozenset(Right)
    assert rights_of(principal({"org_admin"})) == frozenset(Right) - {Right.PLATFORM}
    viewer = rights_of(principal({"finance_viewer"}))
    assert {Right.READ_LEDGER, Right.READ_USAGE} <= viewer and not viewer & WRITES
    member = rights_of(principal({"member"}))
    assert Right.READ_OWN_USAGE in member
    assert not member & (WRITES | {Right.READ_LEDGER, Right.READ_USAGE, Right.PLATFORM})
    assert rights_of(principal({"no-such-role"})) == frozenset()
    assert set(ROLES) == {"platform_admin", "org_admin", "finance_viewer", "member"}


def test_scopes() -> None:
    assert set(SCOPES) == {"usage:write", "usage:read", "billing:read", "billing:write"}
    reader = rights_of(principal(set(), {"billing:read"}))
    assert Right.READ_LEDGER in reader and not reader & WRITES
    assert not rights_of(principal(set(), {"usage:read"})) & WRITES
    assert Right.WRITE_USAGE in rights_of(principal(set(), {"usage:write"}))
    assert Right.WRITE_BILLING in rights_of(principal(set(), {"billing:write"}))
    everything = rights_of(principal(set(), set(SCOPES)))
    assert Right.MANAGE_CLIENTS not in everything  # a client never mints clients
    assert Right.PLATFORM not in everything
    # Scopes narrow a person's roles, never widen them.
    assert rights_of(principal({"member"}, {"billing:write"})) == {Right.READ_DIRECTORY}
    assert rights_of(principal({"org_admin"}, {"billing:read"})) == rights_of(
        principal(set(), {"billing:read"})
    )


async def test_cors_answers_configured_origins_only(settings: Settings, database_url: str) -> None:
    configured = Settings(
        **{**settings.model_dump(), "allowed_origins": "https://dash.example.com"}
    )
    app = create_app(configured, database_url)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        allowed = await http.options(
            "/graphql", headers={"Origin": "https://dash.example.com", **preflight}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example.com"
        refused = await http.options(
            "/graphql", headers={"Origin": "https://evil.example.com", **preflight}
        )
        assert "access-control-allow-origin" not in refused.headers
