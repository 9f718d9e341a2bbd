"""Property-based testing of an executor: hypothesis generates whole scheduler histories.

Hand-made scenarios find what their authors thought of. ``ExecutorMachine`` -- a module-level
``RuleBasedStateMachine`` -- explores the workload space the scheduler can produce instead: mapped and
unmapped TIs, tries above 1, dag and run ids of every accepted shape, served and unserved queues,
priorities and ``executor_config``, probes that succeed, fail, raise, crash, lose their worker or are
*held* until a rule releases them, keys queued again while in flight (beside other work of the same
loop), revoke, adoption by a second instance, callbacks and connection tests where declared, and
parallelism from 1 to 6 (0 on Airflow 2), and wide fan-outs that put dozens of tasks through one
executor instance. Queued tasks go into a hypothesis ``Bundle`` so that later rules (release, requeue,
revoke) pick among them.

Situations are built, not hoped for: steps have the scheduler loop's shape (queueing is followed by a
heartbeat and a read unless the step queues more in the same loop), a re-queued key is a held one when one
is in flight (in flight whatever the machine's speed) with work after it in the batch, and held or
unserved work is capped so that it cannot clog the rest of the programme. How soon each known defect
class is caught is measured by ``benchmarks/bench.py --only detection`` (benchmarks/RESULTS.md).

The SPEC PROP invariants run after every step over the *whole* event stream and the journal, not over
snapshots: every accepted workload is queued, running or reported (never gone); nothing is reported for
a key and try after its terminal event; event keys are exactly the keys given; states are those allowed;
work that ended more than the ``report`` budget ago has its terminal event whatever else is in flight;
never more runs than parallelism, never a try run twice or twice at once; ``end()`` returns within its
budget with held work in flight and accounts for every task.

Cost is counted in round trips (``timing``): a step that waits, waits for the executor to report
something (``await_progress``), never for a fixed time, and generation stops when the ``state_machine``
budget -- a number of calibrated round trips -- is spent; shrinking a failure has a ``shrink`` budget of
its own. Every step is recorded as the Python call that replays it, so a failing programme always
becomes a reproducer, also when hypothesis cannot replay a timing-dependent failure or the budget ends
the shrinking.

The package: ``model`` (the scheduler model per version), ``records`` (findings, configuration, tracked
tasks), ``properties`` (SPEC PROP invariants), ``machine`` (the rules), ``exploration`` (budgets, runs,
replays, reproducers).
"""

from conformance.harness.stateful.exploration import (
    PROFILES,
    REPLAYS,
    hypothesis_settings,
    machine_for,
    replay_until_recurs,
    run_stateful,
    write_reproducer,
)
from conformance.harness.stateful.machine import ExecutorMachine
from conformance.harness.stateful.model import MAX_HELD, MAX_OUTSTANDING, MAX_UNSERVED, OWNER, other_workloads
from conformance.harness.stateful.records import (
    BudgetSpent,
    Exploration,
    MachineConfig,
    NotReproduced,
    PropertyViolated,
    Tracked,
    spec_property,
)

__all__ = ["MAX_HELD", "MAX_OUTSTANDING", "MAX_UNSERVED", "OWNER", "PROFILES", "REPLAYS", "BudgetSpent",
           "ExecutorMachine", "Exploration", "MachineConfig", "NotReproduced", "PropertyViolated", "Tracked",
           "hypothesis_settings", "machine_for", "other_workloads", "replay_until_recurs", "run_stateful",
           "spec_property", "write_reproducer"]
