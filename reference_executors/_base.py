"""What both reference executors share: dispatch on both majors, stuck-task handling, task logs.

Read this next to Airflow's ``BaseExecutor``: each method says which scheduler call site relies on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.executors.base_executor import BaseExecutor

from reference_executors import _bridge
from reference_executors._process import SUCCESS, TaskProcess, key_fields, log_path


def default_state_dir() -> Path:
    """``[reference_executors] state_dir``, else ``$AIRFLOW_HOME/reference_executors_state``."""
    from airflow.configuration import AIRFLOW_HOME, conf

    configured = conf.get("reference_executors", "state_dir", fallback=None)
    return Path(configured or os.path.join(AIRFLOW_HOME, "reference_executors_state"))


class ReferenceExecutorBase(BaseExecutor):
    """Dispatch plumbing that reads the same on Airflow 2 and 3.

    The base class's ``heartbeat`` -> ``trigger_tasks`` picks what to start (open slots, priority
    order) and hands it over through ``execute_async`` (2.x) or ``_process_workloads`` (3.x). Both
    funnel into ``_dispatch(key, payload)``; subclasses decide how a dispatched task runs.
    """

    def __init__(self, parallelism: int | None = None, state_dir: str | os.PathLike[str] | None = None,
                 **kwargs: Any):
        # The scheduler builds executors without arguments: the base's default is ``[core] parallelism``,
        # which must stay the default here or the deployment's setting is silently ignored.
        if parallelism is not None:
            kwargs["parallelism"] = parallelism
        super().__init__(**kwargs)
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Called by the scheduler after ``job_id``/``callback_sink`` are set, before any work."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _bridge.prepare_parent()

    # -- dispatch order ---------------------------------------------------------------------------
    def order_queued_tasks_by_priority(self) -> list[tuple[Any, Any]]:
        """Highest ``priority_weight`` first; equal priorities in the order they were queued.

        ``trigger_tasks`` starts the first ``open_slots`` of this list. Airflow's base class orders the
        same way on every version but 3.2, whose base puts the *lowest* priority first
        (apache/airflow#70942): the reference states its order itself rather than inherit that."""
        return sorted(self.queued_tasks.items(), key=lambda item: -_bridge.queued_priority(item[1]))

    # -- dispatch (2.x) --------------------------------------------------------------------------
    def execute_async(self, key: Any, command: Any, queue: str | None = None,
                      executor_config: Any = None) -> None:
        """2.x ``_process_tasks`` calls this after removing the key from ``queued_tasks``; the base
        adds the key to ``running`` right after we return."""
        self._dispatch(key, list(command))

    # -- dispatch (3.x) --------------------------------------------------------------------------
    def _process_workloads(self, workloads: Sequence[Any]) -> None:
        """3.x ``trigger_tasks`` hands over the workloads to start now (already limited to open slots
        and sorted by priority). Since 3.3 the base does *not* take them out of ``queued_tasks`` nor
        put them in ``running``: that is our job, or the scheduler's slot accounting and ``has_task``
        go wrong (SPEC LIFE-5)."""
        for workload in workloads:
            key = _bridge.task_payload_key(workload)
            for pending in (self.queued_tasks, getattr(self, "queued_callbacks", {}),
                            getattr(self, "queued_connection_tests", {})):
                pending.pop(key, None)
            self.running.add(key)
            self._dispatch(key, workload)

    if _bridge.IS_AIRFLOW3 and not _bridge.BASE_STORES_WORKLOADS:

        def queue_workload(self, workload: Any, session: Any = None) -> None:
            """3.0-3.2: the base class does not store ExecuteTask workloads; 3.3's does."""
            self.queued_tasks[workload.ti.key] = workload

    if _bridge.HAS_OTHER_WORKLOADS:

        def trigger_connection_tests(self) -> None:
            """3.3's base hands connection tests over only up to ``slots_available``, which already counts
            the queued tests themselves: with one free slot a queued test never fits (a sequential
            executor would never run one). Count the work in flight instead."""
            free = self.parallelism - len(self.running)
            queued: dict[Any, Any] = getattr(self, "queued_connection_tests", {})
            if getattr(self, "supports_connection_test", False) and queued and free > 0:
                self._process_workloads(list(queued.values())[:free])

    def _dispatch(self, key: Any, payload: Any) -> None:
        raise NotImplementedError

    # -- results ---------------------------------------------------------------------------------
    def _report(self, key: Any, state: str, info: str) -> None:
        """Terminal event into the event buffer; ``success``/``fail`` also drop the key from
        ``running`` -- the only moment it may leave (SPEC LIFE-5, EVT-1)."""
        if state == SUCCESS:
            self.success(key, info)
        else:
            self.fail(key, info)
        if self._next_run_pending(key):
            # The key was queued again while this run went on (a deferred task resuming): success/fail just
            # dropped it from `running`, but its next run is ours now -- the scheduler's has_task() must
            # still see it, or a TI it finds queued looks lost (SPEC LIFE-5, PROP-8).
            self.running.add(key)

    def _next_run_pending(self, key: Any) -> bool:
        """Whether a further run of ``key`` is held back in this executor (subclasses keep their own)."""
        return False

    # -- stuck in queued -------------------------------------------------------------------------
    def revoke_task(self, *, ti: Any) -> None:
        """Called by ``_handle_tasks_stuck_in_queued`` (2.10+, 3.x) for TIs queued too long.

        Forget the task everywhere and stop it if it started. Per Airflow's docstring: no event (the
        scheduler decides whether to requeue or fail the TI) and never raise, even for unknown TIs.
        """
        key = ti.key
        self.queued_tasks.pop(key, None)
        self._forget(key)
        self.running.discard(key)

    def cleanup_stuck_queued_tasks(self, tis: list[Any]) -> list[str]:
        """2.7-2.9 entry point (2.10+: fallback when ``revoke_task`` is missing).

        The 2.x scheduler iterates the result as strings for a warning line and relies on the
        executor to fail the tasks, so each one gets a FAILED event, like the celery provider did.
        """
        readable = []
        for ti in tis:
            self.revoke_task(ti=ti)
            self.fail(ti.key, "stuck in queued")
            readable.append(repr(ti))
        return readable

    def _forget(self, key: Any) -> None:
        """Stop and drop whatever runs for ``key`` (subclasses track their own processes)."""

    # -- logs ------------------------------------------------------------------------------------
    def get_task_log(self, ti: Any, try_number: int) -> tuple[list[str], list[str]]:
        """Read by ``FileTaskHandler`` when a user views the task's log in the UI."""
        parts = key_fields(ti.key)
        parts[3] = try_number
        path = log_path(self.state_dir, parts)
        try:
            content = path.read_text(errors="replace")
        except OSError:
            return [], []
        return [f"Found local log file {path}"], [content]

    def _launch(self, key: Any, external_id: str, payload: Any) -> TaskProcess:
        return TaskProcess.launch(self.state_dir, external_id, key, lambda: _bridge.run_here(payload))
