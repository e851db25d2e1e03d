"""Write the committed SDL, schema/schema.graphql, from the code (tests fail when they differ)."""

from __future__ import annotations

from pathlib import Path

from costgraph.app.graphql_schema import build_schema

SDL_PATH = Path(__file__).resolve().parent.parent / "schema" / "schema.graphql"


def sdl() -> str:
    return build_schema().as_str() + "\n"


if __name__ == "__main__":
    SDL_PATH.write_text(sdl(), encoding="utf-8")
    print(f"wrote {SDL_PATH}")
