"""The pytest adapter: options, the sandbox, collection of the suite, expected failures, the summary.

Loaded in every pytest run of an environment where the package is installed (entry point
``pytest11``), so it imports nothing heavy at module level: Airflow and the suite are only imported
when a run asks for a certification. Configuration (``[tool.executor-conformance]`` in pyproject.toml,
or ini keys) says *how* to certify; only ``--executor`` or ``--conformance`` on the command line (what
``executor-conformance certify`` passes) makes a run one, so an author's own unit tests stay theirs.
The conftest route (a module importing ``conformance.pytest_plugin.suite.test_check`` with an ``executor_profile``
fixture) is a certification too, found at collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_STATE_KEY = "_executor_conformance_state"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("executor-conformance", "Airflow executor conformance")
    group.addoption("--executor", action="store", default=None, metavar="DOTTED.PATH",
                    help="certify this BaseExecutor subclass (pkg.mod.Class or pkg.mod:Class)")
    group.addoption("--conformance", action="store_true", default=False,
                    help="certify the executor configured in [tool.executor-conformance] (or ini 'executor')")
    group.addoption("--executor-kwargs", action="store", default=None, metavar="JSON",
                    help="constructor keyword arguments for the executor, as a JSON object")
    group.addoption("--backend-driver", action="store", default=None, metavar="DOTTED.PATH",
                    help="a BackendDriver for fault injection into the executor's backend (SPEC HB-5)")
    group.addoption("--conformance-report", action="store", default=None, metavar="DIR",
                    help="write report.json and report.md for the run into DIR")
    group.addoption("--checks", action="store", default=None, metavar="ID[,ID...]",
                    help="run only these check ids (see `executor-conformance checks`)")
    group.addoption("--e2e", action="store_true", default=False,
                    help="also run the end-to-end tier: the executor under a real Airflow scheduler (minutes)")
    group.addoption("--conformance-time-scale", action="store", default=None, type=float, metavar="FACTOR",
                    help="multiply every time budget (slow backend, busy machine); budgets already scale "
                         "from a calibration of the executor on this machine")
    group.addoption("--conformance-hypothesis-profile", action="store", default=None, choices=("ci", "thorough"),
                    help="state-machine effort: ci (a few dozen examples, default) or thorough (hundreds)")
    group.addoption("--conformance-max-minutes", action="store", default=None, type=float, metavar="M",
                    help="a ceiling for the whole run (a CI job's limit): what it cuts short is inconclusive, "
                         "never a failure or a pass")
    group.addoption("--conformance-seed", action="store", default=None, type=int, metavar="N",
                    help="seed of the state machine's programmes (the report records the one used)")
    group.addoption("--conformance-coverage", action="store_true", default=False,
                    help="measure line and branch coverage of the executor's package (scheduler side and task "
                         "processes) and put it in the report (`executor-conformance certify --coverage`)")
    group.addoption("--conformance-strict", action="store_true", default=False,
                    help="no exceptions: expected failures and advice fail the run")
    parser.addini("executor", "dotted path of the executor to certify (like --executor)", default="")
    parser.addini("executor_kwargs", "JSON object of constructor kwargs (like --executor-kwargs)", default="")
    parser.addini("backend_driver", "dotted path of a BackendDriver (like --backend-driver)", default="")
    parser.addini("executor_time_scale", "multiply every time budget (like --conformance-time-scale)", default="")
    parser.addini("executor_expected_failures",
                  "lines of 'check.id: reason' that are expected to fail", type="linelist", default=[])


def _setting(config: pytest.Config, option: str, ini: str, table_key: str | None = None) -> str | None:
    value = config.getoption(option)
    if value:
        return str(value)
    from_ini = config.getini(ini)
    if from_ini:
        return str(from_ini)
    from conformance.certification.settings import pyproject_settings

    found = pyproject_settings(config.rootpath).get(table_key or ini)
    return None if found in (None, "") else str(found)


def pytest_configure(config: pytest.Config) -> None:
    from conformance.harness.catalog import AREAS

    for marker, text in AREAS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")
    config.addinivalue_line("markers", "conformance_check(check_id): a check of the executor conformance suite")
    asked = config.getoption("--executor") or config.getoption("--conformance")
    if not asked:
        config.pluginmanager.register(_ConftestRoute(config), "executor-conformance-conftest-route")
        return
    from conformance.pytest_plugin.session import start_session

    try:
        settings = read_settings(config)
        if not settings.executor:
            raise pytest.UsageError("--conformance: no executor configured (set executor = \"pkg.mod.Class\" under "
                         "[tool.executor-conformance] in pyproject.toml, or pass --executor)")
        state = start_session(config, settings)
    except pytest.UsageError:
        raise
    except Exception as exc:  # ProfileError and friends: one line, pytest's usage-error exit code 4
        raise pytest.UsageError(str(exc)) from None
    _register(config, state)
    suite = str(Path(__file__).with_name("suite.py"))
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [suite]  # no paths given: the run is the suite (not the project's testpaths)
    # Paths given (a printed reproducer, the author's own suite module): exactly those run.


def read_settings(config: pytest.Config) -> Any:
    """Everything the user configured, from the command line, ini and pyproject (in that order)."""
    from conformance.pytest_plugin.session import SessionSettings, e2e_requested

    report = config.getoption("--conformance-report")
    checks = tuple(c.strip() for c in (config.getoption("--checks") or "").split(",") if c.strip())
    return SessionSettings(
        executor=_setting(config, "--executor", "executor"),
        executor_kwargs=_setting(config, "--executor-kwargs", "executor_kwargs"),
        backend_driver=_setting(config, "--backend-driver", "backend_driver"),
        expected_failures=_expected_failure_lines(config),
        time_scale=_time_scale(_setting(config, "--conformance-time-scale", "executor_time_scale", "time_scale")),
        report_dir=Path(report) if report else None,
        checks=checks,
        strict=bool(config.getoption("--conformance-strict")),
        coverage=bool(config.getoption("--conformance-coverage")),
        seed=config.getoption("--conformance-seed"),
        max_minutes=config.getoption("--conformance-max-minutes"),
        hypothesis_profile=config.getoption("--conformance-hypothesis-profile") or "ci",
        e2e=e2e_requested(config))


def _register(config: pytest.Config, state: Any) -> None:
    setattr(config, _STATE_KEY, state)
    config.pluginmanager.register(state, "executor-conformance-session")


class _ConftestRoute:
    """Watches a run that was not asked to certify: if it collects the suite's ``test_check`` (a
    conftest ``executor_profile``), it becomes a certification with the same summary and report.
    On an xdist controller nothing is collected, so the first check report starts the session."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def _session(self) -> Any:
        state = session_state(self.config)
        if state is None:
            from conformance.pytest_plugin.session import deferred_session

            try:
                state = deferred_session(self.config, read_settings(self.config))
            except Exception as exc:
                raise pytest.UsageError(str(exc)) from None
            _register(self.config, state)
        return state

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if session_state(config) is None and any(_is_check(i) for i in items):
            self._session().pytest_collection_modifyitems(config, items)  # registered too late for this call

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if session_state(self.config) is None and any(k == "check_id" for k, _ in report.user_properties):
            self._session().pytest_runtest_logreport(report)  # likewise, for the report that created it


def _is_check(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    return (getattr(function, "__module__", "") == "conformance.pytest_plugin.suite"
            and getattr(function, "__name__", "") == "test_check")


def _time_scale(raw: str | None) -> float:
    from conformance.harness.profile import ProfileError

    try:
        value = float(raw) if raw else 1.0
    except ValueError:
        raise ProfileError(f"time scale {raw!r} is not a number") from None
    if not value > 0:
        raise ProfileError(f"time scale must be greater than 0, got {raw}")
    return value


def _expected_failure_lines(config: pytest.Config) -> dict[str, str]:
    from conformance.certification.settings import parse_expected_failures, pyproject_settings

    lines = list(config.getini("executor_expected_failures"))
    table = pyproject_settings(config.rootpath).get("expected_failures") or {}
    return {**parse_expected_failures(lines), **dict(table)}


def session_state(config: pytest.Config) -> Any:
    return getattr(config, _STATE_KEY, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = session_state(config)
    if state is not None:
        config.pluginmanager.unregister(state)
        state.close()
        delattr(config, _STATE_KEY)


@pytest.fixture(scope="session")
def executor_profile(request: pytest.FixtureRequest) -> Any:
    """The profile under test. Override it in a conftest.py to pass a factory, backend or expectations."""
    state = session_state(request.config)
    if state is None:
        pytest.skip("no executor to certify: pass --executor pkg.mod.Class or override executor_profile")
    return state.profile


@pytest.fixture(scope="session")
def conformance_sandbox() -> Any:
    """The session's private AIRFLOW_HOME, journal and state directories."""
    from conformance.groundtruth.sandbox import ensure_active

    return ensure_active()
