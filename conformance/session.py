"""One certification run inside pytest: sandbox, profile, capabilities, results, summary, report.

Registered as a pytest plugin object by ``conformance.plugin`` when an executor is given. Under
pytest-xdist every worker has its own session (and sandbox); the controller's session receives every
test report, so the summary and the report files are assembled there.
"""

from __future__ import annotations

import platform
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import conformance
from conformance import catalog
from conformance.profile import ExecutorProfile, ProfileError, check_constructible, load_backend_driver
from conformance.sandbox import Sandbox

STATUS_ORDER = ("passed", "failed", "not supported", "not applicable", "expected failure", "advice")


def start_session(config: pytest.Config, dotted: str, kwargs_json: str | None,
                  expected_failures: dict[str, str], backend_driver: str | None = None) -> ConformanceSession:
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
    _export_stateful_settings(config, report_dir)
    session = ConformanceSession(profile, sandbox, Path(report_dir) if report_dir else None,
                                 is_worker=hasattr(config, "workerinput"))
    session.selected = set(selected)
    return session


def _export_stateful_settings(config: pytest.Config, report_dir: str | None) -> None:
    """The state machine reads its profile and reproducer directory from the environment, so that
    xdist workers (which inherit it) and the runner-agnostic core agree without pytest plumbing."""
    import os

    from conformance.checks.stateful import ENV_REPRODUCER_DIR
    from conformance.stateful import ENV_PROFILE

    profile = config.getoption("--conformance-hypothesis-profile")
    if profile:
        os.environ[ENV_PROFILE] = profile
    if report_dir:
        reproducers = Path(report_dir).resolve() / "reproducers"
        shutil.rmtree(reproducers, ignore_errors=True)  # only this run's reproducers belong next to its report
        os.environ[ENV_REPRODUCER_DIR] = str(reproducers)


def validate_check_ids(ids: Any, where: str) -> None:
    known = catalog.load()
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise ProfileError(f"unknown check id(s) in {where}: {', '.join(unknown)} "
                           f"(see `executor-conformance checks`)")


class ConformanceSession:
    def __init__(self, profile: ExecutorProfile, sandbox: Sandbox, report_dir: Path | None, is_worker: bool):
        self.profile = profile
        self.sandbox = sandbox
        self.report_dir = report_dir
        self.is_worker = is_worker
        self.results: dict[str, dict[str, Any]] = {}
        self.selected: set[str] = set()

    # -- pytest hooks ------------------------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        from conformance import airflow_compat as compat

        return [f"executor-conformance {conformance.__version__}: certifying {self.profile.label} on "
                f"Airflow {compat.version_string()} (sandbox {self.sandbox.root})"]

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
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
            spec = catalog.get(check_id)
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
        if check_id is None or (report.when != "call" and not (report.failed or report.skipped)):
            return
        if report.when == "teardown" and check_id in self.results and not report.failed:
            return
        status = _status(report, props)
        message = props.get("advice") or _message(report)
        self.results[check_id] = {"status": status, "message": message,
                                  "seconds": round(report.duration, 3)}

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
        verdict = self.verdict()
        write(f"VERDICT: {self.profile.label} is {'CERTIFIED' if verdict else 'NOT CERTIFIED'} "
              f"({self._counts()})")
        if self.report_dir is not None and not self.is_worker:
            from conformance.report import write_report

            paths = write_report(self.report_dir, self.build_report())
            write(f"report written: {', '.join(str(p) for p in paths)}")

    # -- results -----------------------------------------------------------------------------------
    def verdict(self) -> bool:
        return bool(self.results) and not any(r["status"] == "failed" for r in self.results.values())

    def _counts(self) -> str:
        counts = Counter(r["status"] for r in self.results.values())
        return ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if counts[s])

    def build_report(self) -> dict[str, Any]:
        from conformance import airflow_compat as compat

        checks = []
        for check_id in sorted(self.results):
            spec = catalog.get(check_id)
            checks.append({"id": check_id, "area": spec.area, "clause": spec.clause, "title": spec.title,
                           **self.results[check_id]})
        return {
            "suite_version": conformance.__version__,
            "airflow_version": compat.version_string(),
            "python_version": platform.python_version(),
            "executor": self.profile.label,
            "capabilities": self.profile.capability_set(),
            "expected_failures": self.profile.expected_failures,
            "certified": self.verdict(),
            "counts": dict(Counter(r["status"] for r in self.results.values())),
            "checks": checks,
        }

    def close(self) -> None:
        self.sandbox.deactivate()


def _e2e_requested(config: pytest.Config) -> bool:
    """The e2e tier is opt-in: ``--e2e``, or a ``-m`` expression that names it."""
    return bool(config.getoption("--e2e")) or "e2e" in str(config.getoption("markexpr", "") or "")


def _check_id_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    value = callspec.params.get("check_id")
    return value if isinstance(value, str) else None


def _status(report: pytest.TestReport, props: dict[str, Any]) -> str:
    if hasattr(report, "wasxfail"):
        return "expected failure" if report.skipped else "failed"
    if report.failed:
        return "failed"
    if report.skipped:
        reason = _message(report)
        return "not applicable" if "not applicable" in reason else "not supported"
    return "advice" if props.get("advice") else "passed"


def _message(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext if report.failed else ""
