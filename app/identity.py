"""Wiring identity from settings: who may issue tokens, and keeping revocations current."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from costgraph.app.settings import Settings
from costgraph.auth.clients import Revocations, load_revocations
from costgraph.auth.jwks import JwksFileKeys, JwksUrlKeys
from costgraph.auth.keys import KeyStore
from costgraph.auth.oauth_server import OAuthService
from costgraph.auth.permissions import ROLES
from costgraph.auth.revocation import RevocationList, keep_fresh
from costgraph.auth.verify import ClaimNames, KeySource, LocalKeys, TokenVerifier, TrustedIssuer
from costgraph.models.scoping import bind_platform


def external_issuer(settings: Settings) -> TrustedIssuer | None:
    """The configured identity provider, if any (validated by :class:`Settings`)."""
    if not settings.idp_issuer:
        return None
    keys: KeySource
    if settings.idp_jwks_url:
        keys = JwksUrlKeys(
            settings.idp_jwks_url,
            min_refetch_interval=settings.jwks_min_refetch_seconds,
            max_age=settings.jwks_max_age_seconds,
            timeout=settings.jwks_timeout_seconds,
        )
    else:
        assert settings.idp_jwks_file is not None
        keys = JwksFileKeys(settings.idp_jwks_file)
    pinned = settings.idp_organization_id
    return TrustedIssuer(
        issuer=settings.idp_issuer,
        audience=settings.idp_audience or settings.audience,
        keys=keys,
        claims=ClaimNames(
            organization=settings.idp_org_claim,
            roles=settings.idp_roles_claim,
            scope=settings.idp_scope_claim,
        ),
        strict_audience=False,
        organization_id=pinned,
        # A company's own IdP speaks for its organisation only, never for the platform.
        allowed_roles=None if pinned is None else frozenset(ROLES) - {"platform_admin"},
    )


def build_verifier(
    settings: Settings, keys: KeyStore, revocations: RevocationList
) -> TokenVerifier:
    external = external_issuer(settings)
    return TokenVerifier(
        LocalKeys(keys),
        issuer=settings.issuer,
        audience=settings.audience,
        leeway_seconds=settings.jwt_leeway_seconds,
        external=() if external is None else (external,),
        revocations=revocations,
    )


def build_oauth(settings: Settings, keys: KeyStore, revocations: RevocationList) -> OAuthService:
    return OAuthService(
        keys=keys,
        issuer=settings.issuer,
        audience=settings.audience,
        token_ttl=timedelta(seconds=settings.oauth_token_ttl_seconds),
        revocations=revocations,
    )


async def load_all_revocations(sessions: async_sessionmaker[AsyncSession]) -> Revocations:
    async with sessions() as session:
        bind_platform(session.sync_session)  # revocations are checked before any tenant is known
        return await load_revocations(session)


@contextlib.asynccontextmanager
async def revocations_kept_fresh(
    revocations: RevocationList, sessions: async_sessionmaker[AsyncSession], interval: float
) -> AsyncIterator[None]:
    """Load every revocation before serving, then merge new ones every ``interval`` seconds."""
    revocations.merge(await load_all_revocations(sessions))
    task = asyncio.create_task(
        keep_fresh(revocations, lambda: load_all_revocations(sessions), interval)
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
