"""docs/security.md's rights matrix says what auth/permissions.py grants, role by role."""

from __future__ import annotations

import re
from pathlib import Path

from costgraph.auth.permissions import ROLE_RIGHTS, SCOPE_RIGHTS, Right

PAGE = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def test_the_documented_rights_are_the_granted_ones() -> None:
    text = PAGE.read_text(encoding="utf-8")
    documented = {
        holder: set(re.findall(r"`([a-z_]+)`", rights))
        for holder, rights in re.findall(r"^\| `([a-z_:]+)` \| (`[^|]*) \|$", text, re.M)
        if holder in ROLE_RIGHTS or holder in SCOPE_RIGHTS
    }
    granted = {
        holder: {right.value for right in rights}
        for holder, rights in {**ROLE_RIGHTS, **SCOPE_RIGHTS}.items()
    }
    assert documented == granted


def test_every_right_is_explained() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for right in Right:
        assert re.search(rf"^\| `{right.value}` \| [a-z`]", text, re.M), right
