"""SPEC SURF: every member the installed scheduler calls exists on the executor and answers its call.

The scheduler does not ask whether a member is there: it calls it, in its main loop, and an
AttributeError or TypeError there ends it for every DAG. So nothing here is skipped because it is
absent -- an absent member is the finding. Each member gets the smallest call of the shape the
scheduler makes (``airflow_compat.SCHEDULER_SURFACE`` says which and how, read from Airflow's
``scheduler_job_runner.py``); behaviour beyond "answers" is the other clauses' business.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext
from conformance.harness.outcomes import describe_exception
from conformance.harness.scheduler import SchedulerHarness


class _RecordingSink:
    """A callback sink that keeps what it is sent (the scheduler's is a pipe or the database)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, request: Any) -> None:
        self.sent.append(request)


def _binds(fn: Any, *args: Any, **kwargs: Any) -> str | None:
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        return f"cannot be called the way the scheduler calls it ({exc})"
    except ValueError:
        return None  # no signature to read (a builtin): it will be called as it is
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_member(ex: Any, name: str) -> str | None:
    value = getattr(ex, name)
    if _is_int(value):
        return None
    return f"is {value!r} ({type(value).__name__}), not an int (a property?)"


def _set_sink(ex: Any) -> str | None:
    ex.callback_sink = _RecordingSink()
    return None


def _heartbeat(h: SchedulerHarness) -> str | None:
    h.heartbeat()
    return None


def _call(fn: Callable[[], Any]) -> str | None:
    fn()
    return None


def _mark_failed(ex: Any, h: SchedulerHarness, ti: Any) -> str | None:
    """The scheduler's heartbeat-timeout purge, as the installed version calls it (2.7 has no
    ``remove_running``); the FAILED event for a key the executor never had is taken off again."""
    base: Any = compat.base_executor_class()
    if "remove_running" in inspect.signature(base.change_state).parameters:
        ex.change_state(ti.key, compat.state_enum().FAILED, None, remove_running=True)
    else:
        ex.change_state(ti.key, compat.state_enum().FAILED)
    h.collect()
    return None


def _probe(name: str, ex: Any, h: SchedulerHarness) -> str | None:
    """One member's minimal call, the way the scheduler makes it; a problem in words, or None."""
    ti = h.make().ti
    probes: dict[str, Callable[[], str | None]] = {
        "job_id": lambda: None if ex.job_id == h.job_id else "does not keep the job id set on it",
        "callback_sink": lambda: _set_sink(ex),
        "name": lambda: _call(lambda: ex.name),
        "team_name": lambda: None if ex.team_name is None or isinstance(ex.team_name, str)
        else f"is {type(ex.team_name).__name__}, not str or None",
        "start": lambda: None,  # the harness started it
        "slots_available": lambda: _int_member(ex, "slots_available"),
        "slots_occupied": lambda: _int_member(ex, "slots_occupied"),
        "queue_command": lambda: _binds(ex.queue_command, ti, ["airflow"], priority=1, queue="default"),
        "queue_workload": lambda: _binds(ex.queue_workload, object(), session=None),
        "heartbeat": lambda: _heartbeat(h),
        "get_event_buffer": lambda: None if isinstance(h.collect(), Mapping) else "does not return a dict",
        "has_task": lambda: None if isinstance(ex.has_task(ti), bool) else f"returns {ex.has_task(ti)!r}, not a bool",
        "try_adopt_task_instances": lambda: None if list(ex.try_adopt_task_instances([])) == []
        else "returns TIs for an empty input",
        "revoke_task": lambda: _raises_only_not_implemented(lambda: ex.revoke_task(ti=ti)),
        "cleanup_stuck_queued_tasks": lambda: _raises_only_not_implemented(
            lambda: list(ex.cleanup_stuck_queued_tasks(tis=[]))),
        "change_state": lambda: _mark_failed(ex, h, ti),
        "fail": lambda: _call(lambda: (ex.fail(ti.key), h.collect())),
        "send_callback": lambda: _binds(ex.send_callback, object()),
        "debug_dump": lambda: _call(ex.debug_dump),
        "_task_event_logs": lambda: None if all(hasattr(ex._task_event_logs, m) for m in ("popleft", "__len__"))
        else f"is a {type(ex._task_event_logs).__name__}, which has no popleft()",
        "jwt_generator": lambda: _call(lambda: ex.jwt_generator),
        "end": lambda: _binds(ex.end),
    }
    return probes[name]()


def _raises_only_not_implemented(call: Callable[[], Any]) -> str | None:
    """NotImplementedError means "not supported" (the scheduler catches exactly that); anything else raised
    propagates and is the finding."""
    with contextlib.suppress(NotImplementedError):
        call()
    return None


@check("surface.scheduler_members_answer", clause="SURF-1",
       title="every member the installed scheduler calls exists on the executor and answers a call of its shape",
       expects="The scheduler calls these members from its main loop without asking whether they exist; an "
               "AttributeError or TypeError there ends the scheduler for every DAG (docs/CONTRACT.md lists them "
               "per Airflow version).",
       fix="Subclass BaseExecutor, call super().__init__(), and keep each member's kind and signature: "
           "properties stay properties returning ints, keyword parameters keep the names the scheduler passes.")
def scheduler_members_answer(ctx: CheckContext) -> None:
    """Every member of ``compat.scheduler_surface()``: present, and its smallest scheduler-shaped call
    answers (right kind, right return shape, no exception but NotImplementedError where that means
    "not supported")."""
    h = ctx.harness()
    ex = h.executor
    problems = []
    for name, how in compat.scheduler_surface().items():
        if not hasattr(ex, name):
            problems.append(f"{name}: missing (the scheduler: {how})")
            continue
        try:
            problem = _probe(name, ex, h)
        except Exception as exc:
            problem = f"raised {describe_exception(exc)}"
        if problem:
            problems.append(f"{name}: {problem} (the scheduler: {how})")
    ctx.expect(not problems, "; ".join(problems))
