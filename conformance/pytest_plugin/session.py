"""One certification run inside pytest: sandbox, profile, run options, results, summary, report.

Registered as a pytest plugin object by ``conformance.pytest_plugin.plugin`` when an executor is given. Under
pytest-xdist every worker has its own session (and sandbox, and calibration); the controller's session
receives every test report, so the summary and the report files are assembled there. Outcomes travel
as data on the report (``user_properties``), never parsed back from skip text.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import conformance
from conformance import checks
from conformance.certification.certificate import Certificate, executor_package
from conformance.certification.inherited import Inherited
from conformance.certification.options import validate_check_ids
from conformance.certification.preflight import PreflightResult
from conformance.groundtruth.sandbox import Sandbox
from conformance.harness.context import RunOptions
from conformance.harness.outcomes import CheckResult, Outcome
from conformance.harness.profile import (
    ExecutorProfile,
    ProfileError,
    check_constructible,
    load_backend_driver,
    parse_kwargs,
)
from conformance.harness.timing import TimeModel

OUTCOME_PROPERTY = "conformance_outcome"
MESSAGE_PROPERTY = "conformance_message"
LEAKS_PROPERTY = "conformance_leaks"
CAUSE_PROPERTY = "conformance_cause"
RUN_PROPERTY = "conformance_run"
_WORKER_LEFTOVERS = "conformance_leftovers"


@dataclass(frozen=True)
class SessionSettings:
    """What the user asked for, read once from the command line, ini and pyproject by the plugin."""

    executor: str | None = None
    executor_kwargs: str | None = None
    backend_driver: str | None = None
    expected_failures: dict[str, str] = field(default_factory=dict)
    time_scale: float = 1.0
    report_dir: Path | None = None
    checks: tuple[str, ...] = ()
    strict: bool = False
    seed: int | None = None
    hypothesis_profile: str = "ci"
    e2e: bool = False
    coverage: bool = False
    max_minutes: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The options a certificate records (enough to re-run it the same way)."""
        return {"executor_kwargs": parse_kwargs(self.executor_kwargs), "backend_driver": self.backend_driver,
                "time_scale": self.time_scale, "strict": self.strict, "e2e": self.e2e, "coverage": self.coverage,
                "max_minutes": self.max_minutes, "overlap": None,
                "hypothesis": {"profile": self.hypothesis_profile, "seed": self.seed},
                "expected_failures": dict(self.expected_failures)}


def validate_settings(settings: SessionSettings) -> None:
    """Bad input that needs no Airflow, reported before the executor's module (and Airflow) is imported."""
    validate_check_ids(settings.expected_failures, "expected failures")
    validate_check_ids(settings.checks, "--checks")
    parse_kwargs(settings.executor_kwargs)


def start_session(config: pytest.Config, settings: SessionSettings) -> ConformanceSession:
    """A certification of ``settings.executor`` (``--executor`` or ``--conformance``)."""
    assert settings.executor
    validate_settings(settings)
    # The sandbox first: AIRFLOW_HOME must be set before anything imports Airflow -- the executor's
    # module, and coverage, which imports the parent packages of what it measures (airflow.executors).
    sandbox = Sandbox.create().activate()
    cov = None
    if settings.coverage:  # before the executor's module is imported, so that its import counts
        from conformance.reporting import executor_coverage

        if not hasattr(config, "workerinput"):  # the controller prepares; xdist workers inherit the environment
            executor_coverage.prepare(executor_coverage.measured_package(settings.executor))
        cov = executor_coverage.start_here()
    try:
        # The backend before the executor's module: a driver that brings its backend up configures the
        # executor's connection settings, which some executors read at import (Celery builds its app).
        # An xdist controller runs no check: only the workers bring a backend up, each its own.
        backend = None
        if settings.backend_driver and _runs_checks_here(config):
            backend = load_backend_driver(settings.backend_driver)
        profile = ExecutorProfile.from_path(settings.executor, settings.executor_kwargs)
        profile.backend = backend
        profile.expected_failures.update(settings.expected_failures)
        check_constructible(profile)
    except Exception:
        sandbox.deactivate()
        raise
    session = ConformanceSession(config, settings)
    session.coverage_here = cov
    session.bind(profile, sandbox)
    session.previous_sigterm = _stop_cleanly_on_sigterm()
    return session


def _runs_checks_here(config: pytest.Config) -> bool:
    """False for an xdist controller (its workers run the checks)."""
    return hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None)


def deferred_session(config: pytest.Config, settings: SessionSettings) -> ConformanceSession:
    """A certification whose profile comes from a conftest ``executor_profile`` fixture: bound when
    the first check asks for it (on an xdist controller, never; the workers' reports carry the run)."""
    validate_settings(settings)
    return ConformanceSession(config, settings)


def _stop_cleanly_on_sigterm() -> Any:
    """SIGTERM (a CI runner cancelling the job) unwinds like Ctrl-C: pytest finishes the session and
    the sandbox ends every process of the run, instead of the interpreter dying with them alive.
    Returns the handler it replaced (restored when the session closes), or None."""
    if threading.current_thread() is threading.main_thread():
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        with contextlib.suppress(ValueError):
            previous = signal.signal(signal.SIGTERM, interrupt)
            _forget_handler_in_children(previous)
            return previous
    return None


_FORK_HOOKED = False


def _forget_handler_in_children(previous: Any) -> None:
    """An executor's worker forked from this process must not inherit the suite's SIGTERM handler (a suite
    frame in the executor's traceback, a worker that unwinds instead of stopping): children get back what
    was there before the session."""
    global _FORK_HOOKED
    if _FORK_HOOKED or not hasattr(os, "register_at_fork"):
        return
    restored = previous if previous is not None else signal.SIG_DFL

    def in_child() -> None:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, restored)

    os.register_at_fork(after_in_child=in_child)
    _FORK_HOOKED = True


class ConformanceSession:
    """One certification run, registered as a pytest plugin (on the controller and on each xdist worker).

    Bound to a profile and a sandbox either at start-up (``--executor``) or by the first check that
    asks (a conftest ``executor_profile``); an xdist controller is never bound in the conftest route:
    what the checks ran with travels on their reports (``RUN_PROPERTY``)."""

    def __init__(self, config: pytest.Config, settings: SessionSettings):
        self.config = config
        self.settings = settings
        self.report_dir = settings.report_dir
        self.is_worker = hasattr(config, "workerinput")
        self.profile: ExecutorProfile | None = None
        self.sandbox: Sandbox | None = None
        self.results: dict[str, CheckResult] = {}
        self.run: dict[str, Any] = {}
        self.leftovers: list[str] = []
        self.selected: set[str] = set(settings.checks)
        self.deselected = 0
        self.started = datetime.now(timezone.utc)
        self._options = RunOptions()
        self._calibrated = False
        self._capabilities: dict[str, bool] | None = None
        self.preflight: PreflightResult | None = None
        self._inherited: Inherited | None = None
        self._inherited_done = False
        self.coverage_here: Any = None  # this process's coverage measurement (--conformance-coverage)
        self.previous_sigterm: Any = None
        self.coverage_result: dict[str, Any] | None = None

    def bind(self, profile: ExecutorProfile, sandbox: Sandbox) -> None:
        import hypothesis.configuration

        from conformance.harness import timing

        if self.settings.max_minutes:
            if not self.settings.max_minutes > 0:
                raise ProfileError(f"--conformance-max-minutes must be greater than 0, got {self.settings.max_minutes}")
            timing.set_ceiling(self.started.timestamp() + self.settings.max_minutes * 60)

        self.profile, self.sandbox = profile, sandbox
        # hypothesis keeps a folder of its own (.hypothesis/); a certification writes nothing in the user's folder
        hypothesis.configuration.set_hypothesis_home_dir(str(sandbox.root / "hypothesis"))
        reproducers = None
        if self.report_dir is not None:
            reproducers = self.report_dir.resolve() / "reproducers"
            if not self.is_worker:
                shutil.rmtree(reproducers, ignore_errors=True)  # only this run's reproducers belong with its report
        seed = self.settings.seed if self.settings.seed is not None else random.SystemRandom().randrange(2**32)
        self._options = RunOptions(time=TimeModel(scale=self.settings.time_scale * profile.time_scale),
                                   hypothesis_profile=self.settings.hypothesis_profile, seed=seed,
                                   reproducer_dir=reproducers)

    # -- what every check of this session shares (computed on first use, in each worker) ----------
    def _bound(self) -> tuple[ExecutorProfile, Sandbox]:
        if self.profile is None or self.sandbox is None:
            raise RuntimeError("the conformance session has no executor profile yet")
        return self.profile, self.sandbox

    def run_options(self) -> RunOptions:
        """The run options with a time model calibrated by the preflight (once per worker session)."""
        if not self._calibrated:
            from conformance.certification.preflight import run_preflight

            profile, sandbox = self._bound()
            # Whatever of this session runs before the first executor is built -- a conftest fixture's
            # workers, a backend driver's daemons -- is the user's environment: isolation never ends it.
            sandbox.declare_present_as_environment()
            self.preflight = run_preflight(profile, sandbox, self._options.time)
            self._options = replace(self._options, time=self._options.time.calibrated(self.preflight.calibration))
            self._calibrated = True
        return self._options

    def preflight_diagnosis(self) -> str:
        """The preflight's diagnosis when it stops the run (no task can complete), else empty."""
        self.run_options()
        return self.preflight.diagnosis if self.preflight is not None and self.preflight.stops_the_run else ""

    def preflight_cut(self) -> bool:
        """Whether the run's ceiling ended the preflight (then nothing was judged)."""
        self.run_options()
        return self.preflight is not None and self.preflight.cut

    def preflight_teardown(self) -> tuple[str, ...]:
        """What tearing the preflight down found (reported as LIFE-7's / LIFE-1's finding)."""
        self.run_options()
        return self.preflight.teardown if self.preflight is not None else ()

    def preflight_finding(self) -> str:
        """The preflight's diagnosis, also one that lets the other checks run."""
        self.run_options()
        return self.preflight.diagnosis if self.preflight is not None else ""

    def capabilities(self) -> dict[str, bool]:
        if self._capabilities is None:
            from conformance.certification.confirm import confirmed_capabilities

            options = self.run_options()
            profile, sandbox = self._bound()
            if self.preflight_diagnosis():  # the executor cannot run a no-op task: take the class's word
                self._capabilities = profile.capability_set()
            else:
                self._capabilities = confirmed_capabilities(profile, sandbox, options.time)
        return self._capabilities

    def run_info(self) -> dict[str, Any]:
        """What this worker's checks ran with; attached to every check's report for the controller."""
        profile, _ = self._bound()
        options = self.run_options()
        return {"executor": profile.label, "executor_package": executor_package(profile.label),
                "capabilities": dict(self.capabilities()), "time_model": options.time.as_dict(),
                "preflight": self.preflight_diagnosis() or "passed", "seed": options.seed,
                "expected_failures": dict(profile.expected_failures)}

    # -- pytest hooks ------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        """While a check runs in this process and pytest writes to a terminal here (no xdist), a long
        wait shows a live line: which check, what it waits for, how much of its budget is spent."""
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")
        check_id = check_id_of(item)
        if reporter is None or check_id is None or self.is_worker or not reporter.isatty():
            return (yield)
        from conformance.harness import timing

        def show(what: str, waited: float, budget: float) -> None:
            reporter.write_line(f"  ... {check_id}: waiting {waited:.0f}s of {budget:.0f}s for {what}", cyan=True)

        timing.LONG_WAIT_LISTENERS.append(show)
        try:
            return (yield)
        finally:
            timing.LONG_WAIT_LISTENERS.remove(show)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        from conformance.harness import airflow_compat as compat

        what = self.profile.label if self.profile is not None else "the conftest's executor_profile"
        return [f"executor-conformance {conformance.__version__}: certifying {what} on "
                f"Airflow {compat.version_string()}"
                + (f" (sandbox {self.sandbox.root})" if self.sandbox is not None else "")]

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        from conformance.checks.preflight import PREFLIGHT_ID

        items.sort(key=lambda i: check_id_of(i) != PREFLIGHT_ID)  # the preflight first (stable otherwise)
        e2e = self.settings.e2e
        if self.selected or not e2e:
            kept = [i for i in items if check_id_of(i) is None
                    or (check_id_of(i) in self.selected if self.selected
                        else e2e or not str(check_id_of(i)).startswith("e2e."))]
            dropped = [i for i in items if i not in kept]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
                items[:] = kept
        for item in items:
            check_id = check_id_of(item)
            if check_id is None:
                continue
            spec = checks.get(check_id)
            item.add_marker(getattr(pytest.mark, spec.area))
            if spec.area == "e2e":  # one deployment per worker: keep the e2e checks together under xdist
                item.add_marker(pytest.mark.xdist_group("executor-conformance-e2e"))
            item.add_marker(pytest.mark.conformance_check(check_id))
            item.extra_keyword_matches.add(check_id)
            item.user_properties += [("check_id", check_id), ("clause", spec.clause)]

    @pytest.hookimpl(trylast=True)  # after junitxml has opened the report's test case (see _junit_names)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = {str(k): v for k, v in report.user_properties}
        check_id = props.get("check_id")
        if not isinstance(check_id, str):
            return
        if report.when == "call" or not report.passed:  # the phases junitxml writes a test case for
            _junit_names(self.config, report, check_id)
        run = props.get(RUN_PROPERTY)
        if isinstance(run, dict):
            self._merge_run(run)
        outcome = props.get(OUTCOME_PROPERTY)
        if report.when == "call" or (report.failed and check_id not in self.results):
            status = _status(report, outcome)
            message = str(props.get(MESSAGE_PROPERTY) or _message(report))
            self.results[check_id] = CheckResult(check_id, Outcome(status), message, round(report.duration, 3),
                                                 leaks=_strings(props.get(LEAKS_PROPERTY)),
                                                 cause=str(props.get(CAUSE_PROPERTY) or ""))
        elif report.failed and report.when == "teardown":
            result = self.results[check_id]
            result.outcome = Outcome.FAILED
            result.message += "\n" + _message(report)

    def _merge_run(self, run: dict[str, Any]) -> None:
        seeds = set(self.run.get("seeds", [])) | ({run["seed"]} if run.get("seed") is not None else set())
        self.run = {**run, **{k: v for k, v in self.run.items() if v}, "seeds": sorted(seeds)}

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += sum(1 for i in items if check_id_of(i) is not None)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """End every process of the run before the summary, so that leftovers are in it; a worker saves
        its coverage data before the controller combines it."""
        if self.sandbox is None:
            return
        found = self.sandbox.session_leftovers()
        self.leftovers += found
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[_WORKER_LEFTOVERS] = found
            from conformance.reporting.executor_coverage import save_here

            save_here(self.coverage_here)

    def measure_coverage(self) -> dict[str, Any] | None:
        """Combine the run's coverage data (controller, once); None when coverage was not asked for."""
        if self.settings.coverage and self.coverage_result is None and not self.is_worker and self.settings.executor:
            from conformance.reporting import executor_coverage

            executor_coverage.save_here(self.coverage_here)
            self.coverage_here = None
            self.coverage_result = executor_coverage.collect(executor_coverage.measured_package(self.settings.executor))
        return self.coverage_result

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self.leftovers += list(getattr(node, "workeroutput", {}).get(_WORKER_LEFTOVERS, []))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results or self.is_worker:
            return
        from conformance.certification.summary import publish, summary_lines

        terminalreporter.section("executor conformance")
        certificate = self.certificate()
        for text, style in summary_lines(certificate):
            terminalreporter.write_line(text, **style)
        for text in publish(certificate, self.report_dir, os.environ.get("GITHUB_STEP_SUMMARY")):
            terminalreporter.write_line(text)

    # -- results -----------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.profile.label if self.profile is not None else str(self.run.get("executor", "executor_profile"))

    def inherited(self) -> Inherited | None:
        """Failures the executor's Airflow base class has too (computed once, on the controller)."""
        if self.is_worker or self.profile is None or self.sandbox is None:
            return None
        if not self._inherited_done:
            from conformance.certification.inherited import inherited_failures

            failed = sorted(c for c, r in self.results.items() if r.outcome is Outcome.FAILED)
            preflight_failed = self.run.get("preflight", "passed") != "passed"
            self._inherited = (inherited_failures(self.profile, self.sandbox, self.run_options(), failed)
                               if failed and not preflight_failed else None)
            self._inherited_done = True
        return self._inherited

    def certificate(self) -> Certificate:
        """The run as a certificate (the same type ``conformance.certify`` returns)."""
        run = self.run or ({"executor": self.profile.label, "executor_package": executor_package(self.profile.label),
                            "capabilities": dict(self.profile.capability_set())} if self.profile is not None else {})
        run = {**run, "expected_failures": run.get("expected_failures", dict(self.settings.expected_failures))}
        option = self.config.getoption
        options = {**self.settings.as_dict(),
                   "hypothesis": {"profile": self.settings.hypothesis_profile,
                                  "seed": self.settings.seed if self.settings.seed is not None
                                  else (run.get("seeds") or [run.get("seed")])[0]},
                   "selection": {"checks": sorted(self.selected), "keyword": option("keyword") or None,
                                 "markexpr": option("markexpr") or None, "deselected": self.deselected}}
        return Certificate(label=self.label, results=dict(self.results), run=run, options=options,
                           e2e=self.settings.e2e, strict=self.settings.strict, started=self.started,
                           leftovers=list(self.leftovers), inherited=self.inherited(),
                           coverage=self.measure_coverage())

    def close(self) -> None:
        from conformance.harness import timing

        timing.set_ceiling(None)
        if self.previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGTERM, self.previous_sigterm)  # the process outlives the session
        if self.settings.coverage and not self.is_worker:
            from conformance.reporting.executor_coverage import discard

            discard()
        if self.sandbox is not None:
            self.sandbox.deactivate()


def record(item: pytest.Item, result: CheckResult, run: dict[str, Any] | None = None) -> None:
    """Attach a check's outcome (and what the run used) to its test item as data: it travels to the
    xdist controller, which assembles the summary and the report from it."""
    item.user_properties += [(OUTCOME_PROPERTY, result.outcome.value), (MESSAGE_PROPERTY, result.message),
                             (LEAKS_PROPERTY, list(result.leaks)), (CAUSE_PROPERTY, result.cause)]
    if run:
        item.user_properties.append((RUN_PROPERTY, run))


def e2e_requested(config: pytest.Config) -> bool:
    """The e2e tier is opt-in: ``--e2e``, or a ``-m`` expression that names it."""
    return bool(config.getoption("--e2e")) or "e2e" in str(config.getoption("markexpr", "") or "")


def _junit_names(config: pytest.Config, report: pytest.TestReport, check_id: str) -> None:
    """In a JUnit XML file a check reads as classname = its area, name = its stable id (instead of an
    empty classname and ``test_check[...]``). junitxml has no public API for this; its per-test
    reporter does, and it is only present when ``--junitxml`` is."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - a pytest without it: names stay pytest's
        return
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    reporter = xml.node_reporter(report)
    reporter.add_attribute("classname", check_id.split(".", 1)[0])
    reporter.add_attribute("name", check_id)


def check_id_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    value = callspec.params.get("check_id")
    return value if isinstance(value, str) else None


def _status(report: pytest.TestReport, outcome: Any) -> str:
    """The outcome the check recorded (expectations applied); pytest's own verdict only for a report
    that carries none (an error in a fixture, an interrupted check)."""
    if isinstance(outcome, str) and outcome in {o.value for o in Outcome}:
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
