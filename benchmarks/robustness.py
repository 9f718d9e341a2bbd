"""Robustness: do verdicts hold on a busy machine? Certify executors repeatedly, idle and busy.

    python benchmarks/robustness.py [--runs 10] [--executors A,B] [--controls] [--positive] [--json out.json]

For each executor, ``--runs`` contract-tier certifications (all checks but the state machine) in a
new process, first on the idle machine, then beside CPU-bound loops (twice as many as cores, like
``../shared/tools/busy``). Reported per executor and condition: how many runs were NOT CERTIFIED where
the idle verdict was CERTIFIED (false failures; goal 0), inconclusive checks, the median wall time and
the busy/idle ratio (goal <= 2), and processes left behind after the run (goal 0). ``--controls``
also certifies broken executors under load and reports whether each is still caught (goal: all).

``--positive`` certifies situations that must not change a verdict (through the CLI, checks overlapped):
a correct executor behind a slow backend must be CERTIFIED; one whose ``end()`` hangs now and then must
fail LIFE-7 (and the preflight naming it) and nothing else -- never a run where every check is *not run*.

Measured, never asserted: this prints a table; tests do not time things.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_EXECUTORS = ["reference_executors.LocalExecutor", "reference_executors.SequentialExecutor",
                     "airflow.executors.local_executor.LocalExecutor"]
#: broken executors certified under load: (dotted path, the check that must catch it, extra options).
#: Caught means NOT CERTIFIED with that check failed -- or the preflight failed and stopped the run
#: (then the check is "not run": the preflight caught the same defect first).
_DRIVER = ["--backend-driver", "reference_executors.faults.StateDirectoryOutage"]
CONTROLS = [("tests.broken_executors.NeverStarts", "heartbeat.triggers_queued_work", []),
            ("tests.broken_executors.AlwaysSuccess", "events.one_terminal_event_matching_journal", []),
            ("tests.broken_executors.GuessesVerdictInOutage", "heartbeat.survives_transient_backend_error", _DRIVER),
            ("tests.broken_executors.ForgetsRunning", "heartbeat.respects_parallelism", []),
            ("tests.broken_executors.AdoptNeverReports", "adoption.adopted_tasks_finish_without_rerun", []),
            ("tests.broken_executors.SerialButClaimsParallel", "attributes.parallel_executor_overlaps", [])]


#: (dotted path, extra CLI arguments, the checks allowed to fail: empty means it must be CERTIFIED)
_SLOW = ["--executor-kwargs", '{"start_latency": 4, "report_latency": 3}']
POSITIVE = [("tests.slow_backend.SlowReferenceLocal", _SLOW, set()),
            # "once" is once per process: overlapped, every worker's first end() would hang (and each check that
            # met it names it); one process shows the intermittent hang as the issue saw it
            ("tests.test_time_model.EndHangsOnce", ["--overlap", "1"],
             {"lifecycle.end_returns_with_work_in_flight", "preflight.task_runs_end_to_end"})]


@contextlib.contextmanager
def busy(enabled: bool) -> Iterator[None]:
    """CPU-bound loops beside the run, twice as many as cores; stopped by PID afterwards."""
    loops = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2 * (os.cpu_count() or 1))] \
        if enabled else []
    try:
        yield
    finally:
        for proc in loops:
            proc.kill()
            proc.wait()


def _our_processes(marker: str) -> list[str]:
    """Processes still alive whose command line or environment mentions this run's folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            needle = marker.encode()
            if needle in (entry / "environ").read_bytes() or needle in (entry / "cmdline").read_bytes():
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80])
        except OSError:
            continue
    return found


def certify(executor: str, extra: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        started = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--executor", executor,
                               "-m", "not stateful", "--conformance-report", tmp, *extra], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - started
        report_path = Path(tmp) / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        leftovers = _our_processes(tmp)
    statuses = {c["id"]: c["status"] for c in report.get("checks", [])}
    return {"wall": wall, "certified": bool(report.get("certified")), "exit": done.returncode,
            "failed": sorted(k for k, v in statuses.items() if v == "failed"),
            "preflight": report.get("preflight"),
            "inconclusive": sorted(k for k, v in statuses.items() if v == "inconclusive"),
            "leftovers": leftovers, "time_model": report.get("time_model")}


def certify_cli(executor: str, extra: list[str]) -> dict[str, Any]:
    """A whole certification through ``executor-conformance certify`` (the core, checks overlapped)."""
    with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        started = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        subprocess.run([sys.executable, "-m", "conformance.cli", "certify", executor, "--report", tmp, *extra],
                       cwd=tmp, env=env, capture_output=True, text=True, timeout=3600, check=False)
        wall = time.perf_counter() - started
        report = json.loads((Path(tmp) / "report.json").read_text())
        leftovers = _our_processes(tmp)
    statuses = {c["id"]: c["status"] for c in report.get("checks", [])}
    return {"wall": wall, "verdict": report["verdict"], "leftovers": leftovers,
            "not_passed": sorted(k for k, v in statuses.items() if v in ("failed", "inconclusive", "not run"))}


def _positive(results: dict[str, Any]) -> None:
    for dotted, extra, allowed in POSITIVE:
        for condition in ("idle", "busy"):
            with busy(condition == "busy"):
                run = certify_cli(dotted, extra)
            ok = (run["verdict"] == "CERTIFIED") if not allowed else \
                (bool(run["not_passed"]) and set(run["not_passed"]) <= allowed)
            print(f"positive control {dotted} ({condition}): {run['verdict']}, not passed {run['not_passed']} -- "
                  f"{'as it must be' if ok else 'WRONG'} ({run['wall']:.0f} s, leftovers {len(run['leftovers'])})")
            results[f"positive:{dotted}:{condition}"] = {**run, "ok": ok}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--executors", default=",".join(DEFAULT_EXECUTORS))
    parser.add_argument("--controls", action="store_true")
    parser.add_argument("--only-controls", action="store_true", help="skip the certification runs")
    parser.add_argument("--positive", action="store_true", help="also the situations that must not change a verdict")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    print(f"{'executor':<50} {'cond':<5} {'certified':>9} {'false fail':>10} {'inconcl.':>8} "
          f"{'median s':>8} {'leftover':>8}")
    for executor in [] if args.only_controls or args.runs == 0 else args.executors.split(","):
        per: dict[str, list[dict[str, Any]]] = {}
        for condition in ("idle", "busy"):
            with busy(condition == "busy"):
                per[condition] = [certify(executor, []) for _ in range(args.runs)]
        idle_ok = all(r["certified"] for r in per["idle"])
        for condition, runs in per.items():
            certified = sum(r["certified"] for r in runs)
            false_failures = len(runs) - certified if idle_ok else "n/a"
            print(f"{executor:<50} {condition:<5} {certified:>6}/{len(runs):<2} {false_failures!s:>10} "
                  f"{sum(len(r['inconclusive']) for r in runs):>8} {statistics.median(r['wall'] for r in runs):>8.1f} "
                  f"{sum(len(r['leftovers']) for r in runs):>8}")
            for r in runs:
                if r["failed"] or r["inconclusive"]:
                    print(f"    {condition}: failed {r['failed']} inconclusive {r['inconclusive']}")
        ratio = statistics.median(r["wall"] for r in per["busy"]) / statistics.median(r["wall"] for r in per["idle"])
        print(f"{'':<50} busy/idle wall-time ratio {ratio:.2f}")
        results[executor] = {**per, "ratio": ratio}
    if args.controls or args.only_controls:
        with busy(True):
            for dotted, check_id, extra in CONTROLS:
                run = certify(dotted, ["--checks", check_id, *extra])
                by_preflight = run["preflight"] not in (None, "passed")
                caught = not run["certified"] and (check_id in run["failed"] or by_preflight)
                how = f"preflight: {run['preflight']}"[:90] if by_preflight else check_id
                print(f"control under load: {dotted}: {'caught by ' + how if caught else 'NOT CAUGHT'} "
                      f"({run['wall']:.1f} s)")
                results[f"control:{dotted}"] = {**run, "caught": caught}
    if args.positive:
        _positive(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
