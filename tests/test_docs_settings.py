"""docs/settings.md is generated from app/settings.py: every setting is described there."""

from __future__ import annotations

from pathlib import Path

from costgraph.app.settings import Settings
from costgraph.app.settings_reference import page_path, render

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_has_a_description() -> None:
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undescribed == []


def test_the_committed_settings_page_is_current() -> None:
    committed = page_path(ROOT).read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/settings.md is stale: run `python scripts/settings_doc.py` and commit it"
    )


def test_the_page_names_every_setting_once() -> None:
    page = render()
    for name in Settings.model_fields:
        assert page.count(f"`COSTGRAPH_{name.upper()}`") == 1, name
