"""The scheduler model: what the installed Airflow's scheduler and base class do that the state machine
follows -- how much work a programme holds at once, what Airflow 2's base gives up on, which states an
event may carry per major, which non-task workloads exist. SPEC PROP's table names the code path behind
each rule, per version.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from conformance.groundtruth.probes import ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.profile import ExecutorProfile

#: At most this many tasks outstanding at once (held ones included): enough to fill six slots and queue
#: behind them, few enough that a step stays cheap.
MAX_OUTSTANDING = 10
#: At most this many of them held (until a rule releases them) or on a queue nobody serves: more would clog
#: the cap and the slots for the rest of the programme, and one or two already make every situation they can.
MAX_HELD = 3
MAX_UNSERVED = 2
OWNER = "stateful.scheduler_action_sequences"
#: Scheduler 'deaths' per programme: each one builds and starts a whole new executor.
MAX_ADOPTIONS = 2
#: held tasks in flight when a scheduler dies: two outcomes to tell apart, and more than a fewer-slots
#: successor holds
ADOPTION_BATCH = 2


class _GiveUps(logging.Handler):
    """Collects the keys an executor's base class logs that it gave up on: Airflow 2's
    ``BaseExecutor.trigger_tasks`` says "could not queue task <key> (still running after N attempts)"."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self._keys: list[Any] = []
        self._loggers: list[logging.Logger] = []
        self._lock_keys = threading.Lock()

    def watch(self, executor: Any) -> None:
        logger = getattr(executor, "log", None)
        if isinstance(logger, logging.Logger) and logger not in self._loggers:
            logger.addHandler(self)
            self._loggers.append(logger)

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        if message.startswith("could not queue task") and "still running" in message and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            with self._lock_keys:
                self._keys.append(args[0])

    def take(self) -> list[Any]:
        with self._lock_keys:
            keys, self._keys = self._keys, []
        return keys

    def close(self) -> None:
        for logger in self._loggers:
            logger.removeHandler(self)
        self._loggers = []
        super().close()


def _state_of(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) and value else value


def _allowed_states() -> frozenset[Any]:
    states = compat.state_enum()
    return frozenset({states.QUEUED, states.RUNNING, states.SUCCESS, states.FAILED})


def _expected_states(kind: str, outcome: str | None, states: Any) -> frozenset[Any]:
    """What a task's terminal event may say, from what its probe really did (SPEC EVT-1, by major)."""
    either = frozenset({states.SUCCESS, states.FAILED})
    if outcome == "released_crash":
        return frozenset({states.FAILED})  # a held task whose process died at its end: never SUCCESS
    if kind == ProbeKind.OK.value or outcome == "released":
        return frozenset({states.SUCCESS})
    if kind == ProbeKind.FAIL.value or outcome == "hang_timeout":
        return either if compat.is_airflow3() else frozenset({states.FAILED})
    return frozenset({states.FAILED})  # raise, crash, kill, killworker: never SUCCESS


def other_workloads(profile: ExecutorProfile) -> tuple[str, ...]:
    """The non-task workloads the executor declares, where the installed Airflow has them."""
    if not compat.has_other_workloads():
        return ()
    cls = profile.executor_type()
    return tuple(kind for kind, flag in (("callback", "supports_callbacks"),
                                          ("connection test", "supports_connection_test"))
                 if getattr(cls, flag, False))
