"""Everything in the reference executors that differs between Airflow 2 and Airflow 3, in one place.

* 2.x describes a task as an ``airflow tasks run ...`` command (``execute_async``); 3.x as an
  ``ExecuteTask`` workload (``_process_workloads``). Both end up in ``run_here``, which runs the task
  in the *current* process -- the reference executors call it in a freshly forked child.
* 2.7 has no ``running_state()`` helper and no ``remove_running`` parameter.
* 3.0-3.2's ``BaseExecutor.queue_workload`` does not store ``ExecuteTask`` workloads; 3.3's does.
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as _AIRFLOW_VERSION
from airflow.executors.base_executor import BaseExecutor
from airflow.utils.state import TaskInstanceState

AIRFLOW_MAJOR = int(_AIRFLOW_VERSION.split(".")[0])
IS_AIRFLOW3 = AIRFLOW_MAJOR >= 3
#: 3.3 moved workload queueing into the base class; earlier 3.x releases leave it to the executor.
BASE_STORES_WORKLOADS = IS_AIRFLOW3 and hasattr(BaseExecutor, "_get_workloads_to_schedule")


#: 3.3 also queues deadline callbacks (ExecuteCallback) and connection tests (TestConnection) to executors
#: that declare them; both run through BaseExecutor.run_workload like tasks.
HAS_OTHER_WORKLOADS = IS_AIRFLOW3 and hasattr(BaseExecutor, "supports_connection_test")


def task_payload_key(payload: Any) -> Any:
    """The event-buffer key of a 3.x workload: a task's TaskInstanceKey, a CallbackKey or a
    ConnectionTestKey (2.x hands the key separately)."""
    ti = getattr(payload, "ti", None)
    return ti.key if ti is not None else payload.key


def queued_priority(payload: Any) -> int:
    """The priority of a ``queued_tasks`` value: 2.x ``(command, priority, queue, ti)``, 3.x a workload."""
    if IS_AIRFLOW3:
        return int(getattr(payload.ti, "priority_weight", 1) or 1)
    return int(payload[1])


def prepare_parent() -> None:
    """Warm what every forked child needs, once, in the executor's process: children inherit it
    through fork instead of paying the imports for every task."""
    if IS_AIRFLOW3:
        import contextlib

        with contextlib.suppress(ImportError):
            import setproctitle  # noqa: F401  (run_workload imports it per call)
        from airflow.sdk.execution_time import supervisor  # noqa: F401
    else:
        from airflow.cli.cli_parser import get_parser

        get_parser()  # lru-cached: children inherit the built parser through fork


def run_here(payload: Any) -> None:
    """Run one task in this process; raises if the task's runner failed.

    2.x: ``payload`` is the ``airflow tasks run`` command; parsed and run in-process exactly like
    Airflow's own LocalExecutor does by default (``_execute_work_in_fork``). A non-zero exit code of
    the command (``SystemExit``) is a failure.

    3.x: ``payload`` is an ``ExecuteTask``; Airflow's own ``BaseExecutor.run_workload`` (3.3) or the
    Task SDK ``supervise`` (3.0-3.2) runs it. As in Airflow's LocalExecutor the supervisor's return
    code is not a verdict: the task reports its own state to the API server; an executor FAILED means
    the supervisor itself could not run the task (SPEC EVT-1).
    """
    if IS_AIRFLOW3:
        if hasattr(BaseExecutor, "run_workload"):
            BaseExecutor.run_workload(payload, subprocess_logs_to_stdout=True)
        else:  # 3.0-3.2
            from airflow.sdk.execution_time.supervisor import supervise

            supervise(ti=payload.ti, dag_rel_path=payload.dag_rel_path, bundle_info=payload.bundle_info,
                      token=payload.token, log_path=payload.log_path, subprocess_logs_to_stdout=True)
        return
    from airflow import settings
    from airflow.cli.cli_parser import get_parser

    # This process was forked from the scheduler: its pooled database connections share their sockets
    # with the parent's. Forget them without closing (closing would end the parent's sessions); 3.x
    # does this itself at fork, 2.x does not.
    engine = getattr(settings, "engine", None)
    if engine is not None:
        engine.dispose(close=False)
    if list(payload[:3]) != ["airflow", "tasks", "run"]:
        raise ValueError(f"not an 'airflow tasks run' command: {payload!r}")
    from airflow.utils.dag_parsing_context import _airflow_parsing_context_manager

    args = get_parser().parse_args(list(payload[1:]))
    args.shut_down_logging = False
    try:
        # Like Airflow's LocalExecutor and Celery worker: a DAG file can skip building the DAGs that
        # this task does not need (airflow.utils.dag_parsing_context.get_parsing_context).
        with _airflow_parsing_context_manager(dag_id=args.dag_id, task_id=args.task_id):
            args.func(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"task command exited with {exc.code}") from None


def report_running(executor: BaseExecutor, key: Any, external_id: str) -> None:
    """Send RUNNING with the external id, keeping the key in ``running`` (SPEC EVT-4 trap)."""
    if hasattr(executor, "running_state"):
        executor.running_state(key, info=external_id)
    else:  # 2.7: change_state always removes from running
        executor.change_state(key, TaskInstanceState.RUNNING, external_id)
        executor.running.add(key)
