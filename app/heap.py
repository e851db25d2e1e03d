"""The cyclic garbage collector tuned for a service that allocates in bursts (batch writes).

- A full (generation 2) collection walks every tracked object of the process: the imported
  modules, the schema, the engine — hundreds of thousands of objects that live as long as
  the process. A 1,000-event batch allocates enough that such a sweep came every few
  batches and stalled that request by 100-170 ms (measured with ``bench.ingest``).
  ``gc.freeze()`` once the service has started moves those objects into a permanent
  generation the collector skips (they are still reference counted); a sweep then costs
  only what was allocated since: 10-15 ms.
- The youngest generation is collected after 20,000 net allocations instead of 700: a batch
  ran ~17 young collections (and ~2 middle ones) for garbage that reference counting frees
  anyway; measured about 2 -> 0.5 ms of collector time per batch. The older generations keep
  their default thresholds.
"""

from __future__ import annotations

import gc

#: Net allocations of container objects between two collections of the youngest generation.
YOUNG_THRESHOLD = 20_000

_tuned = False


def tune_garbage_collector() -> None:
    """Collect once, freeze what is left, raise the youngest generation's threshold; once
    per process (more app instances in one process, as in the tests, add nothing)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
