"""What several areas' controls share: the ``Control`` record, bases and helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conformance.harness import airflow_compat as compat
from reference_executors import _bridge
from reference_executors._base import ReferenceExecutorBase
from reference_executors.local import LocalExecutor
from reference_executors.sequential import SequentialExecutor


def _refuse_unserved(queue: str | None) -> None:
    if queue not in (None, "default"):
        raise ValueError(f"no worker serves queue {queue!r}")


class AdoptsNothing(LocalExecutor):
    """Overrides try_adopt_task_instances only to log: it hands everything back, like the base class.
    Its override must not make it count as an executor that adopts (confirmed by behaviour)."""

    def try_adopt_task_instances(self, tis: Any) -> Any:
        self.log.info("not adopting %d task instances", len(tis))
        return list(tis)


def _requeue_payload(ti: Any) -> Any:

    handle = compat.make_task(ti.dag_id, ti.task_id, ti.run_id, try_number=ti.key.try_number)
    if _bridge.IS_AIRFLOW3:
        return handle.workload
    return (handle.command, 1, "default", handle.ti)


class _FileVerdictLocal(LocalExecutor):
    """The reference LocalExecutor with a process per task whose verdict the executor reads from the state
    directory (``ReferenceExecutorBase._launch``), not from a worker's pipe: the outage of
    ``StateDirectoryOutage`` then hits the executor's own reads and writes, which these controls mishandle."""

    _launch = ReferenceExecutorBase._launch


class SequentialDeclinesAdoption(SequentialExecutor):
    """A positive control: single-threaded, overrides ``try_adopt_task_instances`` only to hand every TI back
    (what BaseExecutor does). It adopts nothing, which is its right: the ADOPT checks are not supported."""

    def try_adopt_task_instances(self, tis: Any) -> Any:
        return list(tis)


@dataclass(frozen=True)
class Control:
    executor: type
    #: a regular expression the check's message must match: the control fails *for the right reason*, not
    #: by accident (another clause, a teardown, a timeout)
    expect: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    advice: bool = False  # for ATTR-2a advice checks the control must produce advice, not a failure
    backend: Any = None  # a BackendDriver, for checks that inject backend faults

    @property
    def name(self) -> str:
        return self.executor.__name__


