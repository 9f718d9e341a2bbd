"""LocalExecutor: runs tasks in parallel on this host, and survives a scheduler restart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reference_executors import _bridge
from reference_executors._base import ReferenceExecutorBase
from reference_executors._pool import PooledTask, WorkerPool
from reference_executors._process import TaskProcess, key_fields, new_external_id


class LocalExecutor(ReferenceExecutorBase):
    """Tasks run by long-lived worker processes on this host (``_pool``), at most ``parallelism`` at a time.

    ``heartbeat()`` never waits for task work: the workers are forked at ``start()``, dispatch hands each
    task to an idle worker (written to its pipe at the end of the heartbeat, with one wake-up for all of
    them: ``WorkerPool.flush``), and ``sync`` only reads what the workers reported. Every task
    is recorded in the state directory under its external executor id, naming the worker that runs it,
    which is how a new instance adopts it after the scheduler died.
    """

    # Compatibility attributes: each one states what this executor really does (SPEC ATTR).
    is_local = True  # tasks run on the scheduler's host (backfill passes it a config path; 3.3 bundle cleanup)
    serve_logs = True  # logs are written on this host, so the scheduler must serve them
    is_single_threaded = False  # tasks overlap; 2.x therefore refuses sqlite, which is right
    is_production = True
    supports_pickling = False  # runs from DAG files; commands never carry --pickle
    supports_sentry = False
    supports_ad_hoc_ti_run = False  # not read by core in 2.7-3.3; False is the honest default
    change_sensor_mode_to_reschedule = False  # parallel slots: poke-mode sensors block only their own slot
    sentry_integration = ""  # 3.3: no Sentry integration to enable in task processes
    # 3.3: deadline callbacks and connection tests run like tasks (BaseExecutor.run_workload in a forked
    # child) and are reported with their own key and state classes; older Airflow has neither.
    supports_callbacks = _bridge.HAS_OTHER_WORKLOADS
    supports_connection_test = _bridge.HAS_OTHER_WORKLOADS
    supports_multi_team = False
    pre_assigns_external_executor_id = False  # we mint our own ids and report them with RUNNING

    def __init__(self, parallelism: int | None = None, state_dir: Any = None, **kwargs: Any):
        super().__init__(parallelism=parallelism, state_dir=state_dir, **kwargs)
        self._procs: dict[Any, TaskProcess] = {}
        self._held: dict[Any, Any] = {}
        # Airflow 2's task command changes process-wide state: a child per task inside the worker.
        self._pool = WorkerPool(_bridge.run_here, isolate=not _bridge.IS_AIRFLOW3)

    def start(self) -> None:
        super().start()
        if self.parallelism > 0:  # 0 is "unlimited" in Airflow: then workers are forked as tasks come
            self._pool.grow(self.parallelism)

    def _launch(self, key: Any, external_id: str, payload: Any) -> TaskProcess:
        return self._pool.submit(self.state_dir, external_id, key, payload)

    def _dispatch(self, key: Any, payload: Any) -> None:
        if key in self._procs or key in self.event_buffer:
            # Same key queued again while its previous run is still going (a deferred task resuming
            # with the same try number). 2.x's base holds such keys back; 3.3's no longer does. Hold it
            # until the previous run has finished: never two runs of one try at once (SPEC LIFE-3) --
            # and until the scheduler has read that run's terminal event: the buffer keeps one event
            # per key, and this run's RUNNING would replace it (SPEC PROP: no event is lost).
            self.log.info("Task %s is still running; holding its next run back", key)
            self._held[key] = payload
            return
        external_id = new_external_id("reflocal")
        try:
            self._procs[key] = self._launch(key, external_id, payload)
        except OSError as exc:
            # The state directory is unavailable (SPEC HB-5): nothing was started. Keep the key in
            # `running` (its slot stays taken) and start it from sync() at a later heartbeat.
            self.log.warning("Cannot start %s now (%s); retrying at the next heartbeat", key, exc)
            self._held[key] = payload
            return
        # RUNNING with the external id: the scheduler stores it on the TI, and hands it back to
        # try_adopt_task_instances after a restart. running_state keeps the key in `running`.
        _bridge.report_running(self, key, external_id)

    def heartbeat(self) -> None:
        """Read what finished *before* the base class counts free slots, then its heartbeat as usual.

        ``BaseExecutor.heartbeat`` counts free slots, starts work and calls ``sync`` last, so a task that
        finished between two heartbeats would keep its slot for one more scheduler loop: with short
        tasks half the slots sit idle, and the base logs "parallelism limit reached" and reports no
        open slots to the metrics while slots are in fact free. ``sync`` is still called once (SPEC HB-3).

        Everything the heartbeat dispatches is handed to the workers together at its end (``batch``):
        one wake-up for the scheduler's process, however many tasks start."""
        with self._pool.batch():
            self._report_finished()
            super().heartbeat()

    def sync(self) -> None:
        """Called by every heartbeat: turn finished task processes into terminal events."""
        self._report_finished()

    def _report_finished(self) -> None:
        self._start_held_runs()
        news = self._pool.news()
        for key, proc in list(self._procs.items()):
            if isinstance(proc, PooledTask) and proc.pool is self._pool and proc.external_id not in news:
                continue  # still running in a live worker of ours
            outcome = proc.poll()
            if outcome is not None:
                del self._procs[key]
                proc.forget()
                self._report(key, *outcome)

    def _start_held_runs(self) -> None:
        # Runs before results are read, so a held run starts one heartbeat after the previous run's
        # terminal event was handed to the scheduler (the buffer keeps only the last event per key): and
        # only once the scheduler has read it.
        for key in [k for k in self._held if k not in self._procs and k not in self.event_buffer]:
            payload = self._held.pop(key)
            self.running.add(key)
            self._dispatch(key, payload)

    def end(self) -> None:
        """Scheduler exit: wait for every task, then flush their terminal events (SPEC LIFE-1).

        A run held back behind a previous run of its key is queued work, not running work: it is not started
        here (nobody reads the event buffer inside end(), so its RUNNING event would replace the previous
        run's terminal one); the next scheduler resets its TI."""
        while self._procs:
            for proc in list(self._procs.values()):
                proc.wait()
            self.sync()
        self._pool.shutdown()

    def terminate(self) -> None:
        """SIGTERM: stop every task's process group now and report them FAILED (SPEC LIFE-2)."""
        for proc in list(self._procs.values()):
            proc.stop()
        self.sync()
        self._pool.shutdown()

    def _next_run_pending(self, key: Any) -> bool:
        return key in self._held

    def _forget(self, key: Any) -> None:
        self._held.pop(key, None)
        proc = self._procs.pop(key, None)
        if proc is not None:
            proc.stop()
            proc.forget()

    def try_adopt_task_instances(self, tis: Sequence[Any]) -> Sequence[Any]:
        """Called at scheduler start-up (and periodically) with TIs whose scheduler died.

        Returns the TIs we could NOT adopt -- the same objects -- so the scheduler resets only those.
        A TI is adopted when its external id names a record in our state directory for the same
        key; its verdict then comes from the record, and the task is never started again.
        """
        not_adopted = []
        for ti in tis:
            key = ti.key
            if key in self._procs:
                continue  # adopted (or started) already: still ours, never hand it back
            external_id = getattr(ti, "external_executor_id", None)
            proc = TaskProcess.from_record(self.state_dir, external_id) if external_id else None
            if proc is None or proc.key_parts != key_fields(key):
                not_adopted.append(ti)
                continue
            self._procs[key] = proc
            self.running.add(key)
        return not_adopted

    @staticmethod
    def get_cli_commands() -> list[Any]:
        """Vended to ``airflow`` by the CLI parser for configured executors (called on the class)."""
        from reference_executors.cli import command_groups

        return command_groups()
