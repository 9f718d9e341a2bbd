"""SPEC ADOPT: a new scheduler adopts the tasks of one that died (try_adopt_task_instances).

The scenario the harness plays: executor A (job 1) starts tasks and is abandoned without ``end()``,
as when the scheduler process is killed. Executor B (job 2) is handed those TIs the way
``adopt_or_reset_orphaned_tasks`` hands them: ``queued_by_job_id`` of the dead job, the
``external_executor_id`` A reported, state RUNNING.
"""

from __future__ import annotations

from typing import Any

from conformance.checks._common import wait_started
from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext
from conformance.harness.scheduler import QueuedTask, SchedulerHarness
from conformance.harness.timing import WaitTimedOut

_EXPECTS = ("adopt_or_reset_orphaned_tasks resets every TI returned (the subset not adopted) and "
            "makes this scheduler the owner of the rest, expecting their terminal events from this executor.")


def _external_id(h: SchedulerHarness, task: QueuedTask) -> str | None:
    s = compat.state_enum()
    for event in h.events_for(task.key):
        if event.state in (s.QUEUED, s.RUNNING) and isinstance(event.info, str):
            return event.info
    return getattr(task.ti, "external_executor_id", None)


def orphaned_tasks(ctx: CheckContext, count: int = 2) -> tuple[SchedulerHarness, list[QueuedTask], list[Any]]:
    """Executor A starts ``count`` hanging tasks and is abandoned; returns A, the tasks, adoptable TIs."""
    a = ctx.harness(parallelism=4, name="A", job_id=1)
    tasks = [a.queue(Probe.new(ProbeKind.HANG)) for _ in range(count)]
    wait_started(a, tasks)
    a.abandon()  # teardown must not end() it either: nobody will ever call A again
    tis = [compat.adoption_ready(t.handle, job_id=1, external_executor_id=_external_id(a, t), running=True)
           for t in tasks]
    return a, tasks, tis


@check("adoption.returns_unadopted_subset", clause="ADOPT-1",
       title="try_adopt_task_instances returns a subset of its input (the same objects) and never raises",
       expects=_EXPECTS + " The base class returns everything (adopted nothing).",
       fix="Return the list of input TIs you could not adopt -- every TI whose work you cannot find and track; "
           "ignore TIs of unknown jobs or without an external_executor_id instead of raising.")
def returns_unadopted_subset(ctx: CheckContext) -> None:
    """Empty in, empty out; foreign TIs (no external id, an external id that exists nowhere) come back as
    the same objects; a TI left out of the result must be tracked (has_task)."""
    h = ctx.harness()
    ctx.expect(list(h.adopt([])) == [], "try_adopt_task_instances([]) returned something")
    foreign = [compat.adoption_ready(compat.make_task("conformance_foreign", f"foreign_{i}"), job_id=99,
                                     external_executor_id=ext, running=True)
               for i, ext in enumerate((None, "conformance-no-such-external-id"))]
    result = h.adopt(foreign)
    ids = {id(ti) for ti in foreign}
    strangers = [ti for ti in result if id(ti) not in ids]
    ctx.expect(not strangers, f"returned objects that were not in the input: {strangers!r}")
    if not ctx.can("adoption"):
        ctx.expect(len(result) == len(foreign), "without an adoption implementation every TI must come back")
    returned = {id(ti) for ti in result}
    claimed_untracked = [ti.task_id for ti in foreign if id(ti) not in returned and not h.executor.has_task(ti)]
    ctx.expect(not claimed_untracked, f"claimed to adopt {claimed_untracked} (left them out of the result) but "
               "does not track them (has_task is False): the scheduler now waits for events that never come")


@check("adoption.adopted_tasks_finish_without_rerun", clause="ADOPT-2", needs=("adoption",),
       title="adopted tasks are tracked and their terminal events come from the adopting executor, "
             "without running them again",
       expects=_EXPECTS, fix="Find the running work by external_executor_id, add the key to running, and "
                             "report its outcome from sync(); never start it again.")
def adopted_tasks_finish_without_rerun(ctx: CheckContext) -> None:
    """B adopts A's two running tasks, tracks them, reports SUCCESS for each; each ran exactly once."""
    _, tasks, tis = orphaned_tasks(ctx)
    b = ctx.harness(name="B", job_id=2)
    returned = b.adopt(tis)
    ctx.expect(not returned, f"B handed back {len(returned)} of {len(tis)} running tasks of its own kind "
               "(they would be reset and run again)")
    untracked = [t.task_id for t in tasks if not (b.executor.has_task(t.ti) and t.key in b.executor.running)]
    ctx.expect(not untracked, f"adopted tasks not tracked by B (has_task/running): {untracked}")
    for t in tasks:
        b.release(t)
    try:
        b.drain_terminal(tasks)
    except WaitTimedOut as exc:
        raise ctx.fail(f"B did not report the adopted tasks' end: {exc}", b) from None
    runs = {t.task_id: len(b.runs(t)) for t in tasks}
    ctx.expect(all(n == 1 for n in runs.values()), f"runs per adopted task (journal): {runs}", b)
    wrong = [t.task_id for t in tasks if b.terminal_events(t.key)[0].state != ctx.states.SUCCESS]
    ctx.expect(not wrong, f"adopted tasks that succeeded were reported otherwise: {wrong}", b)


@check("adoption.adopting_twice_is_idempotent", clause="ADOPT-3", needs=("adoption",),
       title="adopting a TI that was already adopted neither duplicates it nor hands it back",
       expects=_EXPECTS + " Adoption runs periodically; handing back a task you own gets it reset and killed.",
       fix="Treat a TI whose key you already track as adopted (leave it out of the result).")
def adopting_twice_is_idempotent(ctx: CheckContext) -> None:
    """B adopts the same TI twice: the second result is empty, running unchanged, one terminal event."""
    _, tasks, tis = orphaned_tasks(ctx, count=1)
    b = ctx.harness(name="B", job_id=2)
    b.adopt(tis)
    running_before = len(b.executor.running)
    again = b.adopt(tis)
    ctx.expect(not again, "the second adoption of the same TI handed it back as not adopted", b)
    ctx.expect(len(b.executor.running) == running_before,
               f"running grew from {running_before} to {len(b.executor.running)} on re-adoption", b)
    b.release(tasks[0])
    b.drain_terminal(tasks)
    for _ in range(3):
        b.heartbeat()
        b.collect()
    ctx.expect(len(b.terminal_events(tasks[0].key)) == 1,
               f"{len(b.terminal_events(tasks[0].key))} terminal events for the twice-adopted task", b)


@check("adoption.unadopted_never_reported", clause="ADOPT-4",
       title="a TI handed back as not adopted is never reported or run by this executor",
       expects=_EXPECTS + " The scheduler resets those TIs and queues them again; events for them race "
                          "with the new try.",
       fix="Do not keep any state for TIs you return from try_adopt_task_instances.")
def unadopted_never_reported(ctx: CheckContext) -> None:
    """B receives a foreign TI plus (if it adopts) A's task; whatever it hands back it never reports."""
    tis: list[Any] = []
    tasks: list[QueuedTask] = []
    if ctx.can("adoption"):
        _, tasks, tis = orphaned_tasks(ctx, count=1)
    foreign = compat.adoption_ready(compat.make_task("conformance_foreign", "foreign_task"), job_id=99,
                                    external_executor_id="no-such-external-id", running=True)
    b = ctx.harness(name="B", job_id=2)
    returned = b.adopt([*tis, foreign])
    for t in tasks:
        b.release(t)
    for _ in range(10):
        b.heartbeat()
        b.collect()
    leaked = [ti.key for ti in returned if b.events_for(ti.key) or b.executor.has_task(ti)]
    ctx.expect(not leaked, f"B reported or tracks TIs it handed back: {leaked}", b)
