"""The one module that knows Airflow 2 from Airflow 3.

Checks, the harness and the plugin never branch on ``airflow.__version__``; they ask this module.
It hides four differences behind a small API:

* how a task is *described* to an executor: 2.x hands over an ``airflow tasks run ...`` command via
  ``queue_command``; 3.x hands over an ``ExecuteTask`` workload via ``queue_workload``;
* how a DB-less ``TaskInstance`` is built (2.10+ needs a ``DagRun`` attached, because
  ``_process_tasks`` reads ``ti.dag_run`` for tracing; 3.3 needs a ``dag_version_id``);
* how stuck-in-queued tasks are handed back (``revoke_task`` first, 2.x falls back to
  ``cleanup_stuck_queued_tasks`` exactly like ``SchedulerJobRunner._handle_tasks_stuck_in_queued``);
* which compatibility attributes the installed ``BaseExecutor`` defines (SPEC ATTR-1).

Airflow is imported lazily, inside functions: the version itself is read from package metadata so
that the plugin can decide what to do without paying Airflow's import cost.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

#: Compatibility attributes and their expected types, per Airflow major (docs/CONTRACT.md §2).
#: Only those that the *installed* BaseExecutor defines are checked (see ``compat_attributes``).
_ATTRIBUTE_TYPES: dict[str, type] = {
    "supports_ad_hoc_ti_run": bool,
    "supports_pickling": bool,
    "supports_sentry": bool,
    "sentry_integration": str,
    "is_local": bool,
    "is_single_threaded": bool,
    "is_production": bool,
    "change_sensor_mode_to_reschedule": bool,
    "serve_logs": bool,
    "supports_callbacks": bool,
    "supports_multi_team": bool,
    "supports_connection_test": bool,
    "pre_assigns_external_executor_id": bool,
}


class StuckHandlingUnsupported(Exception):
    """The executor raised NotImplementedError for every stuck-in-queued entry point (SPEC STUCK)."""


@functools.lru_cache(maxsize=1)
def airflow_version() -> tuple[int, int, int]:
    """Installed Airflow version as (major, minor, micro), read from metadata (no import)."""
    raw = metadata.version("apache-airflow")
    parts: list[int] = []
    for piece in raw.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def major() -> int:
    return airflow_version()[0]


def is_airflow3() -> bool:
    return major() >= 3


def version_string() -> str:
    return metadata.version("apache-airflow")


def state_enum() -> Any:
    """``TaskInstanceState`` of the installed Airflow."""
    from airflow.utils.state import TaskInstanceState

    return TaskInstanceState


def terminal_states() -> frozenset[Any]:
    s = state_enum()
    return frozenset({s.SUCCESS, s.FAILED})


def base_executor_class() -> type:
    from airflow.executors.base_executor import BaseExecutor

    return BaseExecutor


def base_holds_back_requeued_keys() -> bool:
    """Whether the installed ``BaseExecutor.trigger_tasks`` holds back a key queued again while it is still in
    ``running`` (2.x and 3.0-3.2: ``RunningRetryAttemptType``); 3.3 dropped that block and dispatches at once.
    Those versions still have the command path (``_process_tasks``) beside it; 3.3 removed both."""
    return hasattr(base_executor_class(), "_process_tasks")


def effective_parallelism(executor: Any) -> int | None:
    """The executor's real limit on tasks at once; None means unlimited (Airflow 2's ``parallelism = 0``,
    where the base heartbeat opens a slot per queued task and ``slots_available`` is ``sys.maxsize``)."""
    value = int(getattr(executor, "parallelism", 0) or 0)
    if value <= 0 and not is_airflow3():
        return None
    return value


def compat_attributes() -> dict[str, type]:
    """Compatibility attributes the installed BaseExecutor defines, with their expected type."""
    base = base_executor_class()
    return {name: typ for name, typ in _ATTRIBUTE_TYPES.items() if hasattr(base, name)}


def make_key(dag_id: str, task_id: str, run_id: str, try_number: int = 1, map_index: int = -1) -> Any:
    from airflow.models.taskinstancekey import TaskInstanceKey

    return TaskInstanceKey(dag_id, task_id, run_id, try_number, map_index)


@dataclass
class TaskHandle:
    """Everything needed to hand one task to an executor the way the installed scheduler does.

    ``ti`` is a real ``TaskInstance`` (what ``has_task``, ``revoke_task``, ``try_adopt_task_instances``
    and 2.x ``queue_command`` take); ``workload`` is the 3.x ``ExecuteTask``; ``command`` the 2.x
    ``airflow tasks run`` command line.
    """

    key: Any
    ti: Any
    priority: int
    queue: str
    workload: Any = None
    command: list[str] = field(default_factory=list)

    @property
    def dag_id(self) -> str:
        return str(self.key.dag_id)

    @property
    def task_id(self) -> str:
        return str(self.key.task_id)


@functools.cache
def _dag(dag_id: str) -> Any:
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    module = importlib.import_module("airflow.sdk" if is_airflow3() else "airflow.models.dag")
    return module.DAG(dag_id, start_date=start, schedule=None)


def _operator(dag: Any, task_id: str, priority: int, queue: str, executor_config: dict[str, Any] | None = None) -> Any:
    module = importlib.import_module("airflow.providers.standard.operators.empty" if is_airflow3()
                                     else "airflow.operators.empty")
    empty_cls: Any = module.EmptyOperator
    if task_id in dag.task_dict:
        return dag.task_dict[task_id]
    return empty_cls(task_id=task_id, dag=dag, priority_weight=priority, queue=queue,
                     executor_config=dict(executor_config or {}))


def _set_try_number(ti: Any, try_number: int, *, running: bool = False) -> None:
    """Make ``ti.try_number`` (and so ``ti.key``) say ``try_number`` in the TI's state.

    Before 2.10 ``try_number`` is a property over ``_try_number``: ``_try_number + 1`` unless the TI is
    RUNNING (Airflow increments ``_try_number`` when the task starts). A queued first try therefore has
    ``_try_number == 0``, and the same try once running has ``_try_number == 1``: the key stays the
    same across the change, which adoption relies on."""
    if _try_number_is_a_property():
        ti._try_number = try_number if running else try_number - 1
    else:
        ti.try_number = try_number


def _try_number_is_a_property() -> bool:
    return major() == 2 and version_less((2, 10))


def version_less(bound: tuple[int, int]) -> bool:
    return airflow_version()[:2] < bound


def make_task(
    dag_id: str,
    task_id: str,
    run_id: str = "conformance_run",
    *,
    try_number: int = 1,
    map_index: int = -1,
    priority: int = 1,
    queue: str = "default",
    executor_config: dict[str, Any] | None = None,
) -> TaskHandle:
    """Build a DB-less TaskInstance plus what the installed scheduler would queue for it."""
    from airflow.models import taskinstance

    ti_cls: Any = taskinstance.TaskInstance  # its signature differs between majors
    dag = _dag(dag_id)
    op = _operator(dag, task_id, priority, queue, executor_config)
    if is_airflow3():
        ti = ti_cls(op, run_id=run_id, dag_version_id=uuid.uuid4(), map_index=map_index)
    else:
        ti = ti_cls(op, run_id=run_id, map_index=map_index)
        from airflow.models.dagrun import DagRun

        # 2.10+ traces dispatch with ``ti.dag_run.start_date``; the scheduler always has one.
        ti.dag_run = DagRun(dag_id=dag_id, run_id=run_id, start_date=dag.start_date)
    _set_try_number(ti, try_number)
    ti.priority_weight = priority
    ti.queue = queue
    ti.state = state_enum().QUEUED
    handle = TaskHandle(key=ti.key, ti=ti, priority=priority, queue=queue)
    if is_airflow3():
        handle.workload = _make_workload(ti)
    else:
        handle.command = tasks_run_command(dag_id, task_id, run_id, map_index)
    return handle


def tasks_run_command(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> list[str]:
    """The ``airflow tasks run`` command the 2.x scheduler builds (``command_as_list(local=True)``)."""
    cmd = ["airflow", "tasks", "run", dag_id, task_id, run_id, "--local"]
    if map_index >= 0:
        cmd += ["--map-index", str(map_index)]
    return cmd


def _make_workload(ti: Any) -> Any:
    # imported by name: the module exists on 3.x only, and 3.0-3.2 and 3.3 name and type these differently
    workloads: Any = importlib.import_module("airflow.executors.workloads")
    dto_cls = getattr(workloads, "TaskInstanceDTO", None) or workloads.TaskInstance
    dto = dto_cls.model_validate(ti, from_attributes=True)
    return workloads.ExecuteTask(
        ti=dto,
        dag_rel_path=f"{ti.dag_id}.py",
        token="",
        log_path=None,
        bundle_info=workloads.BundleInfo(name="conformance", version=None),
    )


def queue_task(executor: Any, handle: TaskHandle, session: Any = None) -> None:
    """Queue a task as the installed scheduler does (2.x ``queue_command``; 3.x ``queue_workload`` with
    the scheduler's database session, which some executors use to write their own rows)."""
    if is_airflow3():
        executor.queue_workload(handle.workload, session=session)
    else:
        executor.queue_command(handle.ti, handle.command, priority=handle.priority, queue=handle.queue)


def handle_stuck(executor: Any, tis: Sequence[Any]) -> list[str]:
    """Hand stuck-in-queued TIs back, mirroring the installed scheduler.

    2.10+/3.x: ``revoke_task(ti=...)`` per TI; on NotImplementedError 2.x falls back to
    ``cleanup_stuck_queued_tasks(tis=...)`` and logs each returned item; 3.x skips the executor.
    Returns the reprs the 2.x fallback produced (empty for revoke). Raises StuckHandlingUnsupported.
    """
    if hasattr(executor, "revoke_task"):
        try:
            for ti in tis:
                executor.revoke_task(ti=ti)
            return []
        except NotImplementedError:
            pass
    if hasattr(executor, "cleanup_stuck_queued_tasks"):
        try:
            return [str(item) for item in _iterate(executor.cleanup_stuck_queued_tasks(tis=list(tis)))]
        except NotImplementedError:
            pass
    raise StuckHandlingUnsupported(type(executor).__name__)


def _iterate(result: Any) -> Iterable[Any]:
    # The 2.x scheduler iterates the result in a for loop: anything iterable is consumable.
    items: Iterable[Any] = iter(result)
    return items


def adoption_ready(handle: TaskHandle, *, job_id: int, external_executor_id: str | None, running: bool) -> Any:
    """Shape a TI the way ``adopt_or_reset_orphaned_tasks`` hands it to ``try_adopt_task_instances``."""
    ti = handle.ti
    ti.queued_by_job_id = job_id
    ti.external_executor_id = external_executor_id
    if getattr(ti, "dag_model", None) is None:
        # The scheduler's TI is bound to its session: ``ti.dag_model`` loads the dag's row. A database-less TI
        # has None there, and an executor that reads it during adoption would crash on the harness alone.
        from airflow.models import dag as dag_models

        dag_model: Any = dag_models.DagModel
        ti.dag_model = dag_model(dag_id=ti.dag_id, is_paused=False)
    states = state_enum()
    key = ti.key
    ti.state = states.RUNNING if running else states.QUEUED
    _set_try_number(ti, key.try_number, running=running)  # the same key in either state (before 2.10)
    return ti


# -- workloads other than tasks (Airflow 3.3+: ExecuteCallback, TestConnection) -----------------------


def has_other_workloads() -> bool:
    """Whether the installed BaseExecutor has the 3.3 workload API: callbacks and connection tests queued
    like tasks, keyed by ``workload.key``. (3.2 has a first ExecuteCallback without that API.)"""
    return is_airflow3() and hasattr(base_executor_class(), "supports_connection_test")


def make_callback_workload(probe_task_id: str) -> Any:
    """An ``ExecuteCallback`` as the scheduler builds for a deadline callback, whose import path is a
    probe instruction (the probe seam runs it instead of importing it: no API server needed)."""
    import uuid
    from pathlib import Path

    from airflow.executors.workloads.base import BundleInfo
    from airflow.executors.workloads.callback import CallbackDTO, CallbackFetchMethod, ExecuteCallback

    callback = CallbackDTO(id=str(uuid.uuid4()), fetch_method=CallbackFetchMethod.IMPORT_PATH,
                           data={"path": probe_task_id, "kwargs": {}})
    return ExecuteCallback(callback=callback, dag_rel_path=Path("conformance_probes.py"), token="",
                           bundle_info=BundleInfo(name="conformance"), log_path=None)


def make_connection_test_workload(probe_task_id: str) -> Any:
    """A ``TestConnection`` whose connection id is a probe instruction (run by the probe seam)."""
    import uuid

    from airflow.executors.workloads.connection_test import TestConnection

    return TestConnection(connection_test_id=uuid.uuid4(), connection_id=probe_task_id, timeout=60, token="")


def workload_key(workload: Any) -> Any:
    """The event-buffer key of any workload (a task's TaskInstanceKey, a CallbackKey, a ConnectionTestKey)."""
    ti = getattr(workload, "ti", None)
    return ti.key if ti is not None else workload.key


# -- the scheduler-facing surface ---------------------------------------------------------------------

#: Every BaseExecutor member the scheduler job runner calls or reads, read from Airflow's own
#: ``scheduler_job_runner.py`` (2.11.2 and 3.3.2; docs/CONTRACT.md lists them per version) with how it
#: uses it. A member is part of the installed surface when the installed BaseExecutor has it.
SCHEDULER_SURFACE: dict[str, str] = {
    "job_id": "set before start() (executor.job_id = job.id)",
    "callback_sink": "set before start() (executor.callback_sink = sink)",
    "name": "read to route TIs to their executor (executor.name.alias, 2.10+)",
    "team_name": "read to route work of a team to its executor (3.x)",
    "start": "called once before the loop",
    "slots_available": "read as an int every loop before queueing (property)",
    "slots_occupied": "read as an int in the critical section (property, 2.8+)",
    "queue_command": "called per TI to queue (2.x): queue_command(ti, command, priority=, queue=)",
    "queue_workload": "called per workload to queue (3.x): queue_workload(workload, session=session)",
    "heartbeat": "called every loop; what it raises ends the scheduler",
    "get_event_buffer": "called every loop: get_event_buffer() -> dict of key -> (state, info)",
    "has_task": "called for TIs it finds queued: has_task(ti) -> bool",
    "try_adopt_task_instances": "called at start-up and periodically: try_adopt_task_instances(tis) -> sequence",
    "revoke_task": "called for TIs stuck in queued: revoke_task(ti=ti) (2.10+, 3.x)",
    "cleanup_stuck_queued_tasks": "2.x fallback for stuck TIs: iterated, cleanup_stuck_queued_tasks(tis=[...])",
    "change_state": "called for TIs without heartbeat: change_state(key, FAILED, remove_running=True)",
    "fail": "called for TIs whose executor lost them: fail(key)",
    "send_callback": "called with callback requests: send_callback(request)",
    "debug_dump": "called on SIGUSR2: debug_dump()",
    "_task_event_logs": "drained every loop with popleft() (a deque of Log rows)",
    "jwt_generator": "read to sign workload tokens (3.3)",
    "end": "called on exit, exceptions logged",
}


def scheduler_surface() -> dict[str, str]:
    """The members of ``SCHEDULER_SURFACE`` that the installed BaseExecutor has (class or instance)."""
    base = base_executor_class()
    instance_only = {"team_name", "_task_event_logs"}  # set in BaseExecutor.__init__
    present = {}
    for name, how in SCHEDULER_SURFACE.items():
        if hasattr(base, name):
            present[name] = how
        elif name in instance_only:
            import inspect

            if f"self.{name}" in inspect.getsource(vars(base)["__init__"]):
                present[name] = how
    return present
