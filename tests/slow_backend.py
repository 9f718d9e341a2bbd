"""A remote backend's latency, injected into any executor built on the reference LocalExecutor.

Most executors people write start tasks through a batch scheduler, a container service or a task
queue, seconds away. ``SlowBackend`` delays every start and every terminal event by ``LATENCY``
seconds, without changing what the executor does: the reference executor behind it is still correct
and must be CERTIFIED, and a broken executor behind it must still be caught (never "inconclusive").
"""

from __future__ import annotations

import threading
import time
from typing import Any

from reference_executors._process import FAILED
from reference_executors.local import LocalExecutor

LATENCY = 1.5


class SlowBackend(LocalExecutor):
    """Mix in first: ``type("Slow", (SlowBackend, Broken), {})`` delays Broken's starts and reports."""

    def __init__(self, *args: Any, latency: float | None = None, start_latency: float | None = None,
                 report_latency: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: seconds before a start and before a terminal event (``--executor-kwargs '{"latency": 5}'``), or each
        #: on its own (``{"start_latency": 4, "report_latency": 3}``)
        both = LATENCY if latency is None else float(latency)
        self.latency = both if start_latency is None else float(start_latency)
        self.report_latency = both if report_latency is None else float(report_latency)
        self._starting: dict[Any, tuple[float, Any]] = {}
        self._reporting: list[tuple[float, Any, str, str]] = []

    def _in_flight_here(self, key: Any) -> bool:
        """Still on its way to start, or its terminal event still on its way back."""
        return key in self._starting or any(r[1] == key for r in self._reporting)

    def _dispatch(self, key: Any, payload: Any) -> None:
        if self._in_flight_here(key):
            self._held[key] = payload  # queued again while in flight: the executor's own rule, hold it back
            return
        if key in self._procs or key in self.event_buffer:
            super()._dispatch(key, payload)  # the executor's own rule for a key that is still running
            return
        self._starting[key] = (time.monotonic() + self.latency, payload)

    def _start_held_runs(self) -> None:
        waiting = {key: self._held.pop(key) for key in list(self._held) if self._in_flight_here(key)}
        super()._start_held_runs()
        self._held.update(waiting)

    def _next_run_pending(self, key: Any) -> bool:
        return key in self._starting or bool(super()._next_run_pending(key))

    def _report(self, key: Any, state: str, info: str) -> None:
        self._reporting.append((time.monotonic() + self.report_latency, key, state, info))

    def sync(self) -> None:
        now = time.monotonic()
        for key, (due, payload) in list(self._starting.items()):
            if due <= now:
                del self._starting[key]
                super()._dispatch(key, payload)
        super().sync()
        self._flush(now)

    def _flush(self, now: float) -> None:
        for item in [r for r in self._reporting if r[0] <= now]:
            self._reporting.remove(item)
            super()._report(*item[1:])

    def end(self) -> None:
        pause = threading.Event()
        while self._starting or self._reporting:
            self.sync()
            pause.wait(0.05)  # the backend's own latency: nothing to do but let it pass
        super().end()
        self._flush(float("inf"))

    def terminate(self) -> None:
        for key in list(self._starting):
            del self._starting[key]
            super()._report(key, FAILED, "terminated before it started")
        super().terminate()
        self._flush(float("inf"))

    def _forget(self, key: Any) -> None:
        self._starting.pop(key, None)
        self._reporting = [r for r in self._reporting if r[1] != key]
        super()._forget(key)


def behind_latency(executor: type) -> type:
    """``executor`` with a remote backend's latency in front of it."""
    return type(f"Slow{executor.__name__}", (SlowBackend, executor), {"__module__": __name__})


SlowReferenceLocal = behind_latency(LocalExecutor)

# Broken executors behind the same latency, importable by name (the overlapped workers rebuild the executor
# from its dotted path): a slow backend must not hide a defect (benchmarks/latency.py).
from tests.broken_executors import ReversedPriority, RunsEachTaskTwice  # noqa: E402

SlowReversedPriority = behind_latency(ReversedPriority)
SlowRunsEachTaskTwice = behind_latency(RunsEachTaskTwice)
