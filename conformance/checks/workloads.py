"""SPEC ATTR-2 for the workloads that are not tasks (Airflow 3.3+): deadline callbacks
(``supports_callbacks``, ``ExecuteCallback``) and connection tests (``supports_connection_test``,
``TestConnection``).

The declaration is a promise the scheduler acts on: it sends callbacks to the executor with no prior
check, and connection tests only to executors that declare them. Declared, the workload must really
run (the probe seam journals it: its callback path or connection id is a probe instruction) and be
reported once, with its own key and state classes; undeclared, ``queue_workload`` refuses it with
NotImplementedError, as BaseExecutor does, instead of dropping it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conformance.groundtruth import probes
from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext
from conformance.harness.scheduler import SchedulerHarness
from conformance.harness.timing import WaitTimedOut, wait_until

_APPLIES = "Airflow 3.3+ (the executor API has callbacks and connection tests)"


@check("attributes.callbacks_declared_truthfully", clause="ATTR-2", applies=compat.has_other_workloads,
       applies_text=_APPLIES,
       title="supports_callbacks tells the truth: declared, callbacks run first and are reported as callbacks; "
             "undeclared, queue_workload refuses them",
       expects="The 3.3 scheduler queues deadline callbacks (ExecuteCallback) to the executor without asking, "
               "dispatches them before tasks, counts them in slots_available, and updates the Callback row "
               "only from an event keyed by the CallbackKey with a CallbackState.",
       fix="Either leave supports_callbacks = False and let BaseExecutor.queue_workload raise "
           "NotImplementedError, or declare it and in _process_workloads pop the workload from "
           "queued_callbacks, run it (BaseExecutor.run_workload) and report self.success(key) / self.fail(key).")
def callbacks_declared_truthfully(ctx: CheckContext) -> None:
    """Undeclared: queueing an ExecuteCallback raises NotImplementedError. Declared (or accepted
    anyway): with parallelism 1, a task then a callback are queued -- the callback takes a slot, runs
    before the task, and ends with one terminal event keyed by its CallbackKey, state CallbackState."""
    _judge(ctx, "callback", "supports_callbacks", compat.make_callback_workload, "CallbackKey", "CallbackState")


@check("attributes.connection_tests_declared_truthfully", clause="ATTR-2", applies=compat.has_other_workloads,
       applies_text=_APPLIES,
       title="supports_connection_test tells the truth: declared, connection tests run and are reported as such; "
             "undeclared, queue_workload refuses them",
       expects="The 3.3 scheduler sends connection tests (TestConnection) only to executors that declare them "
               "and fails the test when the executor reports it failed; a declared executor that never runs "
               "them leaves the UI's 'Test connection' waiting until it times out.",
       fix="Either leave supports_connection_test = False, or declare it and in _process_workloads pop the "
           "workload from queued_connection_tests, run it (BaseExecutor.run_workload) and report it.")
def connection_tests_declared_truthfully(ctx: CheckContext) -> None:
    """Undeclared: queueing a TestConnection raises NotImplementedError. Declared (or accepted anyway):
    it takes a slot, runs (journal), and ends with one terminal event keyed by its ConnectionTestKey,
    state ConnectionTestState."""
    _judge(ctx, "connection test", "supports_connection_test", compat.make_connection_test_workload,
           "ConnectionTestKey", "ConnectionTestState")


def _judge(ctx: CheckContext, what: str, flag: str, make: Callable[[str], Any], key_class: str,
           state_class: str) -> None:
    declared = bool(getattr(ctx.profile.executor_type(), flag, False))
    # One slot shows that callbacks go before tasks. Connection tests get two: 3.3's base dispatches them
    # only up to slots_available, which already counts the queued test itself, so with one slot a
    # queued connection test never fits (reports/FINDINGS.md).
    h = ctx.harness(parallelism=1 if what == "callback" else 2)
    task = h.queue(Probe.new(ProbeKind.OK)) if what == "callback" else None
    # Held until the harness has read the event buffer while it runs: every event the executor sends
    # about it before its terminal one is then seen, whatever the machine's speed (a buffer entry is
    # overwritten by the next event for the same key). A single-threaded executor runs it inside the
    # heartbeat, where nothing can be read in between: no hold.
    probe = Probe.new(ProbeKind.OK if ctx.can("single_threaded") else ProbeKind.HANG)
    ctx.sandbox.claim(probe.task_id, ctx.spec.id)
    workload = make(probe.task_id)
    key = compat.workload_key(workload)
    occupied_before = h.executor.slots_occupied
    try:
        h.call(f"queue_workload({type(workload).__name__})", h.executor.queue_workload, workload, None)
    except NotImplementedError:
        ctx.expect(not declared, f"{flag} is True, but queue_workload({type(workload).__name__}) raised "
                                 "NotImplementedError")
        return  # refused, as BaseExecutor does: the truthful 'not supported'
    accepted = "" if declared else (f" ({flag} is False, yet queue_workload accepted the {what} instead of "
                                    "raising NotImplementedError; it is judged as if declared)")
    ctx.expect(h.executor.slots_occupied == occupied_before + 1,
               f"slots_occupied went from {occupied_before} to {h.executor.slots_occupied} when a {what} was "
               f"queued: it must take a slot (the scheduler caps work by slots_available/slots_occupied){accepted}")
    _wait_for_terminal(ctx, h, key, what, probe, accepted)
    terminal = h.terminal_events(key)
    problems = []
    if len(terminal) != 1:
        problems.append(f"{len(terminal)} terminal events for the {what}")
    for event in h.events_for(key):
        if type(event.key).__name__ != key_class:
            problems.append(f"event key is a {type(event.key).__name__}, not the workload's {key_class}")
        if event.state is not None and type(event.state).__name__ != state_class:
            problems.append(f"event state {event.state!r} is a {type(event.state).__name__}, not a {state_class}")
    runs = ctx.journal().runs_of(probe.task_id)
    if not runs:
        problems.append(f"a terminal event but the {what} never ran")
    elif task is not None:
        started = ctx.journal().runs_of(task.task_id)
        if started and started[0].started < runs[0].started:
            problems.append("the task queued before it ran first: with one slot, callbacks go before tasks")
    ctx.expect(not problems, "; ".join(problems) + accepted)
    if task is not None:
        h.drain_terminal([task])


def _wait_for_terminal(ctx: CheckContext, h: SchedulerHarness, key: Any, what: str, probe: Probe,
                       accepted: str) -> None:
    released = False

    def done() -> bool:
        nonlocal released
        h.heartbeat()
        h.collect()
        if not released and ctx.journal().started(probe.task_id):
            probes.release(ctx.sandbox.journal_dir, probe)
            released = True
        return bool(h.terminal_events(key))

    def explain() -> str:
        runs = ctx.journal().runs_of(probe.task_id)
        queued = [name for name in ("queued_callbacks", "queued_connection_tests")
                  if key in (getattr(h.executor, name, None) or {})]
        return (f"the {what} {'ran' if runs else 'never ran'} (journal); still in {queued or 'no queue'}; "
                f"in running: {key in h.executor.running}")

    try:
        wait_until(done, f"a terminal event for the {what}", ctx.budget("event"), poll=0.05, explain=explain,
                   judged=True)
    except WaitTimedOut as exc:
        raise ctx.fail(f"{exc}{accepted}") from None
    finally:
        probes.release(ctx.sandbox.journal_dir, probe)
