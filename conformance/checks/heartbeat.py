"""SPEC HB: what one scheduler heartbeat may expect from an executor."""

from __future__ import annotations

import sys
import time
from typing import Any

from conformance.checks._common import long_probe, names, wait_started
from conformance.groundtruth.journal import pid_alive
from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext
from conformance.harness.scheduler import SchedulerHarness
from conformance.harness.timing import WaitTimedOut


@check("heartbeat.triggers_queued_work", clause="HB-1",
       title="heartbeats start every queued task",
       expects="After queue_command/queue_workload the scheduler only calls heartbeat(); the executor must "
               "start the work from there (trigger_tasks -> execute_async/_process_workloads).",
       fix="Start the task in execute_async (2.x) or _process_workloads (3.x) and remove it from queued_tasks.")
def triggers_queued_work(ctx: CheckContext) -> None:
    """Three queued tasks all start (journal) and leave ``queued_tasks``."""
    h = ctx.harness()
    tasks = [h.queue(Probe.new(ProbeKind.OK)) for _ in range(3)]
    try:
        wait_started(h, tasks)
    except WaitTimedOut as exc:
        raise ctx.fail(f"queued tasks did not start: {exc}") from None
    left = [t.task_id for t in tasks if t.key in h.executor.queued_tasks]
    ctx.expect(not left, f"tasks that already ran are still in queued_tasks: {left}")


#: Parallelism a check tests with; an executor with a fixed larger limit is tested up to this many more.
_MAX_TESTED_LIMIT = 8


def _limit(ctx: CheckContext, h: SchedulerHarness) -> int:
    """The executor's own parallelism (it may not be what the check asked for); unlimited (Airflow 2's
    0) or a limit too large to fill with probes makes a limit check not applicable."""
    limit = compat.effective_parallelism(h.executor)
    if limit is None:
        raise ctx.not_applicable("parallelism 0 means unlimited on Airflow 2: there is no limit to exceed "
                                 "or to fill")
    if limit > _MAX_TESTED_LIMIT:
        raise ctx.not_applicable(f"the executor's parallelism is {limit} although {h.executor.__class__.__name__} "
                                 f"was built with parallelism 2 and [core] parallelism 2; the suite fills at most "
                                 f"{_MAX_TESTED_LIMIT} slots")
    return limit


@check("heartbeat.respects_parallelism", clause="HB-2", needs=("parallel",),
       title="never more than parallelism tasks in flight",
       expects="The scheduler hands the executor up to slots_available tasks; heartbeat() opens "
               "parallelism - len(running) slots. Running more breaks pools and resource limits.",
       fix="Keep every dispatched key in self.running until its terminal event (3.x: add it in "
           "_process_workloads), so the base class opens no more slots than are free.")
def respects_parallelism(ctx: CheckContext) -> None:
    """parallelism=2 asked (the executor's own limit is what counts), limit + 3 hanging tasks: only
    ``limit`` ever start before any is released."""
    h = ctx.harness(parallelism=2)
    limit = _limit(ctx, h)
    tasks = [h.queue(Probe.new(ProbeKind.HANG)) for _ in range(limit + 3)]
    h.drain(lambda: sum(h.journal().started(t.task_id) for t in tasks) >= limit, f"{limit} tasks to start",
            tasks=tasks, awaiting="start")
    # More heartbeats while every slot is busy must start nothing more; one more would start within this.
    h.observe(lambda: sum(h.journal().started(t.task_id) for t in tasks) > limit)
    started = [t for t in tasks if h.journal().started(t.task_id)]
    ctx.expect(len(started) <= limit, f"{len(started)} tasks were in flight with parallelism={limit}: "
               f"{names(started)}")
    for t in tasks:
        h.release(t)
    h.drain_terminal(tasks)
    peak = h.journal().max_concurrency([t.task_id for t in tasks])
    ctx.expect(peak <= limit, f"up to {peak} tasks ran at once with parallelism={limit}")


@check("heartbeat.slots_account_for_work", clause="HB-2",
       title="slots_available / slots_occupied count queued and running work",
       expects="The scheduler sizes each loop by slots_available and the global cap by slots_occupied; "
               "both must count queued + running tasks and never go negative.",
       fix="Keep queued_tasks and running accurate; do not override the slot properties with other counts.")
def slots_account_for_work(ctx: CheckContext) -> None:
    """Free slots drop by one per queued task and stay taken while the task runs (Airflow 2 with
    parallelism 0: ``slots_available`` stays ``sys.maxsize``, as the base class defines unlimited)."""
    h = ctx.harness(parallelism=4)
    ex = h.executor
    if compat.effective_parallelism(ex) is None:
        tasks = [h.queue(long_probe(ctx)) for _ in range(2)]
        ctx.expect(ex.slots_available == sys.maxsize, f"with unlimited parallelism (0) and {len(tasks)} queued "
                   f"tasks slots_available={ex.slots_available}, expected sys.maxsize")
        for t in tasks:
            h.release(t)
        h.drain_terminal(tasks)
        return
    total = ex.parallelism
    ctx.expect(ex.slots_available == total, f"a fresh executor has slots_available={ex.slots_available}, "
               f"parallelism={total}")
    tasks = [h.queue(long_probe(ctx)) for _ in range(min(2, total))]
    ctx.expect(ex.slots_available == total - len(tasks),
               f"after queueing {len(tasks)} tasks slots_available={ex.slots_available} (parallelism {total})")
    if not ctx.can("single_threaded"):
        wait_started(h, tasks)
        # slots_occupied is part of the scheduler's surface wherever the base class has it (2.8+): read,
        # never defaulted (SURF-1); before 2.8 it is what slots_available leaves
        base_has_it = hasattr(compat.base_executor_class(), "slots_occupied")
        occupied = ex.slots_occupied if base_has_it else total - ex.slots_available
        ctx.expect(ex.slots_available == total - len(tasks) and occupied == len(tasks),
                   f"while {len(tasks)} tasks run: slots_available={ex.slots_available}, "
                   f"slots_occupied={occupied} (parallelism {total})")
        for t in tasks:
            h.release(t)
    h.drain_terminal(tasks)
    ctx.expect(ex.slots_available == total, f"after all tasks finished slots_available={ex.slots_available}")


@check("heartbeat.sync_once_per_heartbeat", clause="HB-3",
       title="every heartbeat calls sync() exactly once",
       expects="Results reach the scheduler through sync(), which the base heartbeat calls once per loop.",
       fix="Do not override heartbeat(), or call super().heartbeat() exactly once.")
def sync_once_per_heartbeat(ctx: CheckContext) -> None:
    """Three heartbeats, three sync calls."""
    h = ctx.harness()
    ex = h.executor
    calls = []
    original = ex.sync

    def counting_sync(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    ex.sync = counting_sync
    for _ in range(3):
        h.heartbeat()
    ctx.expect(len(calls) == 3, f"3 heartbeats called sync() {len(calls)} times")


@check("heartbeat.does_not_block", clause="HB-3", needs=("parallel",),
       title="a heartbeat returns while tasks run (it never waits for task work)",
       expects="The scheduler loop heartbeats every executor each iteration; a heartbeat that waits for "
               "task work stalls scheduling for everything.",
       fix="Start work asynchronously and only poll for results in sync(); never wait for a task there.")
def does_not_block(ctx: CheckContext) -> None:
    """With two tasks held running, a heartbeat returns -- within the calibrated ``heartbeat`` budget -- while
    they still run.

    Blocking means waiting for task work: such a heartbeat returns only when the work ends (never, for held
    tasks) and the call guard stops it at the budget ("heartbeat() did not return within ..."). A heartbeat
    that takes a second for a bounded status call to its backend is normal (Airflow's AWS executors poll
    synchronously in ``sync()``): its duration is noted, not judged against a fixed fraction."""
    h = ctx.harness(parallelism=2)
    tasks = [h.queue(Probe.new(ProbeKind.HANG)) for _ in range(2)]
    wait_started(h, tasks)
    started = time.monotonic()
    h.heartbeat()  # guarded by the heartbeat budget: a heartbeat that waits for the held work never returns
    took = time.monotonic() - started
    journal = h.journal()
    ended = [t.task_id for t in tasks if journal.finished(t.task_id)]
    ctx.expect(not ended, f"heartbeat() returned after {took:.2f}s, only once held tasks had ended ({ended}): it "
                          "waited for task work")
    ctx.note(f"a heartbeat with two tasks in flight took {took:.2f}s (budget {h.budget('heartbeat'):.1f}s)")


@check("heartbeat.priority_order", clause="HB-4",
       title="with fewer slots than tasks, higher priority_weight starts first",
       expects="trigger_tasks orders queued tasks by priority_weight (order_queued_tasks_by_priority).",
       fix="Do not reorder queued work yourself; keep the base ordering (highest priority_weight first).")
def priority_order(ctx: CheckContext) -> None:
    """Four tasks with priorities 1, 9, 3, 7 and two slots: the two highest start first. An executor
    that runs tasks one by one inside its heartbeat must start them in priority order."""
    single = bool(ctx.can("single_threaded"))
    h = ctx.harness(parallelism=2)
    slots = 1 if single else min(4, _limit(ctx, h))  # some executors ignore the parallelism asked for
    tasks = {p: h.queue(long_probe(ctx), priority=p) for p in (1, 9, 3, 7)}
    h.heartbeat()
    if single:
        runs = sorted((r for t in tasks.values() for r in h.runs(t)), key=lambda r: r.started)
        by_task = {t.task_id: p for p, t in tasks.items()}
        order = [by_task[r.task_id] for r in runs]
        ctx.expect(bool(order) and order == sorted(order, reverse=True),
                   f"after one heartbeat the tasks ran in priority order {order}; expected highest first")
    else:
        expected = sorted(tasks, reverse=True)[:slots]
        # Keep heartbeating until the slots are filled (a remote backend starts work seconds after the
        # heartbeat that dispatched it); no slot frees up before a release, so none of this can start more.
        h.drain(lambda: sum(h.journal().started(t.task_id) for t in tasks.values()) >= slots,
                f"{slots} tasks to start", tasks=list(tasks.values()), awaiting="start")
        first = sorted(p for p, t in tasks.items() if h.journal().started(t.task_id))
        ctx.expect(first == sorted(expected), f"with {slots} free slots the tasks with priorities {first} started "
                   f"first; expected the {slots} highest: {sorted(expected)}")
    for t in tasks.values():
        h.release(t)
    h.drain_terminal(list(tasks.values()))


UNSERVED_QUEUE = "conformance-queue-nobody-serves"


@check("heartbeat.unserved_queue_does_not_raise", clause="HB-7",
       title="a task on a queue the executor does not serve never makes heartbeat() raise, and never vanishes",
       expects="The scheduler queues a TI on whatever queue its operator names and heartbeats every executor "
               "from its main loop without catching: an exception there ends the scheduler, for every DAG. A task "
               "the executor drops silently stays QUEUED in the database until the stuck-in-queued timeout, "
               "while the executor reports it neither queued, running nor finished.",
       fix="Route, hold or fail a task whose queue you do not serve: keep it in queued_tasks (or running) or "
           "report it FAILED (self.fail) -- log it, but never raise from queue_*/heartbeat/sync for it and never "
           "drop it.")
def unserved_queue_does_not_raise(ctx: CheckContext) -> None:
    """A task on a queue no worker serves, then heartbeats through an observation window: none raises,
    and at the end the task is still waiting (queued_tasks / running), ran, or was reported (SPEC HB-7:
    waits, runs or fails -- never vanishes)."""
    h = ctx.harness()
    ex = h.executor
    task = h.queue(Probe.new(ProbeKind.OK), queue=UNSERVED_QUEUE)
    h.observe(lambda: bool(h.terminal_events(task.key)))
    if h.terminal_events(task.key) or h.runs(task):
        return  # it ran, or the executor reported it (failed)
    if task.key in ex.queued_tasks or task.key in ex.running:
        return  # it waits
    ctx.expect(False, f"the task on queue {UNSERVED_QUEUE!r} left queued_tasks, is not in running, never started "
               f"and no event came for it within {ctx.budget('window'):.1f}s: it was dropped")


@check("heartbeat.empty_heartbeat_changes_nothing", clause="HB-6",
       title="a heartbeat with nothing queued is cheap and changes nothing",
       expects="Every executor is heartbeated every loop, even with no work.",
       fix="Do nothing in trigger/sync when there is nothing to do; emit no events for no work.")
def empty_heartbeat_changes_nothing(ctx: CheckContext) -> None:
    """Five empty heartbeats: no events, no queued or running keys, slots unchanged."""
    h = ctx.harness()
    ex = h.executor
    slots = ex.slots_available
    for _ in range(5):
        h.heartbeat()
    events = h.collect()
    ctx.expect(not events and not ex.queued_tasks and not ex.running and ex.slots_available == slots,
               f"after empty heartbeats: events={events}, queued={list(ex.queued_tasks)}, "
               f"running={list(ex.running)}, slots_available {slots} -> {ex.slots_available}")


@check("heartbeat.survives_transient_backend_error", clause="HB-5", needs=("backend",),
       title="a transient backend error neither raises out of heartbeat() nor loses a task",
       expects="The scheduler calls heartbeat() from its main loop and does not catch what it raises: an "
               "exception ends the scheduler. A task whose result could not be read during an outage must be "
               "reported, correctly, once the backend is back -- not guessed FAILED, not forgotten.",
       fix="Catch the backend's transient errors in heartbeat/sync/execute_async, keep the task (in running or "
           "queued) and retry at the next heartbeat; report a state only when you know it.")
def survives_transient_backend_error(ctx: CheckContext) -> None:
    """Two tasks run; the profile's backend driver opens an outage; they finish and a third is queued
    during it; three heartbeats must not raise; after the outage all three end SUCCESS, once each."""
    driver = ctx.profile.backend
    h = ctx.harness(parallelism=4)
    s = ctx.states
    first = [h.queue(long_probe(ctx)) for _ in range(2)]
    wait_started(h, first)
    with driver.transient_error():
        h.note("backend outage begins (driver.transient_error)")
        late = h.queue(Probe.new(ProbeKind.OK))
        for task in first:
            if not h.journal().finished(task.task_id):
                h.release(task)
        h.wait_for(lambda: all(h.journal().finished(t.task_id) for t in first),
                   "the released tasks to finish during the outage", tasks=first)
        # A task process exits just after its journal's end entry: only then has the executor something
        # to misjudge (on a busy machine that moment is late). A long-lived worker that ran the task
        # in-process never exits; the observation window is its time to finish with the task.
        h.observe(lambda: not any(pid_alive(r.pid) for t in first for r in h.runs(t)))

        def guessed() -> list[str]:
            return [f"{t.task_id}: {e.state}" for t in first for e in h.terminal_events(t.key) if e.state != s.SUCCESS]

        h.observe(lambda: bool(guessed()))  # heartbeats through the outage: a guess shows up within this
        ctx.expect(not guessed(), "during the outage tasks that succeeded were reported as " + ", ".join(guessed()))
    h.note("backend outage ends")
    everything = [*first, late]
    h.drain_terminal(everything)
    problems = []
    for task in everything:
        states = [str(e.state) for e in h.terminal_events(task.key)]
        if states != [str(s.SUCCESS)]:
            problems.append(f"{task.task_id}: terminal events {states}, expected one SUCCESS")
        if len(h.runs(task)) != 1:
            problems.append(f"{task.task_id}: ran {len(h.runs(task))} times")
    ctx.expect(not problems, "after the outage: " + "; ".join(problems))


@check("heartbeat.starts_queued_work_while_busy", clause="HB-1", needs=("parallel",),
       title="with tasks already running, queued tasks that fit the free slots all start",
       expects="The scheduler queues work whenever slots_available says there is room, usually while "
               "other tasks run. A dispatch rule that only looks at an idle executor (say, start while more "
               "tasks are queued than running) leaves tasks QUEUED with slots free until stuck-in-queued "
               "handling fails them.",
       fix="In trigger_tasks/_process_workloads start up to the open slots (parallelism - running), whatever "
           "else is in flight; do not gate dispatch on the number of running tasks otherwise.")
def starts_queued_work_while_busy(ctx: CheckContext) -> None:
    """Two held tasks run; then as many tasks as there are free slots are queued: all of them start
    within the start budget (heartbeats keep coming) while the first two still run."""
    h = ctx.harness(parallelism=4)
    limit = compat.effective_parallelism(h.executor)
    busy = [h.queue(Probe.new(ProbeKind.HANG)) for _ in range(2)]
    try:
        wait_started(h, busy)
    except WaitTimedOut as exc:
        raise ctx.fail(f"the first two tasks did not start on an idle executor: {exc}") from None
    free = (limit - len(busy)) if limit is not None else 2
    more = [h.queue(Probe.new(ProbeKind.OK)) for _ in range(max(1, min(free, 2)))]
    try:
        wait_started(h, more)
    except WaitTimedOut as exc:
        still_queued = [t.task_id for t in more if t.key in h.executor.queued_tasks]
        raise ctx.fail(f"with {len(busy)} tasks running and {free} of {limit or 'unlimited'} slots free, "
                       f"{len(more)} newly queued tasks did not all start ({len(still_queued)} still in "
                       f"queued_tasks): {exc}") from None
    for task in busy:
        h.release(task)
    h.drain_terminal(busy + more)


@check("heartbeat.parallelism_zero_unlimited_or_refused", clause="HB-8",
       title="parallelism 0: unlimited on Airflow 2; refused at construction or honoured on Airflow 3",
       expects="Airflow 2's BaseExecutor treats parallelism 0 as unlimited (open slots = everything queued, "
               "slots_available = sys.maxsize); a scheduler configured so starts tasks through it. Airflow 3's "
               "BaseExecutor refuses parallelism <= 0 with ValueError; an executor that accepts 0 and then "
               "runs nothing leaves every task queued.",
       fix="Airflow 2: compute open slots as len(queued_tasks) when parallelism is 0 (or leave it to "
           "BaseExecutor.heartbeat). Airflow 3: pass parallelism to BaseExecutor.__init__, which refuses 0.")
def parallelism_zero_unlimited_or_refused(ctx: CheckContext) -> None:
    """Build with parallelism 0. Airflow 3: a ValueError (or any refusal) at construction passes;
    accepted, three tasks must run. Airflow 2: construction must succeed and three tasks run. An executor
    that replaces 0 by a limit of its own (a sequential one: 1) is judged the same way: its tasks run."""
    try:
        executor = ctx.build(parallelism=0)
    except Exception as exc:
        if compat.is_airflow3():
            return  # refused at construction, as BaseExecutor does
        raise ctx.fail(f"the constructor refused parallelism=0 ({type(exc).__name__}: {exc}); on Airflow 2 "
                       "0 means unlimited") from None
    h = ctx.harness(executor=executor)
    tasks = [h.queue(Probe.new(ProbeKind.OK)) for _ in range(3)]
    try:
        wait_started(h, tasks)
    except WaitTimedOut as exc:
        raise ctx.fail(f"built with parallelism 0, it accepted the value but did not start queued tasks: "
                       f"{exc}") from None
    if not compat.is_airflow3() and getattr(h.executor, "parallelism", None) == 0:
        available = h.executor.slots_available
        ctx.expect(available == sys.maxsize,
                   f"slots_available is {available} with parallelism 0; Airflow 2 means unlimited (sys.maxsize)")
    h.drain_terminal(tasks)
