"""Write docs/settings.md from the settings' descriptions (a test fails when they differ)."""

from __future__ import annotations

from pathlib import Path

from costgraph.app.settings_reference import page_path, render

if __name__ == "__main__":
    path = page_path(Path(__file__).resolve().parent.parent)
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
