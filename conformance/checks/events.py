"""SPEC EVT: the event buffer -- what the scheduler learns about each task, and when."""

from __future__ import annotations

from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext
from conformance.harness.timing import WaitTimedOut


@check("events.one_terminal_event_matching_journal", clause="EVT-1",
       title="each task that ran yields exactly one terminal event that matches what happened",
       expects="SUCCESS/FAILED drive retries, callbacks and 'killed externally' handling. 2.x: a non-zero "
               "`airflow tasks run` is FAILED. 3.x: FAILED when running the workload raised or its process "
               "died. A killed task is never SUCCESS.",
       fix="Report success only when the runner returned normally; report fail for exceptions, non-zero "
           "exits (2.x) and processes that died; report each task once.")
def one_terminal_event_matching_journal(ctx: CheckContext) -> None:
    """ok, fail, raise, crash and kill probes: one terminal event each, with the right state."""
    h = ctx.harness()
    s = ctx.states
    kinds = [ProbeKind.OK, ProbeKind.FAIL, ProbeKind.RAISE, ProbeKind.CRASH, ProbeKind.KILL]
    tasks = {k: h.queue(Probe.new(k)) for k in kinds}
    h.drain_terminal(list(tasks.values()))
    h.end()
    allowed = {ProbeKind.OK: {s.SUCCESS}, ProbeKind.RAISE: {s.FAILED}, ProbeKind.CRASH: {s.FAILED},
               ProbeKind.KILL: {s.FAILED},
               ProbeKind.FAIL: {s.SUCCESS, s.FAILED} if compat.is_airflow3() else {s.FAILED}}
    problems = []
    for kind, task in tasks.items():
        terminal = h.terminal_events(task.key)
        if len(terminal) != 1:
            problems.append(f"{kind.value}: {len(terminal)} terminal events")
        elif terminal[0].state not in allowed[kind]:
            problems.append(f"{kind.value}: reported {terminal[0].state}, expected one of "
                            f"{sorted(str(a) for a in allowed[kind])}")
        if not h.runs(task):
            problems.append(f"{kind.value}: a terminal event but the task never ran")
    ctx.expect(not problems, "; ".join(problems))


@check("events.dead_worker_reported_failed_others_reported", clause="EVT-1",
       title="a task whose worker process is killed is reported FAILED, and the other tasks are still reported",
       expects="The scheduler only learns a task's fate from the event buffer. A worker killed by a signal "
               "(out of memory) reported SUCCESS loses a failure; never reported, the task stays RUNNING until "
               "zombie detection; and a sync loop that stops at the one result it cannot read stops reporting "
               "every other task too.",
       fix="Treat a worker that died by a signal, or a result that cannot be read after the worker ended, as "
           "FAILED for that task alone, and keep reporting the others in the same sync().")
def dead_worker_reported_failed_others_reported(ctx: CheckContext) -> None:
    """A ``killworker`` probe (its executor-side worker -- the executor's child that runs the task -- is
    SIGKILLed, then the task) is queued first, then three ok tasks: one terminal event each, FAILED for
    the killed one, SUCCESS for the others."""
    h = ctx.harness()
    s = ctx.states
    victim = h.queue(Probe.new(ProbeKind.KILLWORKER))
    others = [h.queue(Probe.new(ProbeKind.OK, delay=0.2)) for _ in range(3)]
    try:
        h.drain_terminal([victim, *others])
    except WaitTimedOut as exc:
        lost = [t.task_id for t in others if h.runs(t) and all(r.finished for r in h.runs(t))
                and not h.terminal_events(t.key)]
        if not lost:
            raise
        raise ctx.fail(f"the tasks {lost} ended but were never reported, beside the task whose worker was killed "
                       f"({'reported' if h.terminal_events(victim.key) else 'not reported either'}): a result loop "
                       f"that stops at the one result it cannot read loses the others ({exc})") from None
    h.end()
    if not any(run.worker_killed for run in h.runs(victim)):
        raise ctx.not_supported(
            "the task whose worker was to be killed does not run under a process the executor forked (no "
            "ancestor of it is a child of the scheduler's process): the suite cannot prove which process is "
            "your executor's worker, and killing the task's parent could take down your backend's own daemon. "
            "Only the task itself was killed, which events.one_terminal_event_matching_journal judges")
    problems = []
    for task, wanted in [(victim, s.FAILED), *[(t, s.SUCCESS) for t in others]]:
        terminal = h.terminal_events(task.key)
        what = "the task whose worker was killed" if task is victim else task.task_id
        if len(terminal) != 1:
            problems.append(f"{what}: {len(terminal)} terminal events")
        elif terminal[0].state != wanted:
            problems.append(f"{what}: reported {terminal[0].state}, expected {wanted}")
    ctx.expect(not problems, "; ".join(problems))


@check("events.only_known_keys_and_states", clause="EVT-2",
       title="events only for keys the executor was given, as (TaskInstanceState, info) in a state an executor "
             "may report",
       expects="The scheduler selects TIs by the event's key and compares state with TaskInstanceState "
               "members; events for unknown keys are dropped silently, other state types are ignored.",
       fix="Only report keys you were given; report only QUEUED/RUNNING/SUCCESS/FAILED, as TaskInstanceState "
           "members (the queued/running_state/success/fail helpers do).")
def only_known_keys_and_states(ctx: CheckContext) -> None:
    """After two tasks ran, every event key is one of them and every value is (state, info)."""
    h = ctx.harness()
    tasks = [h.queue(Probe.new(k)) for k in (ProbeKind.OK, ProbeKind.RAISE)]
    known = {t.key for t in tasks}
    s = ctx.states
    state_cls = type(s.SUCCESS)
    reportable = {s.QUEUED, s.RUNNING, s.SUCCESS, s.FAILED}

    def problems() -> list[str]:
        found = []
        for event in h.events:
            if event.key not in known:
                found.append(f"event for a key never queued: {event.key!r}")
            if not isinstance(event.value, tuple) or len(event.value) < 2:
                found.append(f"value {event.value!r} is not a (state, info) tuple")
            elif event.state is not None and not isinstance(event.state, state_cls):
                found.append(f"state {event.state!r} is a {type(event.state).__name__}, not TaskInstanceState")
            elif event.state is not None and event.state not in reportable:
                found.append(f"{_task(event.key)} reported {event.state}: an executor reports only "
                             f"{sorted(str(x) for x in reportable)} for a task (the scheduler owns every other "
                             "state)")
        return found

    try:  # an event in a state the scheduler ignores may be all that ever comes: judge it as soon as it does
        h.drain(lambda: bool(problems()) or all(h.terminal_events(t.key) for t in tasks),
                f"terminal events for {[t.task_id for t in tasks]}", tasks=tasks, awaiting="terminal")
    except WaitTimedOut:
        if not problems():
            raise
    if not problems():
        h.end()
    ctx.expect(not problems(), "; ".join(problems()))


def _task(key: object) -> str:
    return str(getattr(key, "task_id", key))


@check("events.buffer_flush_and_dag_filter", clause="EVT-3",
       title="get_event_buffer() returns and clears; get_event_buffer(dag_ids) takes exactly those dags",
       expects="The scheduler takes the whole buffer each loop; backfill and tests filter by dag. An event "
               "returned twice is processed twice; a filter that takes everything loses other dags' events.",
       fix="Do not override get_event_buffer, or pop exactly the matching keys.")
def buffer_flush_and_dag_filter(ctx: CheckContext) -> None:
    """Events of dags A, B and C: filter on A, then on B and C together, then flush: nothing is left.

    The scheduler itself never filters (``_process_executor_events`` calls ``get_event_buffer()`` in 2.7-3.3);
    backfill (2.x) and tests do, with one dag or several. So filtered reads are judged here, not generated by
    the state machine."""
    h = ctx.harness()
    ex = h.executor
    dags = ("conformance_dag_a", "conformance_dag_b", "conformance_dag_c")
    a, b, c = (h.queue(Probe.new(ProbeKind.OK), dag_id=dag) for dag in dags)
    terminal = compat.terminal_states()

    def all_in_buffer() -> bool:
        h.heartbeat()
        buffer = ex.event_buffer
        return all(k in buffer and buffer[k][0] in terminal for k in (a.key, b.key, c.key))

    # heartbeats inside the condition, but no read until all three are there
    h.wait_for(all_in_buffer, "the three terminal events to reach the event buffer", tasks=[a, b, c])
    first = h.collect(dag_ids=[dags[0]])
    ctx.expect(set(first) == {a.key}, f"get_event_buffer(['{dags[0]}']) returned {list(first)}")
    second = h.collect(dag_ids=list(dags[1:]))
    ctx.expect(set(second) == {b.key, c.key}, f"get_event_buffer({list(dags[1:])}) returned {list(second)}")
    left = [k for k in (b.key, c.key) if k in ex.event_buffer]
    ctx.expect(not left, f"get_event_buffer({list(dags[1:])}) left what it returned still in the buffer: "
                         f"{[_task(k) for k in left]}")
    third = h.collect()
    ctx.expect(not third, f"the following get_event_buffer() returned events again: {list(third)}")


@check("events.intermediate_states_precede_terminal", clause="EVT-4",
       title="QUEUED/RUNNING events (if any) come before the terminal event and carry the external id",
       expects="For QUEUED/RUNNING the scheduler only stores info as external_executor_id; one arriving "
               "after SUCCESS/FAILED overwrites the terminal event in the buffer or re-opens the TI.",
       fix="Emit QUEUED/RUNNING only before the terminal event, with info = the external id (a str) or None.")
def intermediate_states_precede_terminal(ctx: CheckContext) -> None:
    """For three tasks: no QUEUED/RUNNING after a terminal event; their info is str or None."""
    h = ctx.harness()
    s = ctx.states
    tasks = [h.queue(Probe.new(ProbeKind.OK, delay=0.05)) for _ in range(3)]
    h.drain_terminal(tasks)
    for _ in range(3):
        h.heartbeat()
        h.collect()
    problems = []
    for task in tasks:
        seen_terminal = False
        for event in h.events_for(task.key):
            if event.state in (s.SUCCESS, s.FAILED):
                seen_terminal = True
            elif event.state in (s.QUEUED, s.RUNNING):
                if seen_terminal:
                    problems.append(f"{task.task_id}: {event.state} after the terminal event")
                if event.info is not None and not isinstance(event.info, str):
                    problems.append(f"{task.task_id}: {event.state} info {event.info!r} is not an external id")
    ctx.expect(not problems, "; ".join(problems))


@check("events.tolerates_unknown_keys", clause="EVT-5",
       title="change_state/fail for a key the executor does not know does not raise",
       expects="The scheduler injects FAILED (change_state / fail) for stuck and heartbeat-timed-out TIs "
               "that the executor may have forgotten.",
       fix="Do not assume the key is in running; keep the base change_state or guard your bookkeeping.")
def tolerates_unknown_keys(ctx: CheckContext) -> None:
    """fail() and change_state(FAILED) on a foreign key, then a heartbeat: nothing raises."""
    h = ctx.harness()
    foreign = compat.make_key("conformance_foreign", "unknown_task", "r", 1)
    h.call("fail(unknown key)", h.executor.fail, foreign)
    h.call("change_state(unknown key, FAILED)", h.executor.change_state, foreign, ctx.states.FAILED)
    h.heartbeat()
    h.collect()
