"""What a bus subscriber can receive besides messages: notices about the bus itself."""

from __future__ import annotations

import enum


class BusSignal(enum.Enum):
    #: The connection to the broker was lost; messages published meanwhile are lost.
    INTERRUPTED = "interrupted"
    #: The connection is back; anything derived from messages should be re-read.
    RESUMED = "resumed"
    #: This subscriber's inbox filled and was reset; what it held is gone.
    GAP = "gap"


#: One item of a subscriber's inbox: a message's text or a signal.
BusItem = str | BusSignal
