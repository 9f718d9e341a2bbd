"""SPEC LIFE: construction, start/end/terminate, and tracking a task from queue to terminal event."""

from __future__ import annotations

import inspect
import threading

from conformance.checks._common import long_probe, wait_started
from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext
from conformance.harness.timing import WaitTimedOut


@check("lifecycle.constructible_without_arguments", clause="LIFE-7",
       title="cls() works and end() is implemented",
       expects="ExecutorLoader builds executors as cls() with no arguments; the scheduler calls end() on "
               "exit and BaseExecutor.end raises NotImplementedError.",
       fix="Give every __init__ parameter a default (read config instead) and override end().")
def constructible_without_arguments(ctx: CheckContext) -> None:
    """``cls()`` succeeds and ``end`` is overridden."""
    cls = ctx.profile.executor_type()
    try:
        cls()
    except Exception as exc:
        raise ctx.fail(f"{cls.__qualname__}() raised {type(exc).__name__}: {exc}") from None
    base_end = inspect.getattr_static(compat.base_executor_class(), "end")
    ctx.expect(inspect.getattr_static(cls, "end") is not base_end, "end() is not overridden (the base raises)")


@check("lifecycle.end_waits_and_flushes", clause="LIFE-1", needs=("!adoption",),
       title="end() waits for running tasks and leaves their terminal events in the buffer",
       expects="On exit the scheduler calls end() and then processes the remaining events once; events "
               "that arrive later are lost and the TIs stay RUNNING until zombie detection.",
       fix="In end(), wait for every in-flight task and call sync() (or change_state) before returning.")
def end_waits_and_flushes(ctx: CheckContext) -> None:
    """Two tasks in flight, then end(): both finished and both terminal events are there.

    The tasks are held until both have started -- the scheduler heartbeats until it exits, so the wait
    heartbeats too (a backend that starts work in ``sync()`` needs it) -- and released just before ``end()``:
    their work ends while ``end()`` runs, whatever the backend's latency. (Single-threaded executors run
    a task inside the heartbeat: 0.3 s tasks, no wait.)

    Executors that adopt (try_adopt_task_instances) may instead leave work running for the next
    scheduler -- Celery's workers outlive the scheduler by design -- so this check needs no adoption;
    ADOPT-2 checks that such work is picked up without running it again."""
    h = ctx.harness(parallelism=2)
    if ctx.can("single_threaded"):
        tasks = [h.queue(Probe.new(ProbeKind.OK, delay=0.3)) for _ in range(2)]
        h.heartbeat()
    else:
        tasks = [h.queue(Probe.new(ProbeKind.HANG)) for _ in range(2)]
        wait_started(h, tasks)
        for task in tasks:
            h.release(task)
    h.end()
    j = h.journal()
    unfinished = [t.task_id for t in tasks if not j.finished(t.task_id)]
    missing = [t.task_id for t in tasks if j.started(t.task_id) and not h.terminal_events(t.key)]
    ctx.expect(not unfinished or not missing,
               f"end() returned while {unfinished} still ran and without terminal events for {missing}")
    ctx.expect(not missing, f"after end() returned there is no terminal event for {missing}")


@check("lifecycle.terminate_stops_work", clause="LIFE-2",
       title="terminate() stops in-flight work promptly, leaks nothing, and does not raise",
       expects="terminate() is what a SIGTERM'd daemon calls; tasks left running hold slots and resources.",
       fix="In terminate(), signal every task process (group) and reap it.")
def terminate_stops_work(ctx: CheckContext) -> None:
    """Two hanging tasks; terminate(); within 5 s no probe process is alive."""
    h = ctx.harness(parallelism=2)
    if ctx.can("single_threaded"):
        h.terminate()  # nothing in flight between calls; it must simply not raise
        return
    tasks = [h.queue(Probe.new(ProbeKind.HANG)) for _ in range(2)]
    wait_started(h, tasks)
    h.terminate()
    ids = {t.task_id for t in tasks}
    budget = h.budget("terminate")
    try:
        h.wait_for(lambda: not [r for r in h.journal().still_running() if r.task_id in ids],
                   "task processes to stop after terminate()", deadline=budget)
    except WaitTimedOut:
        alive = [r.describe() for r in h.journal().still_running() if r.task_id in ids]
        raise ctx.fail(f"{budget:.0f} s after terminate() these tasks still run: {alive}") from None


_SAME_KEY_EXPECTS = ("The scheduler can queue a key again in races (deferral resumption keeps the try "
                     "number). 2.x's base keeps the first queued entry and holds a key back while it is "
                     "still in running; two runs of one try at the same time duplicate side effects.")


@check("lifecycle.same_key_queued_twice_runs_once", clause="LIFE-3",
       title="a key queued twice while still queued runs once",
       expects=_SAME_KEY_EXPECTS,
       fix="Keep one entry per key in queued_tasks (the base queue_command/queue_workload does); do not "
           "start work from queue_* yourself.")
def same_key_queued_twice_runs_once(ctx: CheckContext) -> None:
    """Queue a task twice before any heartbeat, drain, end(): exactly one run in the journal."""
    h = ctx.harness()
    task = h.make(Probe.new(ProbeKind.OK, delay=0.05))
    h.queue_task(task)
    h.queue_task(task)
    h.drain_terminal([task])
    h.end()  # end() waits for everything dispatched: afterwards the journal is complete
    runs = h.runs(task)
    ctx.expect(len(runs) == 1, f"{task.task_id}, queued twice, ran {len(runs)} times: "
               + "; ".join(r.describe() for r in runs))


@check("lifecycle.requeued_while_running_never_overlaps", clause="LIFE-3", needs=("parallel",),
       title="a deferred task re-queued while its run is still tearing down does not start beside it",
       expects=_SAME_KEY_EXPECTS,
       fix="Hold a key that is still running back until its previous run has finished (2.x's base does "
           "this while the key is in running; on 3.3 the executor has to).")
def requeued_while_running_never_overlaps(ctx: CheckContext) -> None:
    """The deferral race, as the scheduler makes it: a task's work ends (it deferred) while its process
    tears down for a while; the same key is queued again at once, before a heartbeat. The second run must
    not start before the first run's process is gone.

    Judged by the installed base: where ``BaseExecutor.trigger_tasks`` holds such a key back while it is in
    ``running`` (2.x, 3.0-3.2) an executor that starts it beside its previous run deviates from the base --
    a failure. 3.3's base dispatches it at once, and Airflow's own executors start it beside the previous
    run: there it is advice."""
    h = ctx.harness()
    task = h.queue(Probe.new(ProbeKind.HANG))
    wait_started(h, [task])
    # a deferred task's process tears down for about a second (longer where heartbeats are slow): long enough
    # for the re-queue and the next heartbeat to land inside it, short enough to be a teardown
    teardown = max(1.0, h.budget("heartbeat") / 10)
    h.release(task, linger=teardown)  # its work ends now, its process `teardown` seconds later
    h.wait_for(lambda: h.journal().finished(task.task_id), "the deferring run's work to end")
    h.queue_task(task)
    h.observe(lambda: len(h.runs(task)) >= 2, window=teardown)  # a second run starting beside the first
    h.drain(lambda: len(h.runs(task)) >= 2 and all(r.end is not None for r in h.runs(task)),
            "the second run to start and end", tasks=[task], awaiting="terminal")
    h.end()
    first, *later = h.runs(task)
    gone = first.exits if first.exits is not None else float("inf")
    early = [r for r in later if r.started < gone]
    if not early:
        return
    did = (f"{task.task_id} started again {gone - early[0].started:.2f}s before its previous run's "
           f"process was gone (it deferred, then tore down for {teardown:.1f}s): "
           + "; ".join(r.describe() for r in (first, *later)))
    if compat.base_holds_back_requeued_keys():
        raise ctx.fail(did)
    raise ctx.advise(f"{did}. Airflow 3.3's base and its own executors do this too, so it is not a failure here; "
                     "two supervisors of one try at once may still race on the task's final state")


@check("lifecycle.at_most_once_per_try", clause="LIFE-4",
       title="every queued task runs at most once per try",
       expects="A task's side effects must happen once per try; the scheduler counts tries itself.",
       fix="Never retry or duplicate task work inside the executor.")
def at_most_once_per_try(ctx: CheckContext) -> None:
    """Four tasks, drained until each has its terminal event or one has run twice: each has exactly one
    run in the journal (a task launched again at every heartbeat is named as that, however its events go)."""
    h = ctx.harness()
    tasks = [h.queue(Probe.new(ProbeKind.OK)) for _ in range(4)]

    def counts() -> dict[str, int]:
        return {t.task_id: len(h.runs(t)) for t in tasks}

    try:
        h.drain(lambda: all(h.terminal_events(t.key) for t in tasks) or max(counts().values()) > 1,
                f"terminal events for {[t.task_id for t in tasks]}", tasks=tasks, awaiting="terminal")
    except WaitTimedOut:
        if max(counts().values()) <= 1:
            raise
    runs = counts()
    ctx.expect(max(runs.values()) <= 1,
               f"launched the same try more than once: runs per task {runs}; tracked in running: "
               f"{sum(1 for t in tasks if t.key in h.executor.running)} of {len(tasks)}, still in queued_tasks: "
               f"{sum(1 for t in tasks if t.key in h.executor.queued_tasks)} of {len(tasks)}")
    h.end()
    runs = counts()
    ctx.expect(all(n == 1 for n in runs.values()), f"runs per task: {runs}")


@check("lifecycle.tracks_task_until_terminal", clause="LIFE-5",
       title="has_task() and running cover a task from queueing until its terminal event",
       expects="The scheduler's slot accounting reads running via slots_available/slots_occupied, and "
               "has_task() decides whether a SUCCESS/FAILED for a re-queued TI is trusted.",
       fix="3.x: add the key to self.running in _process_workloads; keep it there until success/fail "
           "(beware: queued()/change_state default remove_running=True).")
def tracks_task_until_terminal(ctx: CheckContext) -> None:
    """has_task after queue; key in running while the task runs; neither after the terminal event."""
    h = ctx.harness()
    ex = h.executor
    task = h.queue(long_probe(ctx))
    ctx.expect(ex.has_task(task.ti), "has_task(ti) is False right after queueing")
    if not ctx.can("single_threaded"):
        wait_started(h, [task])
        ctx.expect(ex.has_task(task.ti) and task.key in ex.running,
                   f"while the task runs: has_task={ex.has_task(task.ti)}, in running={task.key in ex.running}")
        h.release(task)
    h.drain_terminal([task])
    ctx.expect(not ex.has_task(task.ti) and task.key not in ex.running,
               f"after the terminal event: has_task={ex.has_task(task.ti)}, in running={task.key in ex.running}")


@check("lifecycle.repeated_build_start_end", clause="LIFE-6",
       title="executors can be built, started and ended repeatedly in one process",
       expects="2.x reuses one instance per name, 3.3 builds a new one per load; tests and backfill build many.",
       fix="Keep state on the instance, not on the class or module; release resources in end().")
def repeated_build_start_end(ctx: CheckContext) -> None:
    """Three rounds of build, start, one task, end."""
    for round_no in range(3):
        h = ctx.harness(name=f"round{round_no}")
        task = h.queue(Probe.new(ProbeKind.OK))
        h.drain_terminal([task])
        h.end()


@check("lifecycle.end_returns_with_work_in_flight", clause="LIFE-7",
       title="end() returns within its budget and does not raise while tasks are in flight (every executor)",
       expects="The scheduler calls end() on exit and nothing else after it: an end() that never returns "
               "hangs scheduler shutdown (and with it a deployment's restart), whether or not the executor's "
               "tasks outlive the scheduler.",
       fix="Bound every wait in end(): wait for local work to finish (or, for an executor whose tasks "
           "outlive the scheduler, only close clients and flush what is known) and return.")
def end_returns_with_work_in_flight(ctx: CheckContext) -> None:
    """One slot, a held task in it and another task queued behind it; end() is called under the ``end``
    budget while the held one runs, and it is released after an observation window (a long task that does
    finish). An end() that waits for its work returns after the release; one that waits for what no longer
    progresses after end() (queued work nobody will start, an acknowledgement) never does. An executor that
    adopts may return without waiting at all (LIFE-1 does not apply to it); it must still return.
    A single-threaded executor runs its tasks inside the heartbeat: two short ones, then end()."""
    if ctx.can("single_threaded"):
        h = ctx.harness(parallelism=2)
        [h.queue(Probe.new(ProbeKind.OK, delay=0.3)) for _ in range(2)]
        h.heartbeat()  # runs the tasks inside the heartbeat
        h.end()
        return
    h = ctx.harness(parallelism=1)
    held = h.queue(Probe.new(ProbeKind.HANG), priority=10)
    h.queue(Probe.new(ProbeKind.OK), priority=1)
    try:
        wait_started(h, [held])
    except WaitTimedOut as exc:
        raise ctx.fail(f"no task started, so end() could not be tried with work in flight: {exc}") from None
    release = threading.Timer(ctx.budget("window"), h.release, args=(held,))
    release.daemon = True
    release.start()
    try:
        h.end()  # a call past its budget fails the check, naming end()
    finally:
        release.cancel()
