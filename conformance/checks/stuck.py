"""SPEC STUCK: handing back tasks stuck in queued (revoke_task, 2.x cleanup_stuck_queued_tasks)."""

from __future__ import annotations

from typing import Any

from conformance.checks._common import wait_started
from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext
from conformance.harness.scheduler import SchedulerHarness

_EXPECTS = ("_handle_tasks_stuck_in_queued calls revoke_task(ti=...) (2.x falls back to "
            "cleanup_stuck_queued_tasks) and then requeues or fails the TI itself; the executor must "
            "forget the task, never start it afterwards, and not raise.")


def _stuck(ctx: CheckContext, h: SchedulerHarness, tis: list[Any]) -> list[str]:
    try:
        return h.stuck(tis)
    except compat.StuckHandlingUnsupported:
        raise ctx.not_supported("revoke_task and cleanup_stuck_queued_tasks raise NotImplementedError") from None


@check("stuck.revoked_queued_task_never_starts", clause="STUCK-1", needs=("stuck_handling",),
       title="a task revoked while still queued never starts and is no longer tracked",
       expects=_EXPECTS, fix="In revoke_task, pop the key from queued_tasks (and your own queues).")
def revoked_queued_task_never_starts(ctx: CheckContext) -> None:
    """Queue, revoke before any heartbeat, heartbeat ten times, end: the probe never ran."""
    h = ctx.harness()
    task = h.queue(Probe.new(ProbeKind.OK))
    _stuck(ctx, h, [task.ti])
    for _ in range(10):
        h.heartbeat()
        h.collect()
    h.end()  # end() waits for whatever was dispatched: afterwards the journal is complete
    ctx.expect(not h.runs(task), f"{task.task_id} started after it was revoked")
    ctx.expect(not h.executor.has_task(task.ti), "has_task(ti) is still True after revoke")


@check("stuck.revoke_adds_no_event_and_never_raises", clause="STUCK-2", needs=("revoke",),
       title="revoke_task adds no event and does not raise, even for an unknown TI",
       expects=_EXPECTS + " An event from revoke races with the scheduler's own requeue/fail decision.",
       fix="Do not call success/fail/change_state in revoke_task; ignore TIs you do not know.")
def revoke_adds_no_event_and_never_raises(ctx: CheckContext) -> None:
    """Revoke a queued TI and a TI the executor never saw: nothing raises, the buffer is unchanged."""
    h = ctx.harness()
    task = h.queue(Probe.new(ProbeKind.OK))
    unknown = compat.make_task("conformance_dag", "never_queued_task")
    before = dict(h.executor.event_buffer)
    h.revoke(task)
    h.call("revoke_task(unknown ti)", h.executor.revoke_task, ti=unknown.ti)
    after = dict(h.executor.event_buffer)
    ctx.expect(after == before, f"revoke_task changed the event buffer: {before!r} -> {after!r}")


@check("stuck.revoked_running_task_untracked", clause="STUCK-2", needs=("revoke", "parallel"),
       title="revoking a task that already started drops it from running and frees its slot",
       expects=_EXPECTS, fix="In revoke_task, stop the task and discard its key from self.running.")
def revoked_running_task_untracked(ctx: CheckContext) -> None:
    """A hanging task is revoked: not in running, has_task False, slot free; no event follows."""
    h = ctx.harness(parallelism=2)
    ex = h.executor
    task = h.queue(Probe.new(ProbeKind.HANG))
    wait_started(h, [task])
    h.call("revoke_task(running ti)", ex.revoke_task, ti=task.ti)
    ctx.expect(task.key not in ex.running and not ex.has_task(task.ti),
               f"after revoke: in running={task.key in ex.running}, has_task={ex.has_task(task.ti)}")
    ctx.expect(ex.slots_available == ex.parallelism, f"after revoke slots_available={ex.slots_available}")
    h.release(task)
    for _ in range(5):
        h.heartbeat()
        h.collect()
    late = [e for e in h.terminal_events(task.key)]
    ctx.expect(not late, f"a terminal event arrived for the revoked task: {late}")


@check("stuck.requeued_after_revoke_runs", clause="STUCK-3", needs=("stuck_handling",),
       title="after revoke/cleanup the same TI can be queued again (next try) and runs normally",
       expects="After a revoke the scheduler sets the TI back to scheduled and queues it again.",
       fix="Forget everything about a revoked key; do not block its dag/task from running again.")
def requeued_after_revoke_runs(ctx: CheckContext) -> None:
    """Queue, revoke, queue the next try: it runs once and succeeds."""
    h = ctx.harness()
    first = h.queue(Probe.new(ProbeKind.OK))
    _stuck(ctx, h, [first.ti])
    h.collect()
    again = h.make(first.probe, try_number=first.key.try_number + 1)
    h.queue_task(again)
    h.drain(lambda: any(e.state == ctx.states.SUCCESS for e in h.terminal_events(again.key)),
            "a SUCCESS event for the re-queued try")
    ctx.expect(len(h.runs(again)) == 1, f"the re-queued task ran {len(h.runs(again))} times")


@check("stuck.cleanup_returns_consumable", clause="STUCK-1", needs=("cleanup_stuck",),
       applies=lambda: hasattr(compat.base_executor_class(), "cleanup_stuck_queued_tasks"),
       applies_text="Airflow 2.x",
       title="cleanup_stuck_queued_tasks returns strings the 2.x scheduler can log",
       expects="The 2.x scheduler iterates the result: `for ti_repr in executor.cleanup_stuck_queued_tasks"
               "(tis=...)` and logs each item.",
       fix="Return a list of str (e.g. repr of each TI handled).")
def cleanup_returns_consumable(ctx: CheckContext) -> None:
    """The result is iterable and holds one str per TI."""
    h = ctx.harness()
    task = h.queue(Probe.new(ProbeKind.OK))
    result = h.call("cleanup_stuck_queued_tasks([ti])", h.executor.cleanup_stuck_queued_tasks, tis=[task.ti])
    try:
        items = list(result)
    except TypeError:
        raise ctx.fail(f"returned {result!r}, which the scheduler cannot iterate") from None
    ctx.expect(all(isinstance(i, str) for i in items), f"returned {items!r}, not strings")
    for _ in range(5):
        h.heartbeat()
    h.end()  # end() waits for whatever was dispatched: afterwards the journal is complete
    ctx.expect(not h.runs(task), "the cleaned-up task started afterwards")
