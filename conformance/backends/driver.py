"""BackendDriver: how the suite reaches an executor's backend to inject faults (SPEC HB-5).

The probe seam sees every task, so no check needs a driver to *observe* a backend. What the suite
cannot do on its own is make the backend misbehave: a broker that refuses connections for a moment, a
state store that returns I/O errors. An executor author ships a driver for their backend and passes
it with ``--backend-driver pkg.mod.Driver`` (or ``ExecutorProfile(backend=...)``); checks that need one
declare the ``backend`` capability and are reported "not supported" without it.

``reference_executors.faults.StateDirectoryOutage`` is the driver for the reference executors.

A driver may also answer ``outstanding(task_ids) -> list[str]``: which of these tasks the backend still
holds (queued, running) -- one line each, in the backend's words. After each check the suite asks it about
that check's tasks once the executor was ended, and reports what is left against that check (SPEC LIFE-1):
work the probe journal cannot see yet (a job still queued on a batch scheduler) is then not left to make the
next check look wrong. Optional: without it, the journal alone says what still runs.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable


@runtime_checkable
class BackendDriver(Protocol):
    """What a check may ask of the backend behind the executor under test."""

    def transient_error(self) -> AbstractContextManager[None]:
        """While the context is open, the executor's calls to its backend fail as in a brief outage
        (they raise or time out quickly; nothing is lost on the backend's side)."""
