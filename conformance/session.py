"""One certification run inside pytest: sandbox, profile, run options, results, summary, report.

Registered as a pytest plugin object by ``conformance.plugin`` when an executor is given. Under
pytest-xdist every worker has its own session (and sandbox, and calibration); the controller's session
receives every test report, so the summary and the report files are assembled there. Outcomes travel
as data on the report (``user_properties``), never parsed back from skip text.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import conformance
from conformance import checks
from conformance.context import RunOptions
from conformance.inherited import Inherited
from conformance.outcomes import CheckResult, Outcome
from conformance.preflight import PreflightResult
from conformance.profile import ExecutorProfile, ProfileError, check_constructible, load_backend_driver
from conformance.sandbox import Sandbox
from conformance.timing import TimeModel

STATUS_ORDER = ("passed", "failed", "inconclusive", "not run", "not supported", "not applicable",
                "expected failure", "advice")
OUTCOME_PROPERTY = "conformance_outcome"
MESSAGE_PROPERTY = "conformance_message"
LEAKS_PROPERTY = "conformance_leaks"
CAUSE_PROPERTY = "conformance_cause"
_WORKER_LEFTOVERS = "conformance_leftovers"


def start_session(config: pytest.Config, dotted: str, kwargs_json: str | None,
                  expected_failures: dict[str, str], backend_driver: str | None = None,
                  time_scale: float = 1.0) -> ConformanceSession:
    # The sandbox first: AIRFLOW_HOME must be set before the executor's module imports Airflow.
    sandbox = Sandbox.create().activate()
    try:
        profile = ExecutorProfile.from_path(dotted, kwargs_json)
        if backend_driver:
            profile.backend = load_backend_driver(backend_driver)
        profile.expected_failures.update(expected_failures)
        validate_check_ids(profile.expected_failures, "expected failures")
        selected = [c.strip() for c in (config.getoption("--checks") or "").split(",") if c.strip()]
        validate_check_ids(selected, "--checks")
        check_constructible(profile)
    except Exception:
        sandbox.deactivate()
        raise
    report_dir = config.getoption("--conformance-report")
    reproducers = None
    if report_dir:
        reproducers = Path(report_dir).resolve() / "reproducers"
        if not hasattr(config, "workerinput"):
            shutil.rmtree(reproducers, ignore_errors=True)  # only this run's reproducers belong next to its report
    options = RunOptions(time=TimeModel(scale=time_scale * profile.time_scale),
                         hypothesis_profile=config.getoption("--conformance-hypothesis-profile") or "ci",
                         reproducer_dir=reproducers)
    session = ConformanceSession(profile, sandbox, Path(report_dir) if report_dir else None,
                                 is_worker=hasattr(config, "workerinput"), options=options)
    session.selected = set(selected)
    _stop_cleanly_on_sigterm()
    return session


def _stop_cleanly_on_sigterm() -> None:
    """SIGTERM (a CI runner cancelling the job) unwinds like Ctrl-C: pytest finishes the session and
    the sandbox ends every process of the run, instead of the interpreter dying with them alive."""
    if threading.current_thread() is threading.main_thread():
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, interrupt)


def validate_check_ids(ids: Any, where: str) -> None:
    known = checks.catalogue()
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise ProfileError(f"unknown check id(s) in {where}: {', '.join(unknown)} "
                           f"(see `executor-conformance checks`)")


class ConformanceSession:
    def __init__(self, profile: ExecutorProfile, sandbox: Sandbox, report_dir: Path | None, is_worker: bool,
                 options: RunOptions | None = None):
        self.profile = profile
        self.sandbox = sandbox
        self.report_dir = report_dir
        self.is_worker = is_worker
        self.results: dict[str, dict[str, Any]] = {}
        self.selected: set[str] = set()
        self.leftovers: list[str] = []
        self._options = options or RunOptions()
        self._calibrated = False
        self._capabilities: dict[str, bool] | None = None
        self.preflight: PreflightResult | None = None
        self._inherited: Inherited | None = None
        self._inherited_done = False

    # -- what every check of this session shares (computed on first use, in each worker) ----------
    def run_options(self) -> RunOptions:
        """The run options with a time model calibrated by the preflight (once per worker session)."""
        if not self._calibrated:
            from dataclasses import replace

            from conformance.preflight import run_preflight

            self.preflight = run_preflight(self.profile, self.sandbox, self._options.time)
            self._options = replace(self._options, time=self._options.time.calibrated(self.preflight.calibration))
            self._calibrated = True
        return self._options

    def preflight_diagnosis(self) -> str:
        self.run_options()
        return self.preflight.diagnosis if self.preflight is not None else ""

    def capabilities(self) -> dict[str, bool]:
        if self._capabilities is None:
            from conformance.confirm import confirmed_capabilities

            options = self.run_options()
            if self.preflight_diagnosis():  # the executor cannot run a no-op task: take the class's word
                self._capabilities = self.profile.capability_set()
            else:
                self._capabilities = confirmed_capabilities(self.profile, self.sandbox, options.time)
        return self._capabilities

    # -- pytest hooks ------------------------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        from conformance import airflow_compat as compat

        return [f"executor-conformance {conformance.__version__}: certifying {self.profile.label} on "
                f"Airflow {compat.version_string()} (sandbox {self.sandbox.root})"]

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        from conformance.checks.preflight import PREFLIGHT_ID

        items.sort(key=lambda i: _check_id_of(i) != PREFLIGHT_ID)  # the preflight first (stable otherwise)
        e2e = _e2e_requested(config)
        if self.selected or not e2e:
            kept = [i for i in items if _check_id_of(i) is None
                    or (_check_id_of(i) in self.selected if self.selected
                        else e2e or not str(_check_id_of(i)).startswith("e2e."))]
            dropped = [i for i in items if i not in kept]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
                items[:] = kept
        for item in items:
            check_id = _check_id_of(item)
            if check_id is None:
                continue
            spec = checks.get(check_id)
            item.add_marker(getattr(pytest.mark, spec.area))
            if spec.area == "e2e":  # one deployment per worker: keep the e2e checks together under xdist
                item.add_marker(pytest.mark.xdist_group("executor-conformance-e2e"))
            item.add_marker(pytest.mark.conformance_check(check_id))
            item.extra_keyword_matches.add(check_id)
            item.user_properties += [("check_id", check_id), ("clause", spec.clause)]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = {str(k): v for k, v in report.user_properties}
        check_id = props.get("check_id")
        if not isinstance(check_id, str):
            return
        outcome = props.get(OUTCOME_PROPERTY)
        if report.when == "call" or (report.failed and check_id not in self.results):
            status = _status(report, outcome)
            message = _message(report) if hasattr(report, "wasxfail") else (props.get(MESSAGE_PROPERTY)
                                                                             or _message(report))
            self.results[check_id] = {"status": status, "message": message, "seconds": round(report.duration, 3),
                                      "leaks": _strings(props.get(LEAKS_PROPERTY)),
                                      "cause": str(props.get(CAUSE_PROPERTY) or "")}
        elif report.failed and report.when == "teardown":
            self.results[check_id]["status"] = "failed"
            self.results[check_id]["message"] += "\n" + _message(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """End every process of the run before the summary, so that leftovers are in it."""
        found = [p.describe() for p in self.sandbox.sweep_processes(include_shared_helpers=True, wait=False)]
        self.leftovers += found
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[_WORKER_LEFTOVERS] = found

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self.leftovers += list(getattr(node, "workeroutput", {}).get(_WORKER_LEFTOVERS, []))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        write = terminalreporter.write_line
        terminalreporter.section("executor conformance")
        by_area: dict[str, Counter[str]] = {}
        for check_id, result in self.results.items():
            by_area.setdefault(check_id.split(".")[0], Counter())[result["status"]] += 1
        write(f"{'area':<12} " + " ".join(f"{s:>16}" for s in STATUS_ORDER))
        for area in sorted(by_area):
            write(f"{area:<12} " + " ".join(f"{by_area[area][s]:>16}" for s in STATUS_ORDER))
        if self.preflight is not None and self.preflight.diagnosis:
            write(f"PREFLIGHT FAILED (nothing else was run): {self.preflight.diagnosis}")
        for group in self.failure_groups():
            write(f"{len(group['checks'])} checks share one cause (fix it first): {group['cause']}")
            write(f"    {', '.join(group['checks'])}")
        for check_id, result in sorted(self.results.items()):
            for leak in result.get("leaks", []):
                write(f"late work (ran after its check had ended), seen during {check_id}: {leak}")
        for leftover in self.leftovers:
            write(f"process left running at the end of the session (ended by the suite): {leftover}")
        inherited = self.inherited()
        if inherited is not None:
            write(f"Inherited: {inherited.base_path} fails {len(inherited.check_ids)} of these checks too (same "
                  f"session): {', '.join(inherited.check_ids)}")
            write("  They are your base class's deviations (see the suite's reports/FINDINGS.md). To certify your "
                  "own code, paste under [tool.executor-conformance] in pyproject.toml:")
            write(f"  {inherited.expected_failures_toml()}")
        verdict = self.verdict()
        write(f"VERDICT: {self.profile.label} is {'CERTIFIED' if verdict else 'NOT CERTIFIED'} "
              f"({self._counts()})")
        if any(r["status"] == "inconclusive" for r in self.results.values()):
            write("Inconclusive checks ran out of time while the backend was still making progress: re-run "
                  "with a larger --conformance-time-scale (a certificate needs none).")
        if self.report_dir is not None and not self.is_worker:
            from conformance.report import write_report

            paths = write_report(self.report_dir, self.build_report())
            write(f"report written: {', '.join(str(p) for p in paths)}")

    # -- results -----------------------------------------------------------------------------------
    def verdict(self) -> bool:
        """Certified: something ran, nothing failed, nothing was inconclusive or left unrun."""
        return bool(self.results) and not any(r["status"] in ("failed", "inconclusive", "not run")
                                              for r in self.results.values())

    def inherited(self) -> Inherited | None:
        """Failures the executor's Airflow base class has too (computed once, on the controller)."""
        if self.is_worker:
            return None
        if not self._inherited_done:
            from conformance.inherited import inherited_failures

            failed = sorted(c for c, r in self.results.items() if r["status"] == "failed")
            self._inherited = (inherited_failures(self.profile, self.sandbox, self.run_options(), failed)
                               if failed and not self.preflight_diagnosis() else None)
            self._inherited_done = True
        return self._inherited

    def failure_groups(self) -> list[dict[str, Any]]:
        """Failures (and checks not run) that share a root cause, largest group first."""
        groups: dict[str, list[str]] = {}
        for check_id, result in sorted(self.results.items()):
            if result["status"] in ("failed", "not run", "inconclusive") and result.get("cause"):
                groups.setdefault(result["cause"], []).append(check_id)
        return [{"cause": cause, "checks": ids}
                for cause, ids in sorted(groups.items(), key=lambda g: -len(g[1])) if len(ids) > 1]

    def _counts(self) -> str:
        counts = Counter(r["status"] for r in self.results.values())
        return ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if counts[s])

    def build_report(self) -> dict[str, Any]:
        from conformance import airflow_compat as compat

        entries = []
        for check_id in sorted(self.results):
            spec = checks.get(check_id)
            entries.append({"id": check_id, "area": spec.area, "clause": spec.clause, "title": spec.title,
                            **self.results[check_id]})
        return {
            "suite_version": conformance.__version__,
            "airflow_version": compat.version_string(),
            "python_version": platform.python_version(),
            "executor": self.profile.label,
            "capabilities": self.capabilities(),
            "expected_failures": self.profile.expected_failures,
            "certified": self.verdict(),
            "counts": dict(Counter(r["status"] for r in self.results.values())),
            "time_model": self._options.time.as_dict() if self._calibrated else None,
            "preflight": self.preflight.diagnosis or "passed" if self.preflight is not None else None,
            "failure_groups": self.failure_groups(),
            "inherited_failures": ({"base": inh.base_path, "checks": inh.check_ids}
                                   if (inh := self.inherited()) is not None else None),
            "leftover_processes": self.leftovers,
            "checks": entries,
        }

    def close(self) -> None:
        self.sandbox.deactivate()


def record(item: pytest.Item, result: CheckResult) -> None:
    """Attach a check's outcome to its test item as data (it travels to the xdist controller)."""
    item.user_properties += [(OUTCOME_PROPERTY, result.outcome.value), (MESSAGE_PROPERTY, result.message),
                             (LEAKS_PROPERTY, list(result.leaks)), (CAUSE_PROPERTY, result.cause)]


def _e2e_requested(config: pytest.Config) -> bool:
    """The e2e tier is opt-in: ``--e2e``, or a ``-m`` expression that names it."""
    return bool(config.getoption("--e2e")) or "e2e" in str(config.getoption("markexpr", "") or "")


def _check_id_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    value = callspec.params.get("check_id")
    return value if isinstance(value, str) else None


def _status(report: pytest.TestReport, outcome: Any) -> str:
    if hasattr(report, "wasxfail"):
        return "expected failure" if report.skipped else "failed"
    if isinstance(outcome, str) and outcome in {o.value for o in Outcome}:
        if outcome == Outcome.PASSED.value and report.failed:
            return "failed"  # e.g. an expected failure that passed
        return outcome
    return "failed" if report.failed else "passed"


def _strings(value: Any) -> list[str]:
    return [str(x) for x in value] if isinstance(value, (list, tuple)) else []


def _message(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext if report.failed else ""
