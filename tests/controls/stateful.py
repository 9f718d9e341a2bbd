"""Broken executors that the ``stateful`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from typing import Any

from airflow.utils.state import TaskInstanceState

from conformance.harness import airflow_compat as compat
from conformance.harness.strategies import DAGS
from reference_executors import _bridge
from reference_executors._process import TaskProcess
from reference_executors.local import LocalExecutor
from tests.controls._shared import Control
from tests.controls.heartbeat import DropsUnservedQueue


class DropsEventWhenTwoRunTogether(LocalExecutor):
    """Loses the terminal event of a task of one dag that ran while another task was in flight."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._victims: set[Any] = set()

    def _dispatch(self, key: Any, payload: Any) -> None:
        super()._dispatch(key, payload)
        if len(self._procs) >= 2:
            self._victims |= {k for k in self._procs if getattr(k, "dag_id", None) == DAGS[2]}

    def _report(self, key: Any, state: str, info: str) -> None:
        if key in self._victims:
            self._victims.discard(key)
            self.running.discard(key)  # bookkeeping is tidy; the event is simply never sent
            return
        super()._report(key, state, info)


class ExceedsParallelismAfterRevoke(LocalExecutor):
    """Revoking frees two slots: another running key is dropped from ``running`` too."""

    def revoke_task(self, *, ti: Any) -> None:
        super().revoke_task(ti=ti)
        if self.running:
            self.running.pop()


class ReReportsWorkloadWithNextTask(LocalExecutor):
    """A finished callback or connection test stays in its bookkeeping and is reported SUCCESS once more
    with the first task reported in a later heartbeat: two terminal events for one workload (3.3+)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._stale: tuple[Any, int] | None = None
        self._reads = 0

    def _report_finished(self) -> None:
        self._reads += 1
        super()._report_finished()

    def _report(self, key: Any, state: str, info: str) -> None:
        super()._report(key, state, info)
        if not hasattr(key, "dag_id"):
            self._stale = (key, self._reads)
        elif self._stale is not None and self._stale[1] < self._reads:
            stale, self._stale = self._stale[0], None
            self.success(stale, "stale")


class RebuildsKeyFromNames(LocalExecutor):
    """Reports each result under a key rebuilt from the dag, task and run names and the try number (as an
    executor that round-trips keys through its backend's job name does): a mapped TI's map index is lost."""

    def _report(self, key: Any, state: str, info: str) -> None:
        rebuilt = compat.make_key(key.dag_id, key.task_id, key.run_id, key.try_number) \
            if hasattr(key, "dag_id") else key
        self.running.discard(key)
        super()._report(rebuilt, state, info)


class LateRunningAfterTerminal(LocalExecutor):
    """A status poller that lags: once ``LAG`` further tasks have finished after a task's terminal event, it
    announces RUNNING for that task once more (the stale status of a poll cycle that wrapped around).

    The lag is counted in finished tasks, not heartbeats, so whether a short scenario sees it does not
    depend on how many heartbeats a busy machine needs: no contract check puts this many tasks through one
    executor, a generated programme does."""

    LAG = 12

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._reported = 0
        self._finished: list[tuple[Any, int]] = []

    def _report(self, key: Any, state: str, info: str) -> None:
        super()._report(key, state, info)
        if hasattr(key, "dag_id"):
            self._reported += 1
            self._finished.append((key, self._reported))

    def sync(self) -> None:
        stale = [key for key, at in self._finished if self._reported - at >= self.LAG]
        self._finished = [(key, at) for key, at in self._finished if self._reported - at < self.LAG]
        for key in stale:
            self.event_buffer[key] = (TaskInstanceState.RUNNING, "stale poll")
        super().sync()


class BatchStopsAtKeyInFlight(LocalExecutor):
    """Takes a heartbeat's whole batch off ``queued_tasks`` first, then gives up on the rest of the batch at a
    key that is still in flight (queued again while running): the tasks after it are lost."""

    def trigger_tasks(self, open_slots: int) -> None:
        if _bridge.IS_AIRFLOW3 and (getattr(self, "queued_callbacks", None) or {}):
            super().trigger_tasks(open_slots)  # callbacks take the base's path
            return
        batch = self.order_queued_tasks_by_priority()[:open_slots]
        for key, _ in batch:
            self.queued_tasks.pop(key, None)
        for key, item in batch:
            if key in self._procs:
                self.log.error("%s is already running: abandoning this batch", key)
                return
            self.running.add(key)
            self._dispatch(key, item if _bridge.IS_AIRFLOW3 else list(item[0]))


class WatchesAnotherTasksJob(LocalExecutor):
    """Adoption by position, not identity: each adopted TI is attached to the job of the TI after it in the
    batch (as an executor that pairs the TIs it is handed with a job list from its backend in another order),
    and reports that job's outcome under the TI's key."""

    def try_adopt_task_instances(self, tis: Any) -> Any:
        tis = list(tis)
        if len(tis) < 2:
            return super().try_adopt_task_instances(tis)
        ids = [getattr(ti, "external_executor_id", None) for ti in tis]
        not_adopted = []
        for index, ti in enumerate(tis):
            external_id = ids[(index + 1) % len(ids)]
            proc = TaskProcess.from_record(self.state_dir, external_id) if external_id else None
            if proc is None:
                not_adopted.append(ti)
                continue
            self._procs[ti.key] = proc
            self.running.add(ti.key)
        return not_adopted


class AdoptsBeyondParallelism(LocalExecutor):
    """Counts only the work it started itself against parallelism: adopted keys are in ``running`` (so
    ``has_task`` and the slot figures are right), but each heartbeat triggers as many tasks as its own work
    leaves room for -- so it starts new work while adopted work fills its slots."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._adopted: set[Any] = set()

    def try_adopt_task_instances(self, tis: Any) -> Any:
        tis = list(tis)
        left = super().try_adopt_task_instances(tis)
        self._adopted |= {ti.key for ti in tis} - {ti.key for ti in left}
        return left

    def trigger_tasks(self, open_slots: int) -> None:
        super().trigger_tasks(open_slots + len(self._adopted & set(self.running)))


class PagedStatusPoller(LocalExecutor):
    """Reads the status of the first ``PAGE`` tasks in flight only, oldest first (the first page of a paginated
    status API, never the next): while ``PAGE`` long tasks run, a task behind them that finished is never seen
    -- in production, finished tasks stay 'running' for as long as the long ones run."""

    PAGE = 8

    def _report_finished(self) -> None:
        self._start_held_runs()
        self._pool.news()  # collects what the workers reported; only the first page is looked at
        page = list(self._procs.items())[:self.PAGE]
        for key, proc in page:
            outcome = proc.poll()
            if outcome is not None:
                del self._procs[key]
                proc.forget()
                self._report(key, *outcome)


CONTROLS: dict[str, list[Control]] = {
    "stateful.scheduler_action_sequences": [
        Control(DropsEventWhenTwoRunTogether, "work that ended has its terminal event|every queued task gets a "
                                              "terminal event|queued, running or reported"),
        Control(ExceedsParallelismAfterRevoke, "tracked \\(has_task\\)|never more than parallelism|slots_available|"
                                               "queued, running or reported"),
        Control(DropsUnservedQueue, "every accepted workload is queued, running or reported|every queued task gets "
                                    "a terminal event"),
        Control(RebuildsKeyFromNames, "event keys are exactly the keys given"),
        Control(LateRunningAfterTerminal, "after its terminal event"),
        Control(BatchStopsAtKeyInFlight, "every accepted workload is queued, running or reported|every queued task "
                                         "gets a terminal event"),
        # the wrong job's end is taken for the adopted task's: a terminal state that is not what the task's own
        # run did (whatever the runs were: released, crashed, their worker killed), or -- when the slot is taken
        # as free while the task's own work still runs -- new work started beside it
        Control(WatchesAnotherTasksJob, "events match the journal: .* reported (success|failed); expected|started "
                                        "while .* of them adopted"),
        Control(AdoptsBeyondParallelism, "adopted work holds slots"),
        Control(PagedStatusPoller, "work that ended has its terminal event within the report budget"),
        *((Control(ReReportsWorkloadWithNextTask, "second terminal event"),) if compat.has_other_workloads() else ())],
}
