"""The UI gets the live collector's lock ahead of a flooding ingest thread."""

from __future__ import annotations

import threading
import time

from dbg.ui.live import LockedCollector


def test_the_ui_waits_one_message_not_the_flood() -> None:
    collector = LockedCollector()
    stop = threading.Event()

    def flood() -> None:  # what the ingest thread does: message after message, no pause
        while not stop.is_set():
            with collector._turn():
                time.sleep(0.001)  # one message's work, holding the lock

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        waits = []
        for _ in range(20):
            t0 = time.perf_counter()
            assert collector.lock.acquire(timeout=2.0)
            waits.append(time.perf_counter() - t0)
            collector.lock.release()
            time.sleep(0.005)
    finally:
        stop.set()
        t.join(5)
    # in the app a plain lock sometimes lost every race until the UI's 0.2 s timeout
    assert max(waits) < 0.5, waits
