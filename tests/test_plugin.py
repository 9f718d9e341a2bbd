"""The plugin as a user meets it: options, bad input, expected failures, xdist, hangs, reports."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

BROKEN_MODULE = textwrap.dedent("""
    import os
    import threading
    from airflow.executors.base_executor import BaseExecutor
    from reference_executors import LocalExecutor

    class EndDoesNotWait(LocalExecutor):
        try_adopt_task_instances = BaseExecutor.try_adopt_task_instances

        def end(self):
            pass

    class HangingSync(LocalExecutor):
        def sync(self):
            threading.Event().wait()  # blocks the scheduler loop forever

    class ExplodingConstructor(LocalExecutor):
        def __init__(self, *args, **kwargs):
            raise RuntimeError("no credentials configured")

    class MissingSetting(LocalExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cert = os.environ["MY_BACKEND_TLS_CERT_FOR_THIS_TEST"]  # raised inside the stdlib

    NOT_A_CLASS = 42
""")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(my_executors=BROKEN_MODULE)
    return pytester


def _one_line_error(result: pytest.RunResult, text: str) -> None:
    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    err = result.stderr.str()
    assert "Traceback" not in err and "Traceback" not in result.stdout.str()
    lines = [line for line in err.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1 and text in lines[0], err


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--executor=DOTTED.PATH*", "*--executor-kwargs=JSON*", "*--conformance-report=DIR*"])


@pytest.mark.parametrize(("dotted", "message"), [
    ("no_such_module.Executor", "module 'no_such_module' could not be imported: ModuleNotFoundError"),
    ("my_executors.Missing", "module 'my_executors' has no attribute 'Missing'"),
    ("my_executors.NOT_A_CLASS", "'NOT_A_CLASS' is a int, not a class"),
    ("collections:OrderedDict", "OrderedDict is not a subclass of airflow.executors.base_executor.BaseExecutor"),
    ("my_executors.ExplodingConstructor", "the constructor raised RuntimeError: no credentials configured"),
    # where: the executor's own line, not the standard library's frame that raised
    ("my_executors.MissingSetting", "KeyError: 'MY_BACKEND_TLS_CERT_FOR_THIS_TEST' (at "),
    ("justaword", "expected a dotted path"),
])
def test_bad_executor_is_one_clear_line(project: pytest.Pytester, dotted: str, message: str) -> None:
    result = project.runpytest_subprocess("--executor", dotted)
    _one_line_error(result, message)
    if "(at " in message:
        assert "my_executors.py:" in result.stderr.str(), result.stderr.str()


def test_malformed_kwargs_is_one_clear_line(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--executor", "reference_executors.LocalExecutor",
                                          "--executor-kwargs", "{parallelism: 2")
    _one_line_error(result, "--executor-kwargs is not valid JSON")


def test_unknown_expected_failure_id_is_an_error(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nexecutor_expected_failures =\n    heartbeat.no_such_check: we think so\n")
    result = project.runpytest_subprocess("--executor", "reference_executors.LocalExecutor")
    _one_line_error(result, "unknown check id(s) in expected failures: heartbeat.no_such_check")


def test_expected_failure_that_fails_is_reported_as_expected(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(textwrap.dedent("""
        [tool.executor-conformance]
        executor = "my_executors.EndDoesNotWait"
        expected_failures = { "lifecycle.end_waits_and_flushes" = "end() is fire-and-forget until v2" }
    """))
    result = project.runpytest_subprocess("--conformance", "-k", "end_waits_and_flushes", "-p", "no:cacheprovider")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["*Exceptions: lifecycle.end_waits_and_flushes (expected failure)*",
                                 "*VERDICT: my_executors.EndDoesNotWait is PARTIAL (* not selected*"
                                 "(1 expected failure)*"])


def test_strict_accepts_no_expected_failure(project: pytest.Pytester) -> None:
    project.makepyprojecttoml(textwrap.dedent("""
        [tool.executor-conformance]
        executor = "my_executors.EndDoesNotWait"
        expected_failures = { "lifecycle.end_waits_and_flushes" = "end() is fire-and-forget until v2" }
    """))
    result = project.runpytest_subprocess("--conformance", "--conformance-strict", "-k", "end_waits_and_flushes",
                                          "-p", "no:cacheprovider")
    assert result.ret == 1
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*--strict accepts no exceptions*",
                                 "*VERDICT: my_executors.EndDoesNotWait is NOT CERTIFIED (1 failed)*"])


def test_expected_failure_that_passes_fails_the_run(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nexecutor_expected_failures =\n    heartbeat.priority_order: flaky\n")
    result = project.runpytest_subprocess("--executor", "reference_executors.LocalExecutor",
                                          "-k", "priority_order")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*is listed as an expected failure ('flaky') but it passed*"])


def test_a_failing_check_explains_itself(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--executor", "my_executors.EndDoesNotWait", "-k", "end_waits")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*[[]lifecycle.end_waits_and_flushes] violates SPEC LIFE-1*",
        "*What the executor did:*",
        "*What Airflow's scheduler expects:*",
        "*How to fix:*",
        "*Harness transcript*",
        "*VERDICT: my_executors.EndDoesNotWait is NOT CERTIFIED*",
    ])


def test_hanging_executor_is_a_clear_failure_naming_the_call(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--executor", "my_executors.HangingSync", "-k", "triggers_queued_work",
                                          "--timeout", "150")
    result.assert_outcomes(skipped=1)  # the preflight found it: the selected check is 'not run'
    result.stdout.fnmatch_lines(["*PREFLIGHT FAILED*an idle heartbeat() blocks: executor call "
                                 "HangingSync.heartbeat() did not return within 10.0s*",
                                 "*VERDICT: my_executors.HangingSync is NOT CERTIFIED (1 not run)*"])


def test_xdist_run_assembles_the_report_on_the_controller(project: pytest.Pytester, tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    result = project.runpytest_subprocess("--executor", "reference_executors.LocalExecutor", "-n", "2",
                                          "-k", "heartbeat or events", "--conformance-report", str(report_dir))
    assert result.ret == 0, result.stdout.str()
    report = json.loads((report_dir / "report.json").read_text())
    ids = {c["id"] for c in report["checks"]}
    assert ids and all(i.split(".")[0] in ("heartbeat", "events") for i in ids)
    assert report["verdict"] == "PARTIAL" and report["certified"] is False  # a selection certifies nothing
    assert "lifecycle.end_waits_and_flushes" in report["missing"]
    assert result.stdout.str().count("VERDICT:") == 1


def test_report_and_junit_carry_check_ids_and_clauses(project: pytest.Pytester, tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    junit = tmp_path / "junit.xml"
    result = project.runpytest_subprocess("--executor", "reference_executors.SequentialExecutor",
                                          "--conformance-report", str(report_dir), f"--junitxml={junit}")
    assert result.ret == 0, result.stdout.str()
    report = json.loads((report_dir / "report.json").read_text())
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["adoption.adopted_tasks_finish_without_rerun"]["status"] == "not supported"
    assert by_id["lifecycle.end_waits_and_flushes"]["status"] == "passed"
    assert report["capabilities"]["single_threaded"] is True and report["executor"].endswith("SequentialExecutor")
    markdown = (report_dir / "report.md").read_text()
    assert "**CERTIFIED**" in markdown and "`heartbeat.priority_order`" in markdown
    xml = junit.read_text()
    assert 'name="check_id" value="heartbeat.priority_order"' in xml and 'name="clause" value="HB-4"' in xml
    assert '<testcase classname="heartbeat" name="heartbeat.priority_order"' in xml
    assert xml.count('name="heartbeat.priority_order"') == 1  # one test case per check, not one per phase


def test_checks_option_selects_and_rejects_unknown_ids(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--executor", "reference_executors.LocalExecutor", "--collect-only", "-q",
                                          "--checks", "heartbeat.priority_order,logs.get_task_log_shape")
    out = result.stdout.str()
    assert "heartbeat.priority_order" in out and "logs.get_task_log_shape" in out and "lifecycle." not in out
    bad = project.runpytest_subprocess("--executor", "reference_executors.LocalExecutor", "--checks", "heartbeat.nope")
    _one_line_error(bad, "unknown check id(s) in --checks: heartbeat.nope")


def test_bad_backend_driver_is_one_clear_line(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--executor", "reference_executors.LocalExecutor",
                                          "--backend-driver", "my_executors.NOT_A_CLASS")
    _one_line_error(result, "--backend-driver 'my_executors.NOT_A_CLASS': calling it raised TypeError")


def test_e2e_tier_is_opt_in(project: pytest.Pytester) -> None:
    def collected(*extra: str) -> str:
        return str(project.runpytest_subprocess("--executor", "reference_executors.LocalExecutor",
                                                "--collect-only", "-q", *extra).stdout.str())

    assert "e2e." not in collected()
    with_e2e = collected("--e2e")
    assert "e2e.scheduler_crash_recovery" in with_e2e and "heartbeat.priority_order" in with_e2e
    only_e2e = collected("-m", "e2e")
    assert "e2e.dag_run_completes" in only_e2e and "heartbeat." not in only_e2e


def test_area_markers_select_checks(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--executor", "reference_executors.LocalExecutor", "-m", "stuck",
                                          "--collect-only", "-q")
    out = result.stdout.str()
    assert "stuck.revoke_adds_no_event_and_never_raises" in out and "heartbeat." not in out


def test_plugin_is_cheap_when_unused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="""
        import sys
        def test_plain():
            assert "airflow" not in sys.modules
            assert "conformance.harness.scheduler" not in sys.modules
    """)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


ROOT_CAUSE_MODULE = textwrap.dedent("""
    from reference_executors import LocalExecutor

    class HeartbeatRaises(LocalExecutor):
        def heartbeat(self):
            raise ConnectionRefusedError(111, "Connection refused (the executor's backend)")

    class NeverReports(LocalExecutor):
        def _report(self, key, state, info):
            pass
""")


@pytest.mark.parametrize(("executor", "cause"), [
    ("HeartbeatRaises", "*root_cause_executors.py:* in heartbeat: raise ConnectionRefusedError*"),
    ("NeverReports", "*tasks ran and ended, but no terminal event came back*"),
])
def test_one_defect_is_one_group_named_by_the_preflight(pytester: pytest.Pytester, executor: str, cause: str) -> None:
    """The preflight fails with one diagnosis; every other check is 'not run' in one group with it."""
    pytester.makepyfile(root_cause_executors=ROOT_CAUSE_MODULE)
    result = pytester.runpytest_subprocess("--executor", f"root_cause_executors.{executor}", "-p", "no:randomly")
    out = result.stdout.str()
    assert result.ret == 1, out
    result.stdout.fnmatch_lines(["*[[]preflight.task_runs_end_to_end] violates SPEC PRE-1*",
                                 "*checks share one cause (fix it first): preflight: *",
                                 "*VERDICT: root_cause_executors.* is NOT CERTIFIED (1 failed, * not run*"])
    result.stdout.fnmatch_lines([cause])
    # One message, not twenty: one failure report (the short summary repeats its first line, and how
    # much of it shows depends on the terminal's width, so only the reports section is counted).
    assert result.parseoutcomes()["failed"] == 1, out
    reports = out.split("short test summary info")[0]
    assert reports.count("violates SPEC") == 1, out


RELAUNCH_MODULE = textwrap.dedent("""
    from reference_executors import LocalExecutor, _bridge

    class RelaunchesEveryHeartbeat(LocalExecutor):
        def trigger_tasks(self, open_slots):
            for key, item in self.order_queued_tasks_by_priority()[:open_slots]:
                if key not in self._procs:
                    self._dispatch(key, item if _bridge.IS_AIRFLOW3 else list(item[0]))

        def _report(self, key, state, info):
            if key in self.running:
                super()._report(key, state, info)
""")


def test_preflight_names_a_relaunch_and_lets_the_judging_checks_run(pytester: pytest.Pytester) -> None:
    """Tasks run, but each is launched again at every heartbeat and never reported: the preflight says so
    and does not stop the run -- the check that judges the defect names it (launched N times)."""
    pytester.makepyfile(relaunching_executors=RELAUNCH_MODULE)
    result = pytester.runpytest_subprocess("--executor", "relaunching_executors.RelaunchesEveryHeartbeat",
                                           "-p", "no:randomly", "-k", "preflight or at_most_once_per_try")
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*[[]preflight.task_runs_end_to_end] violates SPEC PRE-1*",
                                 "*tasks were launched more than once*"])
    result.stdout.fnmatch_lines(["*[[]lifecycle.at_most_once_per_try] violates SPEC LIFE-4*"])
    result.stdout.fnmatch_lines(["*launched the same try more than once*"])
    assert "not run" not in out.split("short test summary info")[-1], out
    assert result.parseoutcomes()["failed"] == 2, out


def test_failures_inherited_from_an_airflow_executor_are_named(pytester: pytest.Pytester) -> None:
    """Airflow's own LocalExecutor does nothing in terminate() (reports/FINDINGS.md, 2.11 and 3.3): a
    subclass that keeps it is told so, with expected failures ready to paste."""
    pytester.makepyfile(inheriting_executors="""
        from airflow.executors.local_executor import LocalExecutor

        class MyLocal(LocalExecutor):
            pass
    """)
    result = pytester.runpytest_subprocess("--executor", "inheriting_executors.MyLocal", "-p", "no:randomly",
                                           "--checks", "lifecycle.terminate_stops_work")
    result.stdout.fnmatch_lines([
        "*Inherited: airflow.executors.local_executor.LocalExecutor fails 1 of these checks too*"
        "lifecycle.terminate_stops_work*",
        '*expected_failures = { "lifecycle.terminate_stops_work" = "inherited from LocalExecutor of Airflow *" }*',
    ])


def test_processes_an_executor_leaves_behind_are_ended_and_reported(pytester: pytest.Pytester) -> None:
    """A worker process that end() forgets: the check that started it fails, and pytest does not wait."""
    pytester.makepyfile(leaky_executors="""
        import multiprocessing
        import time
        from reference_executors import LocalExecutor

        class ForgetsItsWorker(LocalExecutor):
            def start(self):
                super().start()
                self._worker = multiprocessing.Process(target=time.sleep, args=(3600,))  # not a daemon
                self._worker.start()
    """)
    result = pytester.runpytest_subprocess("--executor", "leaky_executors.ForgetsItsWorker", "-p", "no:randomly",
                                           "--checks", "lifecycle.repeated_build_start_end", timeout=300)
    result.stdout.fnmatch_lines(["*processes outlived end() and were ended by the suite: pid *",
                                 "*VERDICT: leaky_executors.ForgetsItsWorker is NOT CERTIFIED*"])


ENVIRONMENT_CONFTEST = textwrap.dedent("""
    import subprocess
    import sys

    import pytest

    WORKERS = []

    @pytest.fixture(scope="session", autouse=True)
    def worker_pool():
        # the user's own backend workers, started before the certification's first executor
        WORKERS.extend(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"]) for _ in range(2))
        yield WORKERS
        alive = [w.poll() is None for w in WORKERS]
        for w in WORKERS:
            w.kill()
            w.wait()
        with open("workers_alive_at_teardown.txt", "w") as fh:
            fh.write(repr(alive))
""")


def test_processes_of_the_users_environment_are_never_ended(pytester: pytest.Pytester) -> None:
    """Workers a conftest fixture started (the README's conftest route, a backend's pool) are the environment:
    no check ends them or reports them as outliving end()."""
    pytester.makeconftest(ENVIRONMENT_CONFTEST)
    result = pytester.runpytest_subprocess("--executor", "reference_executors.LocalExecutor", "-p", "no:randomly",
                                           "-k", "declared_with_types or end_waits_and_flushes or triggers_queued")
    out = result.stdout.str()
    assert "outlived end()" not in out and "left running at the end of the session" not in out, out
    assert result.parseoutcomes().get("failed", 0) == 0, out
    assert (pytester.path / "workers_alive_at_teardown.txt").read_text() == "[True, True]"
