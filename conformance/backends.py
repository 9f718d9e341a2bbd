"""BackendDriver: how the suite reaches an executor's remote backend (Celery, Kubernetes, ECS, ...).

Local executors need none: the probe seam sees every task. An executor whose work runs elsewhere can
be given a driver in its ``ExecutorProfile(backend=...)``; checks that need to act on the backend
declare the ``backend`` capability and are reported "not supported" without one.

Status: the protocol only. No check uses it yet (SPEC HB-5, a transient backend error, is the first
one planned) and no driver ships; the Celery validation runs against a real Redis and worker instead.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class BackendDriver(Protocol):
    """What a check may ask of the backend behind the executor under test."""

    def complete(self, key: Any) -> None:
        """Make the backend report the task as finished successfully."""

    def fail(self, key: Any) -> None:
        """Make the backend report the task as failed."""

    def lose(self, key: Any) -> None:
        """Make the backend forget the task (a lost message or a deleted pod)."""

    def delay(self, key: Any, seconds: float) -> None:
        """Hold the task's start back by ``seconds``."""

    def transient_error(self) -> AbstractContextManager[None]:
        """While the context is open, calls to the backend fail as a brief outage would."""
