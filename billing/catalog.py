"""The model price catalog: versioned prices per provider and model, aliases, and the choice
of the version that prices an event.

Owners: the platform writes the catalog every tenant sees (``organization_id`` NULL); an
organisation may write its own versions, which win for its tenant at every instant they are
in force (at other instants the platform's version applies). Aliases resolve the same way.

Versions are half-open ``[effective_from, effective_to)`` and never overlap within one
provider/model/owner. Setting a version without an end appends it: the open-ended version
before it is closed at the new ``effective_from``. A version with an end may fill a gap in
the past. A price that was wrong is corrected with a new version and, for events already
recorded, an explicit reprice (:mod:`costgraph.billing.reprice`) — never by editing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import catalog_repository as repo
from costgraph.billing import tenant_cache
from costgraph.billing.cost_formula import PriceSheet
from costgraph.billing.validation import UNIT_KINDS
from costgraph.kernel.clock import EARLIEST_EVENT, format_rfc3339, utcnow
from costgraph.kernel.errors import ValidationFailed, join_path
from costgraph.kernel.money import require_currency
from costgraph.models.pricing import UNIT_PRICE_COLUMNS, ModelPrice

PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
NAME_MAX = 200
MAX_ALIASES = 50
#: Prices may be set ahead of time, but not absurdly far.
LATEST_EFFECTIVE = timedelta(days=3660)
LIST_LIMIT = 2_000


@dataclass(frozen=True, slots=True)
class NewPriceVersion:
    """A price version as a caller asks for it (decoded from ModelPriceInput or the data file)."""

    provider: str
    model: str
    currency: str
    effective_from: datetime
    effective_to: datetime | None = None
    input_per_million: Decimal | None = None
    output_per_million: Decimal | None = None
    cached_input_per_million: Decimal | None = None
    cache_write_per_million: Decimal | None = None
    reasoning_per_million: Decimal | None = None
    long_context_threshold: int | None = None
    input_per_million_above_threshold: Decimal | None = None
    output_per_million_above_threshold: Decimal | None = None
    unit_prices: tuple[tuple[str, Decimal], ...] = ()
    aliases: tuple[str, ...] = ()
    source_url: str | None = None


@dataclass(frozen=True, slots=True)
class PriceVersion:
    id: uuid.UUID
    organization_id: uuid.UUID | None
    provider: str
    model: str
    currency: str
    effective_from: datetime
    effective_to: datetime | None
    sheet: PriceSheet
    aliases: tuple[str, ...] = ()
    source_url: str | None = None
    created_at: datetime | None = None

    def covers(self, at: datetime) -> bool:
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)

    @classmethod
    def of(cls, row: ModelPrice, aliases: Iterable[str] = ()) -> PriceVersion:
        return cls(
            id=row.id,
            organization_id=row.organization_id,
            provider=row.provider,
            model=row.model,
            currency=row.currency,
            effective_from=row.effective_from,
            effective_to=row.effective_to,
            sheet=repo.sheet_of(row),
            aliases=tuple(aliases),
            source_url=row.source_url,
            created_at=row.created_at,
        )


@dataclass(slots=True)
class CatalogView:
    """What one batch needs from the catalog, loaded in one go (see :func:`load_view`)."""

    canonical: Mapping[tuple[str, str], str]
    versions: Mapping[tuple[str, str], Sequence[PriceVersion]] = field(default_factory=dict)

    def model_of(self, provider: str, model: str) -> str:
        return self.canonical.get((provider, model), model)

    def version_at(self, provider: str, model: str, at: datetime) -> PriceVersion | None:
        """The organisation's version in force at ``at``, else the platform's, else None."""
        platform: PriceVersion | None = None
        for version in self.versions.get((provider, self.model_of(provider, model)), ()):
            if version.covers(at):
                if version.organization_id is not None:
                    return version
                platform = version
        return platform


def lookup_provider(provider: str) -> str:
    """Provider ids are lower-case slugs; events may spell them in any case."""
    return provider.strip().lower()


async def load_view(
    session: AsyncSession,
    organization_id: uuid.UUID,
    keys: Iterable[tuple[str, str]],
    start: datetime | None = None,
    end: datetime | None = None,
) -> CatalogView:
    """Aliases and versions for ``keys`` (provider, model) over ``[start, end]`` (without
    bounds: every version): two queries."""
    wanted = set(keys)
    canonical = await repo.resolve_aliases(session, organization_id, wanted)
    models = {(provider, canonical.get((provider, model), model)) for provider, model in wanted}
    versions: dict[tuple[str, str], list[PriceVersion]] = {}
    for row in await repo.versions_between(session, organization_id, models, start, end):
        versions.setdefault((row.provider, row.model), []).append(PriceVersion.of(row))
    return CatalogView(canonical=canonical, versions=versions)


@dataclass(frozen=True, slots=True)
class CatalogName:
    """What the catalog holds for one (provider, name) as one organisation sees it: the model
    the name is an alias of (None: not an alias), and every version of the model it names."""

    canonical: str | None
    versions: tuple[PriceVersion, ...]


async def cached_view(
    session: AsyncSession, organization_id: uuid.UUID, keys: Iterable[tuple[str, str]]
) -> CatalogView:
    """:func:`load_view` for any instants, from this process's catalog cache
    (:data:`costgraph.billing.tenant_cache.CATALOG`); names it lacks cost two queries."""
    cache = tenant_cache.CATALOG
    found: dict[tuple[str, str], CatalogName] = {}
    missing: list[tuple[str, str]] = []
    for key in set(keys):
        hit = cache.get((organization_id, *key))
        if hit is None:
            missing.append(key)
        else:
            found[key] = hit
    if missing:
        generation = cache.generation
        loaded = await load_view(session, organization_id, missing)
        for provider, name in missing:
            target = loaded.canonical.get((provider, name))
            entry = CatalogName(target, tuple(loaded.versions.get((provider, target or name), ())))
            cache.put((organization_id, provider, name), entry, generation=generation)
            found[(provider, name)] = entry
    return CatalogView(
        canonical={key: e.canonical for key, e in found.items() if e.canonical is not None},
        versions={(key[0], e.canonical or key[1]): e.versions for key, e in found.items()},
    )


# --- writing ---


def require_effective_date(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise ValidationFailed("the date must carry a time zone", field)
    if value < EARLIEST_EVENT or value > utcnow() + LATEST_EFFECTIVE:
        raise ValidationFailed(
            f"the date must lie between {format_rfc3339(EARLIEST_EVENT)} and ten years from now",
            field,
        )
    return value.astimezone(UTC)


def require_price(value: Decimal | None, field: str) -> Decimal | None:
    if value is None:
        return None
    if not value.is_finite() or value < 0:
        raise ValidationFailed("a price must be zero or more", field)
    return value


def _require_name(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > NAME_MAX:
        raise ValidationFailed(f"must be 1 to {NAME_MAX} characters", field)
    return value


def validate_version(new: NewPriceVersion, path: str = "input") -> NewPriceVersion:
    """Check a version that needs no database; return it normalised."""
    provider = new.provider.strip()
    if not PROVIDER_RE.fullmatch(provider):
        raise ValidationFailed(
            "provider must be a lower-case id of letters, digits, '.', '_' or '-'",
            join_path(path, "provider"),
        )
    model = _require_name(new.model, join_path(path, "model"))
    require_currency(new.currency, join_path(path, "currency"))
    start = require_effective_date(new.effective_from, join_path(path, "effectiveFrom"))
    end = None
    if new.effective_to is not None:
        end = require_effective_date(new.effective_to, join_path(path, "effectiveTo"))
        if end <= start:
            raise ValidationFailed(
                "effectiveTo must be after effectiveFrom", join_path(path, "effectiveTo")
            )
    for name in (
        "input_per_million",
        "output_per_million",
        "cached_input_per_million",
        "cache_write_per_million",
        "reasoning_per_million",
        "input_per_million_above_threshold",
        "output_per_million_above_threshold",
    ):
        require_price(getattr(new, name), join_path(path, _camel(name)))
    threshold = new.long_context_threshold
    above = (new.input_per_million_above_threshold, new.output_per_million_above_threshold)
    if threshold is not None and threshold <= 0:
        raise ValidationFailed(
            "the threshold must be a positive token count", join_path(path, "longContextThreshold")
        )
    if threshold is None and any(p is not None for p in above):
        raise ValidationFailed(
            "above-threshold prices need a longContextThreshold",
            join_path(path, "longContextThreshold"),
        )
    if threshold is not None and all(p is None for p in above):
        raise ValidationFailed(
            "a longContextThreshold needs an above-threshold price",
            join_path(path, "inputPerMillionAboveThreshold"),
        )
    seen: set[str] = set()
    for index, (kind, price) in enumerate(new.unit_prices):
        unit_path = join_path(path, "unitPrices", index)
        if kind not in UNIT_KINDS:
            raise ValidationFailed(f"unknown unit kind {kind[:20]!r}", join_path(unit_path, "kind"))
        if kind in seen:
            raise ValidationFailed(f"{kind} is priced twice", join_path(unit_path, "kind"))
        seen.add(kind)
        require_price(price, join_path(unit_path, "price"))
    token_prices = (
        new.input_per_million,
        new.output_per_million,
        new.cached_input_per_million,
        new.cache_write_per_million,
        new.reasoning_per_million,
    )
    if all(p is None for p in token_prices) and not new.unit_prices:
        raise ValidationFailed(
            "a version needs at least one price", join_path(path, "inputPerMillion")
        )
    if len(new.aliases) > MAX_ALIASES:
        raise ValidationFailed(f"at most {MAX_ALIASES} aliases", join_path(path, "aliases"))
    aliases: list[str] = []
    for index, alias in enumerate(new.aliases):
        name = _require_name(alias, join_path(path, "aliases", index))
        if name == model:
            raise ValidationFailed(
                "a model is not its own alias", join_path(path, "aliases", index)
            )
        if name not in aliases:
            aliases.append(name)
    if new.source_url is not None and len(new.source_url) > 2_000:
        raise ValidationFailed("the source URL is too long", join_path(path, "sourceUrl"))
    return NewPriceVersion(
        provider=provider,
        model=model,
        currency=new.currency,
        effective_from=start,
        effective_to=end,
        input_per_million=new.input_per_million,
        output_per_million=new.output_per_million,
        cached_input_per_million=new.cached_input_per_million,
        cache_write_per_million=new.cache_write_per_million,
        reasoning_per_million=new.reasoning_per_million,
        long_context_threshold=threshold,
        input_per_million_above_threshold=new.input_per_million_above_threshold,
        output_per_million_above_threshold=new.output_per_million_above_threshold,
        unit_prices=new.unit_prices,
        aliases=tuple(aliases),
        source_url=new.source_url,
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _range_text(row: ModelPrice) -> str:
    end = "open" if row.effective_to is None else format_rfc3339(row.effective_to)
    return f"[{format_rfc3339(row.effective_from)}, {end})"


def _values(owner: uuid.UUID | None, new: NewPriceVersion, actor: str | None) -> dict[str, object]:
    values: dict[str, object] = {
        "organization_id": owner,
        "provider": new.provider,
        "model": new.model,
        "currency": new.currency,
        "effective_from": new.effective_from,
        "effective_to": new.effective_to,
        "input_per_million": new.input_per_million,
        "output_per_million": new.output_per_million,
        "cached_input_per_million": new.cached_input_per_million,
        "cache_write_per_million": new.cache_write_per_million,
        "reasoning_per_million": new.reasoning_per_million,
        "long_context_threshold": new.long_context_threshold,
        "input_per_million_above_threshold": new.input_per_million_above_threshold,
        "output_per_million_above_threshold": new.output_per_million_above_threshold,
        "source_url": new.source_url,
        "created_by": actor,
    }
    for kind, price in new.unit_prices:
        values[UNIT_PRICE_COLUMNS[kind]] = price
    return values


async def set_model_price(
    session: AsyncSession,
    owner: uuid.UUID | None,
    new: NewPriceVersion,
    actor: str | None = None,
    path: str = "input",
) -> PriceVersion:
    """Add a version for ``owner`` (None: the platform catalog). Overlap is VALIDATION_FAILED."""
    new = validate_version(new, path)
    await repo.lock_series(session, owner, new.provider, new.model)
    if await repo.alias_targets(session, owner, new.provider, [new.model]):
        raise ValidationFailed(
            f"{new.model!r} is an alias; price the model it names", join_path(path, "model")
        )
    existing = await repo.series(session, owner, new.provider, new.model)
    open_version = next((row for row in existing if row.effective_to is None), None)
    closes = (
        new.effective_to is None
        and open_version is not None
        and open_version.effective_from < new.effective_from
    )
    new_end = new.effective_to
    for row in existing:
        row_end = new.effective_from if closes and row is open_version else row.effective_to
        if (row_end is None or new.effective_from < row_end) and (
            new_end is None or row.effective_from < new_end
        ):
            raise ValidationFailed(
                f"{new.provider}/{new.model} already has a version over {_range_text(row)} "
                "that this one would overlap",
                join_path(path, "effectiveFrom"),
            )
    if closes:
        assert open_version is not None
        await repo.close_version(session, open_version.id, new.effective_from)
    fresh_aliases = await _new_aliases(session, owner, new, path)
    row = await repo.insert_version(session, _values(owner, new, actor))
    await repo.add_aliases(session, owner, new.provider, new.model, fresh_aliases)
    current = await repo.aliases_of(session, owner, [(new.provider, new.model)])
    return PriceVersion.of(row, current.get((owner, new.provider, new.model), []))


async def _new_aliases(
    session: AsyncSession, owner: uuid.UUID | None, new: NewPriceVersion, path: str
) -> list[str]:
    """The aliases to add. Aliases are added, never moved: one already naming another model
    is an error; one already naming this model is kept as it is."""
    taken = await repo.alias_targets(session, owner, new.provider, new.aliases)
    for index, alias in enumerate(new.aliases):
        target = taken.get(alias)
        if target is not None and target != new.model:
            raise ValidationFailed(
                f"{alias!r} is already an alias of {target!r}", join_path(path, "aliases", index)
            )
    if clash := await repo.priced_models(session, owner, new.provider, new.aliases):
        raise ValidationFailed(
            f"{sorted(clash)[0]!r} has prices of its own and cannot be an alias",
            join_path(path, "aliases"),
        )
    return [alias for alias in new.aliases if alias not in taken]


async def model_prices(
    session: AsyncSession,
    organization_id: uuid.UUID | None,
    provider: str | None = None,
    model: str | None = None,
    at: datetime | None = None,
) -> list[PriceVersion]:
    """Versions the caller sees. With ``at``: the one version per model that would price an
    event at that instant (the organisation's own winning). Without: the whole history."""
    provider_key = None if provider is None else lookup_provider(provider)
    models = None
    if model is not None:
        names = {model}
        if provider_key is not None:
            resolved = await repo.resolve_aliases(session, organization_id, [(provider_key, model)])
            names.add(resolved.get((provider_key, model), model))
        models = sorted(names)
    rows = await repo.list_versions(session, organization_id, provider_key, models, at, LIST_LIMIT)
    if at is not None:
        chosen: dict[tuple[str, str], ModelPrice] = {}
        for row in rows:  # platform rows sort first: the organisation's own overwrites them
            chosen[(row.provider, row.model)] = row
        rows = list(chosen.values())
    aliases = await repo.aliases_of(session, organization_id, {(r.provider, r.model) for r in rows})
    return [
        PriceVersion.of(row, aliases.get((row.organization_id, row.provider, row.model), []))
        for row in rows
    ]
