"""SequentialExecutor: one task at a time, run to completion inside the heartbeat."""

from __future__ import annotations

from typing import Any

from reference_executors import _bridge
from reference_executors._base import ReferenceExecutorBase
from reference_executors._process import FAILED, TaskProcess, new_external_id


class SequentialExecutor(ReferenceExecutorBase):
    """Runs each dispatched task to completion inside ``sync()``, so a heartbeat finishes it.

    ``parallelism`` is fixed at 1: it is the truth (one task at a time), and it keeps the scheduler's
    slot accounting honest -- Airflow 2's own SequentialExecutor advertises 32 slots it never uses.
    """

    is_local = True  # tasks run in this process's host, one by one
    serve_logs = True  # logs are local files
    is_single_threaded = True  # 2.x allows sqlite for single-threaded executors: never overlap two tasks
    is_production = False  # one task at a time is for trying Airflow out, not for production
    supports_pickling = False
    supports_sentry = False
    supports_ad_hoc_ti_run = False
    # ATTR-2a: a poke-mode sensor would hold the only slot for its whole wait; rescheduling frees it.
    change_sensor_mode_to_reschedule = True
    sentry_integration = ""
    # 3.3: deadline callbacks and connection tests run like tasks (BaseExecutor.run_workload in a forked
    # child) and are reported with their own key and state classes; older Airflow has neither.
    supports_callbacks = _bridge.HAS_OTHER_WORKLOADS
    supports_connection_test = _bridge.HAS_OTHER_WORKLOADS
    supports_multi_team = False
    pre_assigns_external_executor_id = False

    def __init__(self, parallelism: int = 1, state_dir: Any = None, **kwargs: Any):
        super().__init__(parallelism=1, state_dir=state_dir, **kwargs)
        self._pending: list[tuple[Any, Any]] = []
        self._unreported: dict[Any, TaskProcess] = {}  # finished, verdict unreadable so far (HB-5)

    def _dispatch(self, key: Any, payload: Any) -> None:
        self._pending.append((key, payload))

    def sync(self) -> None:
        """Run what the heartbeat just dispatched, to completion, and report it.

        If the state directory is unavailable (SPEC HB-5) a task that cannot be started stays pending
        and a verdict that cannot be read is read at a later heartbeat; nothing raises, nothing is lost."""
        for key, proc in list(self._unreported.items()):
            self._report_if_known(key, proc, proc.poll())
        for key, payload in list(self._pending):
            if key in self.event_buffer:
                # Queued again before the scheduler read its previous run's terminal event (it read the
                # buffer for other dags only): the buffer keeps one event per key, so wait for the read.
                continue
            try:
                proc = self._launch(key, new_external_id("refseq"), payload)
            except OSError as exc:
                self.log.warning("Cannot start %s now (%s); retrying at the next heartbeat", key, exc)
                return
            self._pending.remove((key, payload))
            self._report_if_known(key, proc, proc.finish())

    def _report_if_known(self, key: Any, proc: TaskProcess, outcome: tuple[str, str] | None) -> None:
        if outcome is None:
            self._unreported[key] = proc
            return
        self._unreported.pop(key, None)
        proc.forget()
        self._report(key, *outcome)

    def end(self) -> None:
        """Nothing runs between heartbeats; finish anything dispatched but not yet run."""
        self.sync()
        for key, proc in list(self._unreported.items()):
            self._report_if_known(key, proc, proc.wait())

    def terminate(self) -> None:
        """Nothing is in flight between calls; dispatched-but-unstarted tasks are reported failed."""
        pending, self._pending = self._pending, []
        for key, _ in pending:
            self._report(key, FAILED, "terminated before it started")

    def _next_run_pending(self, key: Any) -> bool:
        return any(k == key for k, _ in self._pending)

    def _forget(self, key: Any) -> None:
        self._pending = [(k, p) for k, p in self._pending if k != key]
        self._unreported.pop(key, None)


#: The name to use in ``[core] executor`` on Airflow 3, which rewrites any "SequentialExecutor" in that
#: setting to "LocalExecutor" (a deprecated-value upgrade): ``reference_executors.sequential.OneAtATimeExecutor``.
OneAtATimeExecutor = SequentialExecutor
