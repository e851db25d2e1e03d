"""The process's business clock from the settings: ``COSTGRAPH_CLOCK_START`` runs it from that
instant (tests and demos); unset, the system clock (costgraph.kernel.clock) stays."""

from __future__ import annotations

from costgraph.app.settings import Settings
from costgraph.kernel.clock import Clock, ShiftedClock, install, installed

#: The clock installed from a start, and that start.
_ours: tuple[Clock, object] | None = None


def install_configured_clock(settings: Settings) -> None:
    """Install a clock starting at ``settings.clock_start``, if one is set. Asked again for the
    same start while that clock is still the one installed (the CLI, then the app it builds),
    it leaves it running rather than starting it over."""
    global _ours
    start = settings.clock_start
    if start is None:
        return
    if _ours is not None and _ours[0] is installed() and _ours[1] == start:
        return
    shifted = ShiftedClock(start)
    install(shifted)
    _ours = (shifted, start)
