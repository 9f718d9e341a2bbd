"""Deliberately broken executors: one small, realistic bug each (scikit-learn's negative controls).

They live next to what they prove, one module per contract area (``tests/controls/<area>.py``, each with
its ``CONTROLS``: the check, and the message that check must produce); this module gathers them.
Every catalogued check has at least one entry in ``NEGATIVE_CONTROLS``; ``test_negative_controls`` proves
each check catches its controls for the right reason, and ``test_every_check_has_a_negative_control``
keeps it that way.
"""

from __future__ import annotations

from typing import Any

from conformance.harness import airflow_compat as compat
from reference_executors.local import LocalExecutor
from reference_executors.sequential import SequentialExecutor
from tests.controls import (
    adoption,
    attributes,
    cli,
    e2e,
    events,
    heartbeat,
    lifecycle,
    logs,
    preflight,
    stateful,
    stuck,
    surface,
)
from tests.controls._shared import (  # noqa: F401
    AdoptsNothing,
    Control,
    SequentialDeclinesAdoption,
    _FileVerdictLocal,
    _refuse_unserved,
    _requeue_payload,
)
from tests.controls.adoption import (  # noqa: F401
    AdoptNeverReports,
    AdoptRaisesOnForeign,
    AdoptReruns,
    AdoptReturnsAdopted,
    AdoptReturnsStrangers,
    AdoptTwiceHandsBack,
    ClaimsForeignAdoption,
    ReportsUnadopted,
)
from tests.controls.attributes import (  # noqa: F401
    AcceptsUndeclaredConnectionTests,
    BadSentryIntegration,
    CallbackReportedAsTaskState,
    CallbacksDeclaredButDropped,
    ClaimsMultiTeam,
    ClaimsSingleThreaded,
    LocalButSaysRemote,
    LocalWithoutServeLogs,
    SerialButClaimsParallel,
    WronglyTypedAttributes,
)
from tests.controls.cli import CollidingCliCommands  # noqa: F401
from tests.controls.e2e import DeclinesAdoption, ForgetsRetries, StuckHandlingRaises, UntrackedRunning  # noqa: F401
from tests.controls.events import (  # noqa: F401
    AlwaysSuccess,
    FilterIgnored,
    ReportsUpForRetry,
    RunningAfterTerminal,
    StopsReportingAtUnreadableResult,
    StrictChangeState,
    StringStates,
    WorkerDeathReportedSuccess,
)
from tests.controls.heartbeat import (  # noqa: F401
    BackendErrorEscapes,
    BlockingSync,
    ChattySync,
    DoubleSync,
    DropsUnservedQueue,
    ForgetsRunning,
    GuessesVerdictInOutage,
    RaisesOnUnservedQueue,
    ReversedPriority,
    ReversedPrioritySequential,
    StartsOnlyWhenQueueOutnumbersRunning,
    ZeroParallelismRunsNothing,
)
from tests.controls.lifecycle import (  # noqa: F401
    DispatchesRequeuedImmediately,
    EndDoesNotWait,
    EndHangsWhenAdopting,
    EndWaitsForQueuedWork,
    NeedsArguments,
    OneShotExecutor,
    RunsEachTaskTwice,
    RunsTwiceIfQueuedTwice,
    TerminateDoesNothing,
)
from tests.controls.logs import RaisingTaskLog  # noqa: F401
from tests.controls.preflight import (  # noqa: F401
    HeartbeatRaises,
    NeverReportsResults,
    NeverStarts,
    RelaunchesEveryHeartbeat,
    ReportsSuccessWithoutRunning,
)
from tests.controls.stateful import (
    AdoptsBeyondParallelism,
    DropsEventWhenTwoRunTogether,
    ExceedsParallelismAfterRevoke,
    LateRunningAfterTerminal,
    PagedStatusPoller,
    RebuildsKeyFromNames,
    ReReportsWorkloadWithNextTask,
    WatchesAnotherTasksJob,
)
from tests.controls.stuck import (  # noqa: F401
    CleanupLeavesQueued,
    CleanupReturnsNone,
    RemembersRevoked,
    RevokeEmitsEvent,
    RevokeLeavesRunning,
    RevokeNoop,
    RevokeRaisesForUnknown,
)
from tests.controls.surface import SlotsAvailableIsAMethod  # noqa: F401

NEGATIVE_CONTROLS: dict[str, list[Control]] = {
    **adoption.CONTROLS,
    **attributes.CONTROLS,
    **cli.CONTROLS,
    **e2e.CONTROLS,
    **events.CONTROLS,
    **heartbeat.CONTROLS,
    **lifecycle.CONTROLS,
    **logs.CONTROLS,
    **preflight.CONTROLS,
    **stateful.CONTROLS,
    **stuck.CONTROLS,
    **surface.CONTROLS,
}

#: Broken executors that only the state machine may catch: every contract check passes them.
STATEFUL_ONLY = (DropsEventWhenTwoRunTogether, ExceedsParallelismAfterRevoke,
                 RebuildsKeyFromNames, LateRunningAfterTerminal, WatchesAnotherTasksJob,
                 AdoptsBeyondParallelism, PagedStatusPoller,
                 # (BatchStopsAtKeyInFlight is no longer here: LIFE-3's deferral race loses its re-queued key too)
                 # the state machine queues callbacks and connection tests only where Airflow has them
                 *((ReReportsWorkloadWithNextTask,) if compat.has_other_workloads() else ()))


#: The reference executors, for "a correct executor passes" tests.
REFERENCE = {"LocalExecutor": LocalExecutor, "SequentialExecutor": SequentialExecutor}


#: capabilities that need an executor method the installed Airflow's BaseExecutor may not have
_NEEDS_BASE_METHOD = {"revoke": "revoke_task", "cleanup_stuck": "cleanup_stuck_queued_tasks"}


def missing_on_this_airflow(check_id: str) -> str | None:
    """Why no executor can have a capability the check needs on the installed Airflow (revoke_task only
    exists since 2.10), or None. Such a check is rightly 'not supported' for every executor here."""
    from conformance import checks
    from conformance.harness import airflow_compat as compat

    base = compat.base_executor_class()
    for need in checks.get(check_id).needs:
        method = _NEEDS_BASE_METHOD.get(need)
        if method and not hasattr(base, method):
            return f"BaseExecutor.{method} does not exist on Airflow {compat.version_string()}"
    return None


def area_marks(check_id: str) -> list[Any]:
    """e2e checks start a real Airflow deployment (a minute or more): opt-in with ``-m e2e``."""
    import pytest

    return [pytest.mark.e2e, pytest.mark.slow] if check_id.startswith("e2e.") else []

