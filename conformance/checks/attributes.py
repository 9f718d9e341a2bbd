"""SPEC ATTR: compatibility attributes are declared, typed, and tell the truth."""

from __future__ import annotations

import importlib
import importlib.util
import inspect

from conformance.checks._common import wait_started
from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext
from conformance.harness.outcomes import describe_exception
from conformance.harness.timing import WaitTimedOut


@check("attributes.declared_with_types", clause="ATTR-1",
       title="every compatibility attribute of this Airflow is a class attribute of the right type",
       expects="Core reads these flags from the executor *class* before instantiating it (ExecutorLoader, "
               "CLI, DB checks) and treats them as bool (sentry_integration: str).",
       fix="Set each attribute at class level with a literal of the right type, e.g. `is_local = True`.")
def declared_with_types(ctx: CheckContext) -> None:
    """Each attribute the installed BaseExecutor defines is present on the class with its type."""
    cls = ctx.profile.executor_type()
    wrong = []
    for name, typ in compat.compat_attributes().items():
        value = inspect.getattr_static(cls, name, None)
        if value is None or not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            wrong.append(f"{name}={value!r} (needs {typ.__name__})")
    ctx.expect(not wrong, f"{cls.__qualname__} has wrongly typed or missing attributes: {', '.join(wrong)}")


@check("attributes.single_threaded_never_overlaps", clause="ATTR-2", needs=("single_threaded",),
       title="an executor that declares is_single_threaded never runs two tasks at once",
       expects="Airflow 2 lets single-threaded executors run against sqlite; two tasks at once corrupt it.",
       fix="Either run one task at a time (inside sync) or declare is_single_threaded = False.")
def single_threaded_never_overlaps(ctx: CheckContext) -> None:
    """Three short tasks queued together never overlap in the journal."""
    h = ctx.harness()
    tasks = [h.queue(Probe.new(ProbeKind.OK, delay=0.1)) for _ in range(3)]
    h.drain_terminal(tasks)
    overlap = h.journal().max_concurrency([t.task_id for t in tasks])
    ctx.expect(overlap <= 1, f"{overlap} tasks ran at the same time although is_single_threaded is True")


@check("attributes.parallel_executor_overlaps", clause="ATTR-2", needs=("parallel",),
       title="an executor that is not single-threaded (parallelism >= 2) really runs tasks at once",
       expects="Executors that are not single-threaded are refused on sqlite by Airflow 2 and get "
               "parallelism slots from the scheduler; a serial executor claiming parallelism starves them.",
       fix="Run tasks concurrently up to parallelism, or declare is_single_threaded = True.")
def parallel_executor_overlaps(ctx: CheckContext) -> None:
    """Two tasks that wait to be released are both in flight at once."""
    h = ctx.harness(parallelism=2)
    tasks = [h.queue(Probe.new(ProbeKind.HANG)) for _ in range(2)]
    try:
        wait_started(h, tasks)
    except WaitTimedOut as exc:
        raise ctx.fail(f"the two tasks were never in flight together ({exc})") from None


@check("attributes.sentry_integration_importable", clause="ATTR-2",
       applies=lambda: hasattr(compat.base_executor_class(), "sentry_integration"), applies_text="Airflow 3.3+",
       title="sentry_integration is '' or an importable dotted path",
       expects="The scheduler copies sentry_integration into every ExecuteTask and the task process imports "
               "it; a non-str is silently dropped, a bad path fails in every task.",
       fix="Set sentry_integration = '' or to the dotted path of an importable Sentry integration class.")
def sentry_integration_importable(ctx: CheckContext) -> None:
    """The value is a str; if not empty it is a dotted path, and it imports whenever its top-level
    package is installed (task processes only load it when Sentry is configured, which needs it)."""
    value = getattr(ctx.profile.executor_type(), "sentry_integration", "")
    ctx.expect(isinstance(value, str), f"sentry_integration is {value!r}, not a str")
    if value:
        module, _, attr = value.rpartition(".")
        ctx.expect(bool(module) and bool(attr), f"sentry_integration={value!r} is not a dotted path")
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return  # e.g. sentry_sdk not installed: Sentry cannot be on, the path is never loaded
        try:
            getattr(importlib.import_module(module), attr)
        except Exception as exc:
            raise ctx.fail(f"sentry_integration={value!r} does not import: {type(exc).__name__}: {exc}") from None


@check("attributes.multi_team_accepts_team_name", clause="ATTR-2", needs=("multi_team",),
       applies=lambda: hasattr(compat.base_executor_class(), "supports_multi_team"), applies_text="Airflow 3.3+",
       title="supports_multi_team executors are built with team_name= and keep it",
       expects="ExecutorLoader builds team executors as cls(team_name=...) and routes by executor.team_name.",
       fix="Accept team_name in __init__ and pass it to BaseExecutor.__init__.")
def multi_team_accepts_team_name(ctx: CheckContext) -> None:
    """``Cls(team_name=TEAM_NAME)`` works and keeps the name; the sandbox configures that team (its
    settings are the sandbox's, team-scoped), so a constructor that reads its team's settings can."""
    from conformance.groundtruth.sandbox import TEAM_NAME

    ctx.sandbox.configure_team(TEAM_NAME)  # also what a backend driver configured after activation
    try:
        ex = ctx.profile.executor_type()(team_name=TEAM_NAME)
    except Exception as exc:
        raise ctx.fail(f"cls(team_name={TEAM_NAME!r}) raised {describe_exception(exc)}") from None
    ctx.expect(getattr(ex, "team_name", None) == TEAM_NAME,
               f"team_name is {getattr(ex, 'team_name', None)!r} after cls(team_name={TEAM_NAME!r})")


@check("attributes.serve_logs_goes_with_is_local", clause="ATTR-2a", advice=True,
       title="advice: local executors usually serve their logs",
       expects="Not enforced by core: with is_local the task logs are on the scheduler host, and only "
               "serve_logs=True starts the log server that lets the UI read them.",
       fix="Set serve_logs = True when is_local = True, unless logs are shipped elsewhere.")
def serve_logs_goes_with_is_local(ctx: CheckContext) -> None:
    """is_local without serve_logs is reported as advice."""
    cls = ctx.profile.executor_type()
    if getattr(cls, "is_local", False) and not getattr(cls, "serve_logs", False):
        raise ctx.advise("is_local is True but serve_logs is False: the UI cannot read local task logs "
                         "unless they are shipped to remote logging.")


@check("attributes.is_local_matches_where_tasks_run", clause="ATTR-2a", advice=True,
       title="advice: an executor whose tasks run as the scheduler's descendants says is_local",
       expects="Airflow reads is_local: 3.3 cleans up stale DAG bundles on the scheduler host only for local "
               "executors; 2.x backfill passes the config file only to local executors; the log server goes "
               "with it. An executor whose tasks run on the scheduler's host but says is_local = False gets "
               "none of that.",
       fix="Set is_local = True (and serve_logs = True) when tasks run on the scheduler's host.")
def is_local_matches_where_tasks_run(ctx: CheckContext) -> None:
    """One task runs; if its process descends from the process that played the scheduler (the journal
    records host and process ancestry) while ``is_local`` is False, that is reported as advice."""
    import os
    import socket

    cls = ctx.profile.executor_type()
    if getattr(cls, "is_local", False):
        return
    h = ctx.harness()
    task = h.queue(Probe.new(ProbeKind.OK))
    h.drain_terminal([task])
    runs = h.runs(task)
    here = os.getpid()
    local = [r for r in runs if r.host == socket.gethostname() and here in r.ancestry]
    if local:
        raise ctx.advise(f"is_local is False, but the task's process (pid {local[0].pid}) descends from the "
                         f"scheduler's process (pid {here}) on this host: the executor runs tasks locally.")
