"""Certificates a CI can trust: verdict kinds, the report record and its schema, scoped configuration,
the conftest route, ``diff`` and ``matrix``, the HTML page in a real browser, coverage."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conformance import cli
from conformance.certification.verdict import VerdictKind, judge
from conformance.reporting.diff import diff_reports
from conformance.reporting.html_report import render_html
from conformance.reporting.matrix import render_matrix
from conformance.reporting.report import SCHEMA_PATH

REPO = Path(__file__).resolve().parent.parent
CATALOGUE = ["attributes.a", "heartbeat.b", "lifecycle.c", "e2e.d"]


def _results(**statuses: str) -> dict[str, dict[str, str]]:
    return {cid.replace("__", "."): {"status": s} for cid, s in statuses.items()}


# -- verdict kinds ---------------------------------------------------------------------------------
def test_every_applicable_check_passed_is_certified_for_the_tiers_that_ran() -> None:
    verdict = judge(_results(attributes__a="passed", heartbeat__b="not supported", lifecycle__c="not applicable"),
                    CATALOGUE, e2e=False)
    assert verdict.kind is VerdictKind.CERTIFIED and verdict.tiers == ("contract",)
    assert verdict.headline() == "CERTIFIED (contract tier)"


def test_a_selection_is_partial_however_green() -> None:
    verdict = judge(_results(attributes__a="passed"), CATALOGUE, e2e=False)
    assert verdict.kind is VerdictKind.PARTIAL and verdict.missing == ("heartbeat.b", "lifecycle.c")
    with_e2e = judge(_results(attributes__a="passed", heartbeat__b="passed", lifecycle__c="passed"), CATALOGUE,
                     e2e=True)
    assert with_e2e.kind is VerdictKind.PARTIAL and with_e2e.missing == ("e2e.d",)


def test_waived_failures_are_exceptions_and_strict_refuses_them() -> None:
    results = _results(attributes__a="passed", heartbeat__b="expected failure", lifecycle__c="advice")
    verdict = judge(results, CATALOGUE, e2e=False)
    assert verdict.kind is VerdictKind.CERTIFIED_WITH_EXCEPTIONS
    assert verdict.exceptions == {"heartbeat.b": "expected failure", "lifecycle.c": "advice"}
    assert judge(results, CATALOGUE, e2e=False, strict=True).kind is VerdictKind.NOT_CERTIFIED
    advice_only = _results(attributes__a="passed", heartbeat__b="passed", lifecycle__c="advice")
    assert judge(advice_only, CATALOGUE, e2e=False).kind is VerdictKind.CERTIFIED


@pytest.mark.parametrize("bad", ["failed", "inconclusive", "not run"])
def test_evidence_against_or_missing_evidence_is_not_certified(bad: str) -> None:
    verdict = judge(_results(attributes__a=bad), CATALOGUE, e2e=False)
    assert verdict.kind is VerdictKind.NOT_CERTIFIED and verdict.blocking == {"attributes.a": bad}
    assert judge({}, CATALOGUE, e2e=False).kind is VerdictKind.NOT_CERTIFIED  # nothing ran: nothing certified


# -- the record and its schema ---------------------------------------------------------------------
def _schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text()))


def test_the_schema_refuses_a_report_without_a_verdict(full_run: dict[str, Any]) -> None:
    report = dict(full_run["report"])
    jsonschema.validate(report, _schema())
    del report["verdict"]
    with pytest.raises(jsonschema.ValidationError, match="'verdict' is a required property"):
        jsonschema.validate(report, _schema())
    report["verdict"] = "CERTIFIED-ISH"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, _schema())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One complete certification of the reference SequentialExecutor with every output switched on."""
    work = tmp_path_factory.mktemp("full")
    summary = work / "step-summary.md"
    env = {**_env(), "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run([sys.executable, "-m", "conformance.cli", "certify", "reference_executors.SequentialExecutor",
                           "--report", str(work / "report"), "--seed", "1234", "--coverage", "--", "-n", "0",
                           f"--junitxml={work / 'junit.xml'}"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    return {"dir": work, "stdout": done.stdout, "summary": summary,
            "report": json.loads((work / "report" / "report.json").read_text())}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONFORMANCE_", "COVERAGE_",
                                                                         "PYTEST_"))}


def test_a_full_run_is_a_complete_certificate(full_run: dict[str, Any]) -> None:
    report = full_run["report"]
    assert report["verdict"] == "CERTIFIED" and report["certified"] is True and report["missing"] == []
    assert report["schema_version"] == 1 and report["tiers"] == ["contract"]
    assert report["options"]["hypothesis"] == {"profile": "ci", "seed": 1234}
    assert report["options"]["coverage"] is True and report["options"]["selection"]["deselected"] > 0
    assert report["executor_package"]["name"] == "reference_executors"
    assert report["executor_package"]["version"]
    assert all(isinstance(c["seconds"], (int, float)) for c in report["checks"])
    out = full_run["stdout"]
    assert out.count("report: ") == 1 and "VERDICT: reference_executors.SequentialExecutor is CERTIFIED" in out
    assert not (full_run["dir"] / ".hypothesis").exists()
    badge = json.loads((full_run["dir"] / "report" / "badge.json").read_text())
    assert badge["message"] == "certified" and badge["color"] == "brightgreen"
    assert "**CERTIFIED**" in full_run["summary"].read_text()


def test_coverage_of_the_executor_counts_the_task_processes(full_run: dict[str, Any]) -> None:
    coverage = full_run["report"]["coverage"]
    assert coverage["package"] == "reference_executors"
    files = {f["file"]: f for f in coverage["files"]}
    assert files["reference_executors/sequential.py"]["percent"] > 50
    # run_here() runs only in the forked child that executes a task: its body counts only when the
    # task processes were measured.
    import inspect

    from reference_executors import _bridge

    source, first = inspect.getsourcelines(_bridge.run_here)
    body = set(range(first + 1, first + len(source)))
    missing = _lines(files["reference_executors/_bridge.py"]["missing"])
    assert body - missing, f"no line of run_here() was measured: missing {sorted(missing)}"
    assert "Coverage of reference_executors" in full_run["stdout"]


def _lines(ranges: str) -> set[int]:
    found: set[int] = set()
    for part in filter(None, (p.strip() for p in ranges.split(","))):
        start, _, end = part.partition("-")
        found.update(range(int(start), int(end or start) + 1))
    return found


# -- scoped configuration and the conftest route ---------------------------------------------------
def test_the_pyproject_setting_does_not_turn_unit_tests_into_a_certification(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.executor-conformance]\nexecutor = "reference_executors.LocalExecutor"\n')
    pytester.makepyfile(test_mine="""
        import sys
        def test_mine():
            assert "airflow" not in sys.modules
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "VERDICT" not in result.stdout.str()
    certified = pytester.runpytest_subprocess("--conformance", "--checks", "attributes.declared_with_types",
                                              "-p", "no:cacheprovider")
    certified.stdout.fnmatch_lines(["*VERDICT: reference_executors.LocalExecutor is PARTIAL*(1 passed)*"])


def test_a_printed_reproducer_runs_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.executor-conformance]\nexecutor = "reference_executors.LocalExecutor"\n')
    pytester.makepyfile(test_reproduce_it="def test_reproduce():\n    pass\n")
    alone = pytester.runpytest_subprocess("test_reproduce_it.py", "-p", "no:cacheprovider")
    alone.assert_outcomes(passed=1)
    # even with --executor, named paths are what runs: the suite is not appended after them
    named = pytester.runpytest_subprocess("--executor", "reference_executors.LocalExecutor", "test_reproduce_it.py",
                                          "-p", "no:cacheprovider")
    named.assert_outcomes(passed=1)


CONFTEST = textwrap.dedent("""
    import pytest
    from conformance import ExecutorProfile
    from reference_executors import LocalExecutor

    @pytest.fixture(scope="session")
    def executor_profile():
        return ExecutorProfile(executor_class=LocalExecutor, name="my_conftest_profile")
""")


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_the_conftest_route_gets_the_same_summary_and_report(pytester: pytest.Pytester, tmp_path: Path,
                                                            workers: list[str]) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_certify="from conformance.pytest_plugin.suite import test_check  # noqa: F401\n")
    collected = pytester.runpytest_subprocess("--collect-only", "-q", "-p", "no:cacheprovider").stdout.str()
    assert "lifecycle.end_waits_and_flushes" in collected and "e2e." not in collected  # e2e only when asked
    report = tmp_path / "report"
    result = pytester.runpytest_subprocess("--checks", "attributes.declared_with_types,heartbeat.priority_order",
                                           "--conformance-report", str(report), "-p", "no:cacheprovider", *workers)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*VERDICT: my_conftest_profile is PARTIAL*(2 passed)*"])
    data = json.loads((report / "report.json").read_text())
    assert data["executor"] == "my_conftest_profile" and data["capabilities"]["parallel"] is True
    assert data["preflight"] == "passed" and data["time_model"]["calibration"]["samples"] >= 1


def _readme_conftest_example() -> tuple[str, str]:
    """The README's conftest route, as written there: (conftest.py, test_conformance.py)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("# conftest.py\n", 1)[1].split("```", 1)[0]
    conftest, test_module = block.split("# test_conformance.py\n", 1)
    return conftest, test_module


def test_the_readme_conftest_example_passes_as_written(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Copied verbatim but for the executor (the reference one), the README's example certifies what it
    selects, and the report names the executor's class -- not the factory's lambda."""
    conftest, test_module = _readme_conftest_example()
    assert "from my_pkg.executors import MyExecutor" in conftest
    pytester.makeconftest(conftest.replace("from my_pkg.executors import MyExecutor",
                                           "from reference_executors import LocalExecutor as MyExecutor"))
    pytester.makepyfile(test_conformance=test_module)
    report = tmp_path / "report"
    result = pytester.runpytest_subprocess("--checks", "attributes.declared_with_types,heartbeat.priority_order",
                                           "--conformance-report", str(report), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    data = json.loads((report / "report.json").read_text())
    assert data["executor"] == "reference_executors.local.LocalExecutor", data["executor"]


# -- diff ------------------------------------------------------------------------------------------
def _report(version: str, executor: str = "pkg.Exec", **statuses: str) -> dict[str, Any]:
    checks = [{"id": cid.replace("__", "."), "status": s, "message": f"{s} on {version}" if s == "failed" else "",
               "area": cid.split("__")[0], "clause": "X-1", "title": "t", "seconds": 0.1}
              for cid, s in statuses.items()]
    bad = any(c["status"] == "failed" for c in checks)
    return {"executor": executor, "airflow_version": version, "checks": checks, "python_version": "3.11.7",
            "suite_version": "0.1.0", "platform": "Linux", "generated_at": "2026-11-25T12:00:00+00:00",
            "tiers": ["contract"], "verdict": "NOT CERTIFIED" if bad else "CERTIFIED", "certified": not bad}


def test_diff_names_regressions_fixes_and_changed_messages() -> None:
    old = _report("2.11.2", heartbeat__a="passed", heartbeat__b="failed", heartbeat__c="failed", events__d="passed")
    new = _report("3.3.2", heartbeat__a="failed", heartbeat__b="passed", heartbeat__c="failed", events__e="failed")
    result = diff_reports(old, new)
    assert result.newly_failing == [("heartbeat.a", "passed", "failed"), ("events.e", "(absent)", "failed")]
    assert result.newly_passing == [("heartbeat.b", "failed", "passed")]
    assert result.changed_messages == ["heartbeat.c"] and result.removed == ["events.d"]
    assert result.regressed


def test_diff_exit_status_is_the_regression_suites_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(name: str, report: dict[str, Any]) -> str:
        (tmp_path / name).write_text(json.dumps(report))
        return str(tmp_path / name)

    good = write("good.json", _report("3.3.2", heartbeat__a="passed"))
    bad = write("bad.json", _report("3.3.2", heartbeat__a="failed"))
    assert cli.main(["diff", good, good]) == 0
    assert cli.main(["diff", bad, good]) == 0  # a fix is news, not a failure
    assert cli.main(["diff", good, bad]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert cli.main(["diff", good, str(tmp_path / "missing.json")]) == 4
    assert "cannot read" in capsys.readouterr().err


def test_diff_compares_folders_report_by_report(tmp_path: Path) -> None:
    for side, status in (("old", "passed"), ("new", "failed")):
        folder = tmp_path / side / "LocalExecutor"
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(_report("3.3.2", heartbeat__a=status)))
    assert cli.main(["diff", str(tmp_path / "old"), str(tmp_path / "new")]) == 1


# -- matrix ----------------------------------------------------------------------------------------
def test_matrix_flags_a_regression_once_and_shows_fixes() -> None:
    reports = [_report("2.9.3", heartbeat__a="passed", heartbeat__b="failed"),
               _report("2.11.2", heartbeat__a="failed", heartbeat__b="passed"),
               _report("3.3.2", heartbeat__a="failed", heartbeat__b="passed")]
    table = render_matrix(list(reversed(reports)))
    assert "Regressions (1): heartbeat.a (Exec @ 2.11.2)" in table
    assert "Fixes (1): heartbeat.b (Exec @ 2.11.2)" in table
    assert table.index("2.9.3") < table.index("2.11.2") < table.index("3.3.2")  # ordered by version
    other = render_matrix([*reports, _report("2.9.3", executor="pkg.Other", heartbeat__a="failed")])
    assert other.count("### `") == 2 and "Regressions (1)" in other  # one table per executor


def test_matrix_of_the_published_reports_reads_at_100_columns(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    paths = sorted(str(p) for p in (REPO / "reports").glob("airflow-*/*/report.json"))
    versions = {Path(p).parent.parent.name for p in paths}
    assert len(versions) >= 2, paths  # reports from two Airflow versions at least
    assert cli.main(["matrix", *paths, str(tmp_path / "absent"), "--output", str(tmp_path / "m.md")]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "absent" in captured.err  # a missing report is a warning
    assert all(len(line) <= 100 for line in captured.out.splitlines() if line.startswith("| `")), captured.out
    assert cli.main(["matrix", str(tmp_path / "absent")]) == 4


# -- the HTML page in a real browser ---------------------------------------------------------------
def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    return found


def test_the_html_report_renders_and_filters_in_a_real_browser(tmp_path: Path) -> None:
    browser = _chromium()
    report = _report("3.3.2", heartbeat__a="passed", heartbeat__b="failed", events__c="passed")
    report["checks"][1]["message"] = "<script>alert('executor output is escaped')</script>"
    page = tmp_path / "report.html"
    page.write_text(render_html(report))

    def dom(fragment: str) -> str:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                               "--virtual-time-budget=2000", "--dump-dom", f"file://{page}{fragment}"],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "HOME": str(tmp_path)})  # chromium's caches stay in tmp
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    everything = dom("")
    assert "id=\"verdict\">NOT CERTIFIED<" in everything
    assert "&lt;script&gt;alert" in everything and "<script>alert" not in everything
    assert "display: none" not in everything

    def tag(dom_text: str, check_id: str) -> str:
        found = re.search(rf'<details[^>]*id="check-{re.escape(check_id)}"[^>]*>', dom_text)
        assert found, dom_text[-2000:]
        return found.group(0)

    only_failed = dom("#status=failed")  # the filter, applied by the page's own script
    assert "display: none" not in tag(only_failed, "heartbeat.b")
    assert "display: none" in tag(only_failed, "heartbeat.a") and "display: none" in tag(only_failed, "events.c")
