"""run.py's process-wide settings (the serving itself is tested through `session-gateway run`, tests/e2e/)."""

from __future__ import annotations

import subprocess
import sys

from gateway.run import YOUNG_COLLECTION_THRESHOLD


def test_the_heap_is_settled_before_the_first_request():
    """What start-up made is frozen out of the collector's walks, and the young generation is collected less
    often than Python's default (in a process of its own: the test process's collector stays as it is)."""
    probe = ("import gc; from gateway.run import settle_heap; before = gc.get_threshold(); settle_heap(); "
             "print(gc.get_freeze_count(), *gc.get_threshold(), *before)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    frozen, young, older, oldest, *before = (int(n) for n in out.stdout.split())
    assert frozen > 1000  # the modules and objects imported so far
    assert young == YOUNG_COLLECTION_THRESHOLD > before[0]
    assert (older, oldest) == tuple(before[1:])
