"""What every corpus executor shares: run one task in a forked child and read its verdict, on Airflow 2 (an
``airflow tasks run`` command) and Airflow 3 (an ``ExecuteTask`` workload)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Iterable
from typing import Any

from airflow.utils.state import TaskInstanceState

from reference_executors import _bridge

_FORK = multiprocessing.get_context("fork")


def _child(payload: Any, marker: str | None) -> None:
    """The task's own process: its own session (so terminate() can stop its whole group), output discarded."""
    os.setsid()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    code = 1
    try:
        _bridge.run_here(payload)
        code = 0
    except BaseException:  # any failure of the task runner is the task failure
        code = 1
    finally:
        if marker is not None:  # durable designs: the verdict outlives this executor instance
            with contextlib.suppress(OSError):
                tmp = f"{marker}.tmp"
                with open(tmp, "w") as handle:
                    handle.write(str(code))
                os.replace(tmp, marker)
        os._exit(code)


def spawn(payload: Any, marker: str | None = None) -> Any:
    """Start ``payload`` in a forked child; returns the ``multiprocessing.Process``."""
    process = _FORK.Process(target=_child, args=(payload, marker), daemon=False)
    process.start()
    return process


def verdict(process: Any) -> TaskInstanceState | None:
    """SUCCESS/FAILED once the child has exited (reaped), else None. Never blocks."""
    code = process.exitcode
    if code is None:
        return None
    return TaskInstanceState.SUCCESS if code == 0 else TaskInstanceState.FAILED


def stop(processes: Iterable[Any]) -> None:
    """SIGKILL each child's process group and reap it (terminate(): nothing of ours outlives the scheduler)."""
    for process in processes:
        if process.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        process.join(timeout=5)


def key_of(payload: Any) -> Any:
    return _bridge.task_payload_key(payload)


def take_workloads(executor: Any, workloads: Iterable[Any]) -> list[tuple[Any, Any]]:
    """3.3's ``_process_workloads`` contract: pop each workload from ``queued_tasks`` and put its key in
    ``running`` (the base does neither any more); returns ``(key, workload)`` pairs."""
    taken = []
    for workload in workloads:
        key = key_of(workload)
        executor.queued_tasks.pop(key, None)
        executor.running.add(key)
        taken.append((key, workload))
    return taken
