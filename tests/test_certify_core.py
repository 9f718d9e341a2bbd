"""``conformance.certify``: a whole certification without pytest, overlapped or one check at a time.

Each run is a fresh process (as a program calling ``certify()`` would be): Airflow reads its config at
import, and the core's sandbox must come first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

_PROGRAM = """
import json, sys, time
from conformance import CertifyOptions, certify
options = CertifyOptions(**json.loads(sys.argv[2]))
said = []
began = time.monotonic()
certificate = certify(sys.argv[1], options, on_progress=said.append)
elapsed = time.monotonic() - began
record = certificate.record()
print("RESULT " + json.dumps({
    "elapsed": elapsed, "progress": said,
    "verdict": record["verdict"], "overlap": certificate.run["overlap"], "record": record,
    "pytest_loaded": any(name == "pytest" or name.startswith("_pytest") for name in sys.modules),
    "outcomes": {cid: r.outcome.value for cid, r in certificate.results.items()},
    "causes": {cid: r.cause for cid, r in certificate.results.items()},
    "messages": {cid: r.message for cid, r in certificate.results.items()}}))
"""


def certify_in_a_fresh_process(executor: str, **options: Any) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONFORMANCE_", "PYTEST_", "COV"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", _PROGRAM, executor, json.dumps(options)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert done.returncode == 0 and line, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def _schema() -> dict[str, Any]:
    from conformance.reporting.report import SCHEMA_PATH

    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


@pytest.fixture(scope="module")
def overlapped() -> dict[str, Any]:
    return certify_in_a_fresh_process("reference_executors.LocalExecutor", seed=7, overlap=2)


def test_certify_issues_the_certificate_without_pytest(overlapped: dict[str, Any]) -> None:
    import jsonschema

    assert overlapped["verdict"] == "CERTIFIED", overlapped["outcomes"]
    assert not overlapped["pytest_loaded"], "the certification core imported pytest"
    assert overlapped["overlap"] == 2
    jsonschema.validate(overlapped["record"], _schema())
    assert overlapped["record"]["options"]["hypothesis"]["seed"] == 7


def test_certify_says_its_time_plan_once_calibrated(overlapped: dict[str, Any]) -> None:
    """The calibration, the budgets and the estimate reach the caller (the CLI prints them) before the checks."""
    said = overlapped["progress"]
    assert said and said[0].startswith("calibrated: round trip "), said
    assert any(line.startswith("budgets: event ") for line in said), said
    assert any(line.startswith("plan: ") and " if it passes" in line for line in said), said


def test_serial_and_overlapped_runs_of_one_seed_agree(overlapped: dict[str, Any]) -> None:
    serial = certify_in_a_fresh_process("reference_executors.LocalExecutor", seed=7, overlap=1)
    assert serial["overlap"] == 1
    assert serial["outcomes"] == overlapped["outcomes"]


@pytest.mark.parametrize("executor", ["tests.broken_executors.ReversedPriority",
                                      "tests.broken_executors.DoubleSync"])
def test_a_broken_executor_is_caught_the_same_way_serial_and_overlapped(executor: str) -> None:
    """The contract checks' verdicts (not the state machine's, whose lanes explore other programmes than
    one instance does) are the same whichever process ran them."""
    runs = [certify_in_a_fresh_process(executor, seed=11, overlap=n, inherited=False) for n in (1, 3)]
    assert all(run["verdict"] == "NOT CERTIFIED" for run in runs)
    contract = [{cid: o for cid, o in run["outcomes"].items() if not cid.startswith("stateful.")} for run in runs]
    assert contract[0] == contract[1]
    assert "failed" in contract[0].values()


def test_the_ceiling_makes_what_it_cuts_inconclusive_never_failed_or_passed() -> None:
    """A backend with a 1 s latency and a ceiling of 9 s: the run cannot finish. What the ceiling cut is
    inconclusive with one cause; nothing is failed for it, and the verdict is not a certificate."""
    run = certify_in_a_fresh_process("tests.slow_backend.SlowReferenceLocal", seed=3, max_minutes=0.15, overlap=2,
                                     executor_kwargs={"latency": 1.0})
    outcomes = run["outcomes"]
    assert run["verdict"] == "NOT CERTIFIED"
    assert "failed" not in outcomes.values(), {c: run["messages"][c] for c, o in outcomes.items() if o == "failed"}
    cut = [cid for cid, o in outcomes.items() if o == "inconclusive"]
    assert cut and all(run["causes"][cid] == "the --max-minutes ceiling was reached" for cid in cut)
    assert outcomes["stateful.scheduler_action_sequences"] == "inconclusive"
    # The ceiling holds: certify() returns within it plus the documented grace for work in flight and the
    # workers' shutdown (a functional bound of the flag, not a performance figure).
    from conformance.harness.timing import CEILING_GRACE

    assert run["elapsed"] <= 0.15 * 60 + CEILING_GRACE + 30, run["elapsed"]
    # Once calibrated, the plan names the ceiling (on a busy machine the ceiling may cut the calibration
    # itself: then there is no plan to say, and every check is not started).
    if run["progress"]:
        assert any(line.startswith("ceiling: ") for line in run["progress"]), run["progress"]


def test_bad_input_is_one_line() -> None:
    from conformance import CertifyOptions
    from conformance.harness.profile import ProfileError

    with pytest.raises(ProfileError, match=r"unknown check id\(s\) in checks: heartbeat\.priority_ordr \(did you mean"):
        CertifyOptions(checks=("heartbeat.priority_ordr",))
    with pytest.raises(ProfileError, match="--max-minutes must be greater than 0"):
        CertifyOptions(max_minutes=0)
    with pytest.raises(ProfileError, match="overlap must be at least 1"):
        CertifyOptions(overlap=0)


def test_lanes_share_the_exploration_budget_only_where_it_holds_several_floors() -> None:
    from conformance.certification.core import lanes_for
    from conformance.harness.context import RunOptions
    from conformance.harness.timing import Calibration, TimeModel

    fast = RunOptions(time=TimeModel(calibration=Calibration(round_trip=0.05)))
    remote = RunOptions(time=TimeModel(calibration=Calibration(round_trip=5.0)))
    assert lanes_for(fast, 4) == 1  # the floor already: splitting would only take workers from other checks
    assert lanes_for(remote, 4) == 4 and lanes_for(remote, 2) == 2


class _Declares:  # stands for an executor class: rebuildable() reads only its module and name
    pass


def test_declared_capabilities_travel_to_the_workers_and_objects_stay_home() -> None:
    from types import SimpleNamespace

    from conformance.certification.overlap import rebuildable

    declared = SimpleNamespace(executor_class=_Declares, executor_kwargs={"slots": 2}, factory=None, backend=None,
                               capabilities={"adoption": False})
    rebuild = rebuildable(declared, {})
    assert rebuild is not None and rebuild.path == f"{__name__}._Declares"
    assert rebuild.kwargs == {"slots": 2} and rebuild.capabilities == {"adoption": False}
    assert rebuildable(SimpleNamespace(**{**vars(declared), "factory": lambda: None}), {}) is None
    assert rebuildable(SimpleNamespace(**{**vars(declared), "executor_kwargs": {"x": object()}}), {}) is None
    assert rebuildable("pkg.mod.Executor", {"a": 1}) == ("pkg.mod.Executor", {"a": 1}, {})


def test_merged_lanes_keep_the_evidence_of_a_failing_lane() -> None:
    from conformance.certification.core import merge_lanes
    from conformance.harness.outcomes import CheckResult, Outcome

    sid = "stateful.scheduler_action_sequences"
    passed = CheckResult(sid, Outcome.PASSED, "explored 3 programmes", 2.0)
    failed = CheckResult(sid, Outcome.FAILED, "SPEC PROP 3: ...", 1.0, cause="x")
    unknown = CheckResult(sid, Outcome.INCONCLUSIVE, "cut", 3.0)
    assert merge_lanes([passed, failed, unknown]).message == "SPEC PROP 3: ..."
    assert merge_lanes([passed, unknown]).outcome is Outcome.INCONCLUSIVE
    both = merge_lanes([passed, passed])
    assert both.outcome is Outcome.PASSED and both.message.count("explored 3 programmes") == 2
    assert both.seconds == 2.0


def test_the_cli_certifies_through_the_core_with_progress_and_a_log(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONFORMANCE_", "PYTEST_", "COV"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    report = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "certify", "reference_executors.SequentialExecutor",
                           "--report", str(report), "--seed", "5", "--max-minutes", "30"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "  passed          heartbeat.priority_order (" in out  # one progress line per check
    assert "VERDICT: reference_executors.SequentialExecutor is CERTIFIED (contract tier)" in out
    assert "test session starts" not in out  # not a pytest session
    assert (report / "certify.log").is_file() and (report / "report.json").is_file()
    record = json.loads((report / "report.json").read_text())
    assert record["options"]["max_minutes"] == 30 and record["options"]["hypothesis"]["seed"] == 5
