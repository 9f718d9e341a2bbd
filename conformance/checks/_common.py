"""Small helpers shared by check modules (no Airflow import at module level)."""

from __future__ import annotations

from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness.context import CheckContext
from conformance.harness.scheduler import QueuedTask, SchedulerHarness


def long_probe(ctx: CheckContext) -> Probe:
    """A task that stays in flight until released -- unless the executor runs tasks inside its
    heartbeat (single-threaded), where a hang would block the heartbeat; then a short sleep."""
    if ctx.can("single_threaded"):
        return Probe.new(ProbeKind.OK, delay=0.05)
    return Probe.new(ProbeKind.HANG)


def wait_started(h: SchedulerHarness, tasks: list[QueuedTask], deadline: float | None = None) -> None:
    h.wait_started(tasks, deadline)


def names(tasks: list[QueuedTask]) -> str:
    return ", ".join(t.task_id for t in tasks)
