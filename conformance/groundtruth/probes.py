"""Probes: the work a queued task does in the contract tier.

A probe instruction travels inside the task's identity (its ``task_id``), so that whatever process
ends up running the task -- the executor's own process, a forked or spawned worker, an ``airflow
tasks run`` subprocess, a remote worker running ``execute_workload`` -- can decode it without any
shared memory. Format::

    cfp-<kind>-<delay_ms>-<nonce>      e.g.  cfp-ok-0-7f3a9c21, cfp-fail-250-0b1e44d2

Every run appends a ``start`` and an ``end`` entry to the journal (the ground truth the checks compare
the executor's events with) *before* carrying out the outcome, so that a crash still leaves an end
entry. This module is imported by the probe shim for every probe task: it must never import Airflow.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from conformance.groundtruth import journal

PREFIX = "cfp"
_PATTERN = re.compile(r"^cfp-(?P<kind>[a-z]+)-(?P<delay>\d+)-(?P<nonce>[0-9a-z]+)$")

#: Exit code of a probe that crashes its process with ``os._exit``.
CRASH_EXIT_CODE = 86
#: A hanging probe gives up after this long even if nobody releases it, so a leak cannot live forever.
HANG_SAFETY_SECONDS = float(os.environ.get("CONFORMANCE_PROBE_MAX_SECONDS", "60"))


class ProbeKind(str, Enum):
    """What the task does after its delay."""

    OK = "ok"  # finish normally (exit code 0)
    FAIL = "fail"  # finish with a non-zero exit code (the task failed)
    RAISE = "raise"  # make the runner itself raise (3.x: the supervisor erroring)
    HANG = "hang"  # block until released by the harness (or killed)
    CRASH = "crash"  # the process dies abruptly via os._exit
    KILL = "kill"  # the process SIGKILLs itself
    #: the process the executor runs the task in (its worker: the executor's child that waits for the
    #: task, say one that runs ``airflow tasks run``) is SIGKILLed, as the OOM killer would, then the task
    KILLWORKER = "killworker"


#: The pid of the process that plays the scheduler (the sandbox's owner), set for every process of a
#: sandbox: a ``killworker`` probe kills its ancestor that is that process's child, never the scheduler.
SCHEDULER_PID_ENV = "CONFORMANCE_SCHEDULER_PID"


class ProbeRaised(RuntimeError):
    """Raised by a RAISE probe inside the task runner."""


@dataclass(frozen=True)
class Probe:
    kind: ProbeKind
    delay_ms: int = 0
    nonce: str = ""

    @classmethod
    def new(cls, kind: ProbeKind | str = ProbeKind.OK, delay: float = 0.0) -> Probe:
        return cls(ProbeKind(kind), round(delay * 1000), secrets.token_hex(4))

    @property
    def task_id(self) -> str:
        return f"{PREFIX}-{self.kind.value}-{self.delay_ms}-{self.nonce}"

    @property
    def delay(self) -> float:
        return self.delay_ms / 1000.0

    def describe(self) -> str:
        base = self.kind.value if not self.delay_ms else f"{self.kind.value} after {self.delay:.2f}s"
        return f"probe[{base}]"


def decode(task_id: str) -> Probe | None:
    """The probe encoded in a task id, or None for a real task (which must pass through untouched)."""
    match = _PATTERN.match(task_id)
    if not match:
        return None
    try:
        kind = ProbeKind(match["kind"])
    except ValueError:
        return None
    return Probe(kind, int(match["delay"]), match["nonce"])


def release_path(journal_dir: Path, nonce: str) -> Path:
    return journal_dir / "release" / nonce


def release(journal_dir: Path, probe: Probe, linger: float = 0.0, crash: bool = False) -> None:
    """Tell a HANG probe (wherever it runs) to finish. With ``linger``, its process stays alive that many
    seconds after its work ended (journaled): a task that deferred is still tearing down when the scheduler
    may already queue it again. With ``crash``, its process dies instead of succeeding once its work ended (a
    long task that fails at its end): adopted work of mixed outcomes tells which job an executor watches. A
    later release of the same probe changes nothing."""
    path = release_path(journal_dir, probe.nonce)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(" ".join([*([f"{linger:.3f}"] if linger > 0 else []), *(["crash"] if crash else [])]))
    tmp.replace(path)


def _release_mode(journal_dir: Path, nonce: str) -> tuple[float, bool]:
    """(linger seconds, crash) as ``release`` wrote them."""
    try:
        words = release_path(journal_dir, nonce).read_text().split()
    except OSError:
        return 0.0, False
    linger = next((float(w) for w in words if w.replace(".", "", 1).isdigit()), 0.0)
    return linger, "crash" in words


def lifetime_for(time_model: Any) -> float:
    """How long a held probe lives unreleased: three times the longest budget that can judge held work
    (``terminate``, ``end``, ``event``), and never less than the default."""
    return max(HANG_SAFETY_SECONDS, 3 * max(float(time_model.budget(kind)) for kind in ("terminate", "end", "event")))


def set_lifetime(journal_dir: Path, seconds: float) -> None:
    """Raise (never lower) the lifetime of held probes that start from now on in this journal's sandbox."""
    path = journal_dir / "probe-lifetime"
    if seconds <= _lifetime(journal_dir):
        return
    journal_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(f"{seconds:.1f}")
    tmp.replace(path)


def _lifetime(journal_dir: Path) -> float:
    try:
        return float((journal_dir / "probe-lifetime").read_text())
    except (OSError, ValueError):
        return HANG_SAFETY_SECONDS


def _released(journal_dir: Path, nonce: str) -> bool:
    return release_path(journal_dir, nonce).exists()


def run(probe: Probe, identity: dict[str, Any], via: str) -> int:
    """Carry out ``probe`` in this process; returns the exit code the task would have.

    ``identity`` carries dag_id/task_id/run_id/try_number/map_index as the runner received them;
    ``via`` names the seam that intercepted the task (for the journal and for debugging).
    """
    jdir = journal.current_dir()
    run_uid = secrets.token_hex(6)
    base = {
        "run": run_uid,
        "nonce": probe.nonce,
        "kind": probe.kind.value,
        **{k: identity.get(k) for k in ("dag_id", "task_id", "run_id", "try_number", "map_index")},
    }
    journal.append(jdir, {**base, "event": "start", "t": time.monotonic(), "pid": os.getpid(),
                          "pgid": os.getpgid(0), "host": socket.gethostname(), "via": via,
                          "ancestry": ancestry(os.getpid())})
    if probe.delay_ms:
        time.sleep(probe.delay)  # the task's own work: sleeping IS the workload here
    outcome = probe.kind.value
    linger = 0.0  # seconds the process stays alive after its work ended (a deferred task tearing down)
    if probe.kind is ProbeKind.HANG:
        deadline = time.monotonic() + max(HANG_SAFETY_SECONDS, _lifetime(jdir))
        while not _released(jdir, probe.nonce):
            if time.monotonic() > deadline:
                outcome = "hang_timeout"
                break
            time.sleep(0.01)  # polling a release file: the probe is the thing being waited on
        else:
            linger, crash = _release_mode(jdir, probe.nonce)
            outcome = "released_crash" if crash else "released"
            linger = 0.0 if crash else linger
    extra: dict[str, Any] = {"linger": linger} if linger > 0 else {}
    worker: int | None = None
    if probe.kind is ProbeKind.KILLWORKER and str(os.getpid()) != os.environ.get(SCHEDULER_PID_ENV):
        worker = executor_worker(os.getpid())
        # the worker killed: a separate one, or the task's own process when the executor forked it directly;
        # None when no process could be proven the executor's worker (then only the task is killed)
        extra["worker"] = worker if worker is not None else (os.getpid() if forked_by_scheduler(os.getpid())
                                                             else None)
    journal.append(jdir, {**base, "event": "end", "t": time.monotonic(), "outcome": outcome, **extra})
    if linger > 0:
        time.sleep(linger)  # the task process tearing down after its work ended: the workload itself
    if outcome == "released_crash":
        sys.stdout.flush()
        os._exit(CRASH_EXIT_CODE)
    if probe.kind is ProbeKind.FAIL or outcome == "hang_timeout":
        return 1
    if probe.kind is ProbeKind.RAISE:
        raise ProbeRaised(f"conformance probe {probe.task_id} raised on purpose")
    if probe.kind is ProbeKind.CRASH:
        sys.stdout.flush()
        os._exit(CRASH_EXIT_CODE)
    if probe.kind is ProbeKind.KILL:
        os.kill(os.getpid(), signal.SIGKILL)
    if probe.kind is ProbeKind.KILLWORKER:
        if str(os.getpid()) == os.environ.get(SCHEDULER_PID_ENV):  # run inside the scheduler: never kill it
            raise ProbeRaised(f"conformance probe {probe.task_id} runs in the scheduler's process: not killed")
        if worker is not None:
            os.kill(worker, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    return 0


def parent_of(pid: int) -> int | None:
    """The parent pid from /proc (Linux); None when the process is gone or /proc is unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def ancestry(pid: int, limit: int = 64) -> list[int]:
    """``pid``'s ancestors, parent first, up to (not including) init."""
    chain: list[int] = []
    current: int | None = pid
    while len(chain) < limit:
        current = parent_of(current) if current is not None else None
        if current is None or current <= 1:
            break
        chain.append(current)
    return chain


def forked_by_scheduler(pid: int) -> bool:
    """Whether ``pid`` descends from the scheduler's process (the executor's own work on this host)."""
    scheduler = int(os.environ.get(SCHEDULER_PID_ENV, "0") or 0)
    return bool(scheduler) and scheduler in ancestry(pid)


def executor_worker(pid: int) -> int | None:
    """The process that runs this task for the executor -- only one that can be *proven* to be: the
    ancestor whose parent is the scheduler's process (a child the executor forked). Without such an
    ancestor the task runs under someone else's process tree (a batch scheduler's step daemon, a task
    queue's worker, a container runtime): killing its parent would damage the backend being judged, not
    simulate a lost worker, so nothing is killed but the task (None). Never the scheduler; never the task
    itself when it is the executor's direct child."""
    scheduler = int(os.environ.get(SCHEDULER_PID_ENV, "0") or 0)
    if not scheduler:
        return None
    chain = [pid, *ancestry(pid)]
    for child, parent in zip(chain, chain[1:]):
        if parent == scheduler:
            return None if child == pid else child
    return None
