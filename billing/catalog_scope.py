"""The one place that says which rows of the shared pricing tables a caller sees.

``model_prices``, ``model_aliases`` and ``exchange_rates`` hold platform rows
(``organization_id`` NULL, visible to every tenant) and one organisation's own rows (its
override, visible to it alone). They cannot be :class:`~costgraph.models.base.TenantScoped`,
so the automatic tenant filter does not apply to them: every read of them in the
repositories takes its WHERE clause from :func:`visible_to`, and every write takes its owner
from :func:`owner_of` (the verified tenant, or the platform for a platform admin).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, or_


def visible_to(owner_column: Any, organization_id: uuid.UUID | None) -> ColumnElement[bool]:
    """Platform rows, plus the organisation's own rows when there is one."""
    if organization_id is None:
        return owner_column.is_(None)  # type: ignore[no-any-return]
    return or_(owner_column.is_(None), owner_column == organization_id)
