"""How soon the state machine finds each defect it is meant to find: programmes until caught, per seed.

Each state-machine control (``tests/controls/stateful.py``: a broken executor that only the state machine
catches) is explored with several fixed seeds, generation only (no shrinking), counted in programmes
rather than seconds. Per control: the programme in which it was first caught for each seed, whether the
finding named the control's own defect, and the wall time. The suite's own tests give every control 200
programmes; this table is the evidence for that margin. Measured, never asserted.

    python benchmarks/bench.py --only detection [--seeds 6] [--json out.json]
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: the most programmes one seed may explore before a control counts as missed
EXAMPLES = 200


def sweep(seeds: int, only: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run every state-machine control (or those named in ``only``, comma-separated) with seeds
    0..seeds-1 in this process's (active) sandbox."""
    sys.path.insert(0, str(REPO))  # the controls live in the suite's own tests
    from conformance.groundtruth.sandbox import ensure_active
    from conformance.harness.profile import ExecutorProfile
    from conformance.harness.stateful import NotReproduced, PropertyViolated, run_stateful
    from tests.broken_executors import NEGATIVE_CONTROLS

    sandbox = ensure_active()
    found: dict[str, list[dict[str, Any]]] = {}
    for control in NEGATIVE_CONTROLS["stateful.scheduler_action_sequences"]:
        if only and control.name not in only.split(","):
            continue
        for seed in range(seeds):
            started = time.monotonic()
            row: dict[str, Any] = {"seed": seed}
            try:
                explored = run_stateful(ExecutorProfile(executor_class=control.executor), sandbox, seed=seed,
                                        shrink=False, examples=EXAMPLES)
                row.update(caught_at=None, explored=explored.examples)
            except PropertyViolated as exc:
                finding = str(exc).split("Minimal failing programme", 1)[0]
                counted = re.search(r"explored (\d+) programmes", str(exc))
                row.update(caught_at=int(counted.group(1)) if counted else None,
                           right_reason=bool(re.search(control.expect, finding, re.S)),
                           finding=finding.strip().splitlines()[0][:300])
            except NotReproduced as exc:
                row.update(caught_at=None, not_reproduced=str(exc).strip().splitlines()[0][:300])
            row["seconds"] = round(time.monotonic() - started, 1)
            found.setdefault(control.name, []).append(row)
            print(f"{control.name} seed {seed}: {row}", flush=True)
    return found


def false_alarms(seeds: int, only: str | None = None, examples: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """The other half of the evidence: correct executors -- the reference executors, the false-alarm corpus
    (``tests/corpus``: other designs) and Airflow's own correct ones -- under seeds 0..seeds-1. Any violation
    here is the suite's defect, not the executor's; a finding that did not recur on replay is counted apart
    (the suite reports it as inconclusive, never as a failure)."""
    from conformance.groundtruth.sandbox import ensure_active
    from conformance.harness.profile import ExecutorProfile
    from conformance.harness.stateful import NotReproduced, PropertyViolated, run_stateful

    sys.path.insert(0, str(REPO))
    from tests.broken_executors import REFERENCE
    from tests.corpus import CORPUS, airflow_own_correct_executors
    from tests.test_false_alarms import EXAMPLES as CORPUS_EXAMPLES

    profiles: dict[str, ExecutorProfile] = {
        **{name: ExecutorProfile(executor_class=cls) for name, cls in {**REFERENCE, **CORPUS}.items()},
        **{name: ExecutorProfile.from_path(path) for name, path in airflow_own_correct_executors().items()}}
    sandbox = ensure_active()
    found: dict[str, list[dict[str, Any]]] = {}
    for name, profile in profiles.items():
        if only and name not in only.split(","):
            continue
        count = examples or CORPUS_EXAMPLES.get(name, EXAMPLES)
        for seed in range(seeds):
            started = time.monotonic()
            row: dict[str, Any] = {"seed": seed, "examples": count}
            try:
                explored = run_stateful(profile, sandbox, seed=seed, shrink=False, examples=count)
                row.update(violated=None, explored=explored.describe())
            except PropertyViolated as exc:
                row.update(violated=str(exc).strip().splitlines()[0][:300])
            except NotReproduced as exc:
                row.update(violated=None, not_reproduced=str(exc).strip().splitlines()[0][:300])
            row["seconds"] = round(time.monotonic() - started, 1)
            found.setdefault(name, []).append(row)
            print(f"correct {name} seed {seed}: {row}", flush=True)
    return found


def false_alarm_markdown(found: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| correct executor | seeds | programmes each | false failures | not reproduced (inconclusive) | "
             "median s |", "|---|---|---|---|---|---|"]
    for name, rows in found.items():
        failed = [r for r in rows if r.get("violated")]
        unknown = [r for r in rows if r.get("not_reproduced")]
        lines.append(f"| {name} | {len(rows)} | {rows[0]['examples']} | {len(failed)} | {len(unknown)} | "
                     f"{statistics.median(r['seconds'] for r in rows):.1f} |")
    return "\n".join(lines)


def markdown(found: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| control | caught (of seeds) | programmes until caught: median / worst | right reason | "
             "median s |", "|---|---|---|---|---|"]
    for name, rows in found.items():
        caught = [r["caught_at"] for r in rows if r.get("caught_at") is not None]
        worst = max(caught) if len(caught) == len(rows) else f"missed {len(rows) - len(caught)}"
        right = sum(1 for r in rows if r.get("right_reason"))
        lines.append(f"| {name} | {len(caught)}/{len(rows)} | "
                     f"{statistics.median(caught) if caught else '-'} / {worst} | {right}/{len(rows)} | "
                     f"{statistics.median(r['seconds'] for r in rows):.1f} |")
    return "\n".join(lines)
