"""The shell and GraphQL examples of the README and docs/, read out of the Markdown.

A fenced block tagged ``sh`` or ``graphql`` is an example. It is run unless the line before
its fence (blank lines aside) is ``<!-- not run by the examples test: <reason> -->``: the
reason says why (it installs, starts a server, needs an outside service...). The runner
gives each page one bash session, in order, so a page's examples may build on each other
the way a reader's terminal would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_RUN = re.compile(r"^<!-- not run by the examples test: (?P<reason>.+\S) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
#: The address the pages use; the runner points it at the server it started.
DOCUMENTED_ADDRESS = "127.0.0.1:8000"


@dataclass(frozen=True, slots=True)
class Example:
    path: Path
    line: int
    lang: str
    code: str
    not_run_because: str | None


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def examples(path: Path) -> list[Example]:
    found: list[Example] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1  # the closing fence
        if fence["lang"] not in ("sh", "graphql"):
            continue
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = NOT_RUN.match(lines[before].strip()) if before >= 0 else None
        found.append(
            Example(
                path=path,
                line=start + 1,
                lang=fence["lang"],
                code="\n".join(body),
                not_run_because=marker["reason"] if marker else None,
            )
        )
    return found


def script(page: list[Example], port: int) -> str:
    """One bash script running a page's examples in order, each announced by its line."""
    parts = ["set -euo pipefail"]
    for example in page:
        if example.not_run_because is not None:
            continue
        code = example.code.replace(DOCUMENTED_ADDRESS, f"127.0.0.1:{port}")
        parts.append(f"echo '>>> {example.path.name}:{example.line}' >&2")
        if example.lang == "graphql":
            parts.append(f"costgraph query - <<'GRAPHQL_EXAMPLE'\n{code}\nGRAPHQL_EXAMPLE")
        else:
            parts.append(code)
    return "\n".join(parts) + "\n"


def links(path: Path) -> list[str]:
    """Relative link targets of a page (no anchors, no URLs)."""
    text = path.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [
        target.split("#", 1)[0]
        for target in targets
        if not re.match(r"^[a-z]+:", target) and not target.startswith("#")
    ]
