"""The suite never touches the user's Airflow: proven in a fresh interpreter with a fake HOME."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conformance.groundtruth.sandbox import TEAM_NAME, Sandbox, team_settings


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "CONFORMANCE", "PYTEST_XDIST")) and k != "PYTHONPATH"}
    env["HOME"] = str(home)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "executor-conformance-" not in p)
    return env


def test_airflow_home_is_private_and_removed_afterwards(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, sys
        from conformance.groundtruth.sandbox import Sandbox
        box = Sandbox.create().activate()
        from airflow.configuration import AIRFLOW_HOME, conf
        from airflow.executors.base_executor import BaseExecutor
        assert AIRFLOW_HOME == str(box.airflow_home), AIRFLOW_HOME
        assert conf.get("database", "sql_alchemy_conn").startswith("sqlite:///" + str(box.root))
        root = box.root
        box.deactivate()
        assert not root.exists()
        assert "AIRFLOW_HOME" not in os.environ
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], env=_clean_env(tmp_path), capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
    assert not (tmp_path / "airflow").exists()


def test_a_certification_run_leaves_no_trace_in_home(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--executor",
         "reference_executors.SequentialExecutor", "-q", "-k", "lifecycle"],
        env=_clean_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "is PARTIAL" in result.stdout  # -k lifecycle: a selection
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_leaked_probe_processes_are_killed_and_reported(sandbox: Sandbox) -> None:
    from conformance.groundtruth import probes

    probe = probes.Probe.new(probes.ProbeKind.HANG)
    proc = subprocess.Popen([str(sandbox.shim_dir / "airflow"), "tasks", "run", "d", probe.task_id, "r"],
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not sandbox.journal().started(probe.task_id):
            assert time.monotonic() < deadline, "the hang probe never wrote its start entry"
            threading.Event().wait(0.01)
        leaked = sandbox.kill_leaked_probes()
        assert [r.task_id for r in leaked] == [probe.task_id]
        from conformance.groundtruth.journal import pid_alive

        assert not pid_alive(proc.pid), "the leaked probe process is still alive"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_team_settings_mirror_the_sandbox_for_multi_team_executors(sandbox: Sandbox) -> None:
    """A multi-team executor reads its settings through ExecutorConf(team_name), which sees only
    team-scoped variables: the sandbox provides its own settings for the team the suite builds."""
    copies = team_settings("t1", {"AIRFLOW__CORE__DAGS_FOLDER": "/d", "AIRFLOW__T0___CORE__X": "y",
                                  "AIRFLOW_HOME": "/h", "OTHER": "1"})
    assert copies == {"AIRFLOW__T1___CORE__DAGS_FOLDER": "/d"}
    base_executor = pytest.importorskip("airflow.executors.base_executor")
    if not hasattr(base_executor, "ExecutorConf"):
        pytest.skip("this Airflow has no per-team executor configuration (ExecutorConf, 3.1+)")
    team_conf = base_executor.ExecutorConf(TEAM_NAME)
    assert team_conf.get("database", "sql_alchemy_conn") == os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert team_conf.get("core", "dags_folder") == str(sandbox.airflow_home / "dags")


def test_failure_messages_are_bounded() -> None:
    """A sentence repeated per poll is shown once with its count; a long finding loses its middle, saying so."""
    from conformance.harness.context import bounded

    assert bounded("task x still runs; task x still runs; task x still runs; y") == "task x still runs (x3); y"
    long = bounded("; ".join(f"task {i} lost" for i in range(2000)), limit=400)
    assert len(long) < 500 and "characters cut" in long and long.startswith("task 0 lost")


def test_transcript_folds_repeated_polls() -> None:
    from conformance.harness.scheduler import _collapse_cycles, _Line

    lines = [_Line(0, 0, "A: queue(x)")] + [_Line(i, i, text) for i in range(10) for text in
                                           ("A: heartbeat() (1 ms)", "A: get_event_buffer() -> {} (0 ms)")]
    rendered = _collapse_cycles([*lines, _Line(11, 11, "A: event x -> success")])
    assert len(rendered) == 5 and "x10" in rendered[3] and rendered[-1].endswith("event x -> success")


def test_raised_at_names_the_executors_own_frame_first() -> None:
    """A library raised (json here, urllib3 for a real executor): the executor's own line comes first."""
    import json

    from conformance.harness.outcomes import cause_of, describe_exception

    def executor_code() -> None:
        json.loads("{not json")

    try:
        executor_code()
    except ValueError as exc:
        text = describe_exception(exc)
        assert "(your code)" in text and "in executor_code" in text.split("\n")[2], text
        assert "test_sandbox.py" in cause_of(exc)


def test_executor_calls_write_relative_paths_into_the_sandbox(sandbox: Sandbox, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An executor that writes into its working directory writes into the sandbox, not the user's folder."""
    from conformance.harness.scheduler import SchedulerHarness
    from reference_executors import LocalExecutor

    class ScribblesInCwd(LocalExecutor):
        def start(self) -> None:
            Path("scribble.txt").write_text("state")
            super().start()

    monkeypatch.chdir(tmp_path)
    h = SchedulerHarness(ScribblesInCwd(parallelism=1), sandbox).start()
    h.end()
    assert not (tmp_path / "scribble.txt").exists() and (sandbox.workdir / "scribble.txt").exists()
    assert Path.cwd() == tmp_path
