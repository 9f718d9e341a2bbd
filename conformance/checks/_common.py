"""Small helpers shared by check modules (no Airflow import at module level)."""

from __future__ import annotations

from typing import Any

from conformance.harness import QueuedTask, SchedulerHarness
from conformance.probes import Probe, ProbeKind


def long_probe(ctx: Any) -> Probe:
    """A task that stays in flight until released -- unless the executor runs tasks inside its
    heartbeat (single-threaded), where a hang would block the heartbeat; then a short sleep."""
    if ctx.capabilities.get("single_threaded"):
        return Probe.new(ProbeKind.OK, delay=0.05)
    return Probe.new(ProbeKind.HANG)


def wait_started(h: SchedulerHarness, tasks: list[QueuedTask], deadline: float | None = None) -> None:
    ids = [t.task_id for t in tasks]
    h.drain(lambda: all(h.journal().started(i) for i in ids), f"probes {ids} to start", deadline)


def names(tasks: list[QueuedTask]) -> str:
    return ", ".join(t.task_id for t in tasks)
