"""Exploration: binding the machine to an executor and its budgets, running hypothesis within them, replaying
a failure before its verdict, and writing the reproducer."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from conformance.groundtruth.sandbox import Sandbox, ensure_active
from conformance.harness.profile import ExecutorProfile
from conformance.harness.stateful.machine import ExecutorMachine
from conformance.harness.stateful.model import other_workloads
from conformance.harness.stateful.records import (
    BudgetSpent,
    Exploration,
    MachineConfig,
    NotReproduced,
    PropertyViolated,
)
from conformance.harness.strategies import TaskSpec
from conformance.harness.timing import FLOORS, CeilingReached, TimeModel, capped

#: ``budget_factor`` multiplies the time model's ``state_machine`` (exploration) and ``shrink`` budgets;
#: generation runs as many examples as fit (``max_examples`` is only a ceiling).
PROFILES: dict[str, dict[str, Any]] = {
    "ci": dict(max_examples=1000, stateful_step_count=30, budget_factor=1.0),
    "thorough": dict(max_examples=10000, stateful_step_count=50, budget_factor=10.0),
}


def hypothesis_settings(profile: str = "ci", derandomize: bool = False, shrink: bool = True,
                        examples: int | None = None) -> settings:
    """``ci`` (the round-trip budget, seconds on a local executor) or ``thorough`` (ten times that). No
    deadline: the time model owns budgets. No example database: nothing is written outside the sandbox."""
    if profile not in PROFILES:
        raise ValueError(f"unknown hypothesis profile {profile!r}; choose one of {sorted(PROFILES)}")
    chosen = {k: v for k, v in PROFILES[profile].items() if k != "budget_factor"}
    if examples is not None:
        chosen["max_examples"] = examples
    return settings(deadline=None, database=None, derandomize=derandomize, print_blob=True,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, *([Phase.shrink] if shrink else [])],
                    **chosen)


def machine_for(profile: ExecutorProfile, sandbox: Sandbox | None = None, time_model: TimeModel | None = None,
                capabilities: dict[str, bool] | None = None, hypothesis_profile: str = "ci",
                share: float = 1.0) -> type[ExecutorMachine]:
    """``ExecutorMachine`` bound to ``profile`` (capabilities read once) with its budgets.

    ``share`` is this instance's part of the exploration budget when several explore at once (lanes on
    separate executor instances): the budget is counted in round trips of exploration, so ``n`` lanes
    spend it in 1/n of the wall time -- never below the floor each."""
    caps = capabilities if capabilities is not None else profile.capability_set()
    tm = time_model or TimeModel()
    factor = PROFILES[hypothesis_profile]["budget_factor"] if hypothesis_profile in PROFILES else 1.0
    exploration = max(tm.budget("state_machine") * factor * share, FLOORS["state_machine"] * tm.scale)
    exploration, cut = capped(exploration)
    config = MachineConfig(profile=profile, sandbox=sandbox or ensure_active(), time=tm,
                           can_revoke=bool(caps.get("revoke")), can_adopt=bool(caps.get("adoption")),
                           can_hold=not getattr(profile.executor_type(), "is_single_threaded", False),
                           other_workloads=other_workloads(profile),
                           deadline=time.monotonic() + exploration, ceiling_cut=cut,
                           shrink_budget=capped(tm.budget("shrink") * factor)[0])
    return type("ExecutorMachine", (ExecutorMachine,), {"config": config})


def run_stateful(profile: ExecutorProfile, sandbox: Sandbox, *, hypothesis_profile: str = "ci",
                 derandomize: bool = False, reproducer_dir: Path | None = None, time_model: TimeModel | None = None,
                 capabilities: dict[str, bool] | None = None, seed: int | None = None,
                 shrink: bool = True, examples: int | None = None, share: float = 1.0) -> Exploration:
    """Run the machine; return what it explored, or raise PropertyViolated with the minimal programme and
    a reproducer built from the recorded steps.

    ``seed`` fixes the programmes hypothesis generates (the certificate records it, so a run can be
    repeated exactly); None leaves hypothesis its own random choice. ``shrink=False`` reports the first
    failing programme as found. ``examples`` explores that many programmes whatever they cost, instead of a
    time budget: with ``derandomize`` the same programmes on any machine (the suite's own tests, which ask
    whether a bug is caught and must not depend on how busy the machine is)."""
    explored = Exploration()
    deadline: float | None = None
    for attempt in range(_GENERATION_ATTEMPTS):
        left = None if examples is None else examples - explored.examples
        if left is not None and left <= 0:
            break
        try:
            return _merged(explored, _run_once(
                profile, sandbox, hypothesis_profile=hypothesis_profile, derandomize=derandomize and not attempt,
                reproducer_dir=reproducer_dir, time_model=time_model, capabilities=capabilities,
                seed=seed if not attempt else (seed or 0) + attempt, shrink=shrink, examples=left, share=share,
                deadline=deadline))
        except _GenerationFlaked as flaked:
            # Hypothesis saw a programme draw differently on a second pass (a rule's precondition reads the
            # executor's state, which timing moves): not evidence against the executor. Explore on with the
            # next seed, within what is left of the same budget.
            explored = _merged(explored, flaked.exploration)
            deadline = flaked.deadline
    return explored


#: restarts of generation after hypothesis found its data generation inconsistent (timing-dependent rules)
_GENERATION_ATTEMPTS = 4


class _GenerationFlaked(Exception):
    def __init__(self, exploration: Exploration, deadline: float):
        super().__init__("hypothesis' data generation was inconsistent")
        self.exploration = exploration
        self.deadline = deadline


def _merged(a: Exploration, b: Exploration) -> Exploration:
    return Exploration(examples=a.examples + b.examples, steps=a.steps + b.steps, tasks=a.tasks + b.tasks,
                       most_tasks_in_one_programme=max(a.most_tasks_in_one_programme, b.most_tasks_in_one_programme),
                       seconds=a.seconds + b.seconds)


def _run_once(profile: ExecutorProfile, sandbox: Sandbox, *, hypothesis_profile: str, derandomize: bool,
              reproducer_dir: Path | None, time_model: TimeModel | None, capabilities: dict[str, bool] | None,
              seed: int | None, shrink: bool, examples: int | None, share: float,
              deadline: float | None) -> Exploration:
    machine = machine_for(profile, sandbox, time_model, capabilities, hypothesis_profile, share)
    if deadline is not None:
        machine.config.deadline = deadline
    if examples is not None:
        machine.config.deadline = float("inf")
        machine.config.ceiling_cut = False
    if seed is not None and not derandomize:
        from hypothesis import seed as fix_seed

        machine = fix_seed(seed)(machine)  # run_state_machine_as_test honours @seed on the machine class
    config = machine.config
    started = time.monotonic()
    try:
        run_state_machine_as_test(machine, settings=hypothesis_settings(hypothesis_profile, derandomize, shrink,
                                                                        examples))
    except Exception as exc:
        config.exploration.seconds = time.monotonic() - started
        group = getattr(exc, "exceptions", None)
        if isinstance(group, tuple) and group:  # an exception group: report the first real failure
            exc = next((e for e in group if isinstance(e, PropertyViolated)), group[0])
        if isinstance(exc, CeilingReached) and not config.violations:
            raise CeilingReached(f"{exc} ({config.exploration.describe()})") from None
        if not config.violations and type(exc).__name__ in ("FlakyStrategyDefinition", "FlakyReplay", "Flaky"):
            raise _GenerationFlaked(config.exploration, config.deadline) from None
        if not config.violations:
            if isinstance(exc, BudgetSpent) or config.out_of_time():
                # The budget ended generation (hypothesis may call a programme cut short 'flaky'): every
                # step that ran held.
                return _unless_cut(config)
            raise PropertyViolated(f"the executor broke no named SPEC PROP invariant, but a step raised: "
                                   f"{type(exc).__name__}: {exc}") from None
        shrunk = isinstance(exc, PropertyViolated)
        prop, steps, what = config.violations[-1] if shrunk else min(config.violations, key=lambda v: len(v[1]))
        detail = str(exc) if shrunk else (
            f"SPEC PROP {prop}: {what}\nIt broke {len(config.violations)} times; "
            + ("the shrink budget ended the shrinking" if config.out_of_time() or isinstance(exc, BudgetSpent)
               else "hypothesis could not replay it (the executor's behaviour is timing-dependent)")
            + ". The shortest programme seen is below.")
        path = write_reproducer(profile, steps, reproducer_dir, config.time)
        programme = "\n".join(steps)
        replays = replay_until_recurs(profile, config, steps, capabilities, hypothesis_profile)
        listing = (f"({len(steps)} steps; {config.exploration.describe()}):\n{textwrap.indent(programme, '    ')}"
                   f"\n\nReplay it: pytest {path}")
        if not any(replays):
            raise NotReproduced(
                f"{detail.splitlines()[0]}\n\nThis did not recur: the same programme replayed {len(replays)} "
                f"time(s) under the run's time model kept every invariant, so it is not evidence against the "
                f"executor (a timing-dependent outcome, the executor's or the machine's). "
                f"Programme {listing}") from None
        recurred = next(r for r in replays if r)
        again = (f"It recurred on replay {replays.index(recurred) + 1} of {len(replays)}"
                 + ("" if recurred.split(":", 1)[0] == detail.split(":", 1)[0] else f", as: {recurred}") + ".")
        raise PropertyViolated(f"{detail}\n{again}\n\nMinimal failing programme {listing}") from None
    config.exploration.seconds = time.monotonic() - started
    return _unless_cut(config)


def _unless_cut(config: MachineConfig) -> Exploration:
    """The exploration of a pass -- unless the run's ceiling cut its budget short: then less was explored
    than a certificate promises, and the check is inconclusive, never a pass."""
    if config.ceiling_cut:
        raise CeilingReached(f"the state machine's exploration budget was cut short ({config.exploration.describe()})")
    return config.exploration


#: replays of a failing programme before its verdict: the first that recurs ends them (a deterministic defect
#: costs one replay); more than one only while the shrink budget lasts
REPLAYS = 3


def replay_until_recurs(profile: ExecutorProfile, config: MachineConfig, steps: list[str],
                        capabilities: dict[str, bool] | None, hypothesis_profile: str) -> list[str]:
    """Replay ``steps`` on fresh executors under the run's time model, checking the invariants after each
    step as the machine did, until a violation recurs; returns each replay's finding ('' where none)."""
    found: list[str] = []
    while len(found) < REPLAYS and (not found or time.monotonic() < config.shrink_deadline):
        machine = machine_for(profile, config.sandbox, config.time, capabilities, hypothesis_profile)
        machine.config.deadline = float("inf")  # a replay is not an exploration: no exploration budget
        found.append(_replay_once(machine, steps))
        if found[-1]:
            break
    return found


def _replay_once(machine: type[ExecutorMachine], steps: list[str]) -> str:
    state = machine()
    namespace = {"state": state, "TaskSpec": TaskSpec}
    try:
        try:
            for step in steps:
                exec(step, namespace)  # the recorded call, exactly as the reproducer file replays it
                state.check_properties()
        finally:
            state.teardown()
    except PropertyViolated as exc:
        return str(exc).split("\n", 1)[0]
    return ""


def write_reproducer(profile: ExecutorProfile, steps: list[str], directory: Path | None = None,
                     time_model: TimeModel | None = None) -> Path:
    """A standalone pytest file that rebuilds the executor by its dotted path and replays the recorded
    steps, checking the SPEC PROP invariants after each one, as the machine did."""
    target = directory or Path(tempfile.mkdtemp(prefix="conformance-reproducer-"))
    target.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"        {step}\n        state.check_properties()" for step in steps)
    kwargs = json.dumps(profile.executor_kwargs) if profile.executor_kwargs else None
    name = profile.label.replace(".", "_").replace(":", "_")
    # each lane (a process of its own) writes its own file
    path = target / f"test_reproduce_{name}.py"
    if path.exists():
        path = target / f"test_reproduce_{name}_{os.getpid()}.py"
    tm = time_model or TimeModel()
    timing = f"TimeModel(scale={tm.scale!r}, calibration=Calibration(**{tm.calibration.as_dict()!r}))"
    path.write_text(
        f'''"""Replays a failing executor-conformance state-machine programme for {profile.label}.

Generated by airflow-executor-conformance. Run it with: pytest {path.name}
"""
import atexit

from conformance.groundtruth.sandbox import ensure_active

atexit.register(ensure_active().deactivate)  # a private AIRFLOW_HOME before Airflow is imported; removed at exit

from conformance.harness.profile import ExecutorProfile  # noqa: E402
from conformance.harness.stateful import machine_for  # noqa: E402
from conformance.harness.strategies import TaskSpec  # noqa: E402,F401
from conformance.harness.timing import Calibration, TimeModel  # noqa: E402

#: the failing run's time model: the replay judges by the budgets that judged the run
TIME_MODEL = {timing}


def test_reproduce():
    machine = machine_for(ExecutorProfile.from_path({profile.label!r}, {kwargs!r}), time_model=TIME_MODEL)
    machine.config.deadline = float("inf")  # a replay is not an exploration: no exploration budget
    state = machine()
    try:
{body}
    finally:
        state.teardown()
''')
    return path
