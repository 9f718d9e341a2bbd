"""Benchmarks on this machine: certification wall time, per-area time, state-machine examples/s,
time to a verdict for broken executors, and the reference LocalExecutor's throughput against
Airflow's own LocalExecutor.

    python benchmarks/bench.py [--runs 3] [--tasks 200] [--rounds 3] [--only throughput] [--json out.json]
    python benchmarks/bench.py --only detection [--seeds 6]   # programmes until each defect is caught
    python benchmarks/bench.py --only false-alarms [--seeds 20] [--designs RunsInSync,...]   # correct executors

Measured, never asserted: tests do not time things; this script prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def certification_wall(executor: str, runs: int) -> tuple[float, dict[str, float]]:
    """Median wall time of a contract-tier run (all checks but the state machine) in a new process."""
    walls = []
    per_area: dict[str, float] = defaultdict(float)
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--executor", executor,
                            "-m", "not stateful", "--conformance-report", tmp], cwd=tmp, check=True,
                           capture_output=True)
            walls.append(time.perf_counter() - started)
            if i == 0:
                report = json.loads((Path(tmp) / "report.json").read_text())
                for check in report["checks"]:
                    per_area[check["area"]] += check["seconds"]
    return statistics.median(walls), dict(per_area)


def time_to_verdict(executor: str) -> tuple[float, str]:
    """Wall time of a whole certification (no e2e) of a broken executor, in a new process, and its
    verdict line: the preflight should stop such a run in seconds, not minutes."""
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--executor", executor],
                              cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    verdict = next((line for line in done.stdout.splitlines() if line.startswith("VERDICT:")), "no verdict")
    return wall, verdict


def e2e_wall(executor: str) -> tuple[float, dict[str, float]]:
    """Wall time of the e2e tier alone (``certify --e2e -m e2e``: deployment up, five scenarios, down)."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "conformance.cli", "certify", executor, "--e2e", "--report", tmp,
                        "--", "-q", "-m", "e2e"], cwd=tmp, check=True, capture_output=True)
        wall = time.perf_counter() - started
        report = json.loads((Path(tmp) / "report.json").read_text())
    return wall, {c["id"]: c["seconds"] for c in report["checks"]}


def state_machine_rate(executor: str) -> dict[str, float]:
    """The ``ci`` state machine on its own (calibrated floors): programmes per second, steps and tasks."""
    from conformance.groundtruth.sandbox import ensure_active
    from conformance.harness.profile import ExecutorProfile
    from conformance.harness.stateful import run_stateful

    explored = run_stateful(ExecutorProfile.from_path(executor), ensure_active())
    return {"programmes": explored.examples, "seconds": round(explored.seconds, 2),
            "programmes_per_s": round(explored.examples / explored.seconds, 2),
            "steps": explored.steps, "tasks": explored.tasks,
            "tasks_per_programme": round(explored.tasks / max(explored.examples, 1), 1),
            "most_tasks_through_one_executor": explored.most_tasks_in_one_programme}


def whole_certification(executor: str) -> dict[str, Any]:
    """Wall time of a whole contract-tier certification in a new process, the state machine's share, and
    the verdict: for the reference executors (goal: seconds) and for a failing executor (the state
    machine's generation and shrinking must not dominate)."""
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--executor", executor,
                               "--conformance-report", tmp], cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        report = json.loads((Path(tmp) / "report.json").read_text())
    stateful = next((c for c in report["checks"] if c["id"] == "stateful.scheduler_action_sequences"), {})
    verdict = next((line for line in done.stdout.splitlines() if line.startswith("VERDICT:")), "no verdict")
    return {"wall_s": round(wall, 1), "state_machine_s": round(float(stateful.get("seconds", 0.0)), 1),
            "state_machine": stateful.get("status"), "verdict": verdict}


#: executors whose end() blocked past its budget after a throughput round (the round's figures stand)
END_HANGS: dict[str, int] = defaultdict(int)


def throughput(executor_cls: type, tasks: int, parallelism: int = 4) -> tuple[float, float]:
    """tasks/s and median queue->terminal-event latency (ms) for no-op probes."""
    from conformance.groundtruth.probes import Probe, ProbeKind
    from conformance.groundtruth.sandbox import ensure_active
    from conformance.harness.scheduler import CallTimedOut, SchedulerHarness

    h = SchedulerHarness(executor_cls(parallelism=parallelism), ensure_active(), name="bench").start()
    queued = [h.make(Probe.new(ProbeKind.OK)) for _ in range(tasks)]
    started = time.perf_counter()
    for task in queued:
        h.queue_task(task)
    h.drain_terminal(queued, deadline=600)
    took = time.perf_counter() - started
    latencies = [(h.terminal_events(t.key)[0].at - t.queued_at) * 1000 for t in queued]
    try:
        h.end()
    except CallTimedOut:  # Airflow 3.3's LocalExecutor, now and then (reports/FINDINGS.md); the sandbox ends it
        END_HANGS[executor_cls.__module__] += 1
    return tasks / took, statistics.median(latencies)


def compare_throughput(executors: dict[str, type], tasks: int, rounds: int) -> dict[str, dict[str, float]]:
    """Each executor once with a few tasks first (one-time costs: Airflow's metrics registry is read at
    the first heartbeat of the process, imports), then ``rounds`` rounds in alternating order; medians."""
    for cls in executors.values():
        throughput(cls, 12)
    rates: dict[str, list[float]] = defaultdict(list)
    latencies: dict[str, list[float]] = defaultdict(list)
    for index in range(rounds):
        order = list(executors.items())
        for label, cls in order if index % 2 == 0 else reversed(order):
            rate, latency = throughput(cls, tasks)
            rates[label].append(rate)
            latencies[label].append(latency)
    return {label: {"tasks_per_s": round(statistics.median(rates[label]), 1),
                    "median_latency_ms": round(statistics.median(latencies[label]), 1),
                    "rounds": [round(r, 1) for r in rates[label]]} for label in executors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per executor (alternating order)")
    parser.add_argument("--only", choices=["throughput", "stateful", "latency", "detection", "false-alarms"],
                        help="measure only this")
    parser.add_argument("--latencies", default="0,1,3,5", help="round trips (s) of the latency sweep")
    parser.add_argument("--loads", default="idle,busy", help="machine loads of the latency sweep")
    parser.add_argument("--svg", metavar="FILE", help="the latency sweep's plot (default benchmarks/latency.svg)")
    parser.add_argument("--seeds", type=int, default=6, help="seeds per control of the detection sweep")
    parser.add_argument("--controls", help="the detection sweep's controls (comma-separated class names)")
    parser.add_argument("--references", action="store_true",
                        help="the detection sweep also runs the correct executors (false alarms)")
    parser.add_argument("--designs", help="the false-alarm sweep's correct executors (comma-separated names)")
    parser.add_argument("--examples", type=int, help="programmes per seed of the false-alarm sweep")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--e2e", action="store_true", help="also time the e2e tier (a real scheduler; minutes)")
    args = parser.parse_args()
    from conformance.groundtruth.sandbox import ensure_active

    box = ensure_active()
    try:
        return _measure(args)
    finally:
        box.deactivate()  # stops what the run started and removes the sandbox


def _measure_throughput(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from airflow.executors.local_executor import LocalExecutor as AirflowLocal

    from reference_executors import LocalExecutor as ReferenceLocal

    compared = compare_throughput({"reference LocalExecutor": ReferenceLocal, "Airflow LocalExecutor": AirflowLocal},
                                  args.tasks, args.rounds)
    if END_HANGS:
        results["throughput end() hangs"] = dict(END_HANGS)
        print(f"end() blocked past its budget after a round: {dict(END_HANGS)}")
    for label, figures in compared.items():
        results[f"throughput {label}"] = figures
        print(f"{label}: {args.tasks} no-op probes, parallelism 4: {figures['tasks_per_s']:.1f} tasks/s "
              f"(rounds {figures['rounds']}), median queue->event {figures['median_latency_ms']:.0f} ms")


def _measure_stateful(results: dict[str, Any]) -> None:
    """The state machine's exploration on the reference executors, and whole certifications: the reference
    LocalExecutor (goal: seconds) and failing executors only the state machine catches (its share)."""
    for name in ("reference_executors.LocalExecutor", "reference_executors.SequentialExecutor"):
        figures = state_machine_rate(name)
        results[f"stateful {name}"] = figures
        print(f"state machine (ci) on {name}: {figures}")
    for name in ("reference_executors.LocalExecutor", "tests.broken_executors.RebuildsKeyFromNames",
                 "tests.broken_executors.DropsUnservedQueue"):
        figures = whole_certification(name)
        results[f"whole certification {name}"] = figures
        print(f"whole contract-tier certification of {name}: {figures}")


def _measure(args: argparse.Namespace) -> int:
    import airflow

    results: dict[str, Any] = {"airflow": airflow.__version__, "cores": os.cpu_count()}
    print(f"Airflow {airflow.__version__}, {os.cpu_count()} cores")
    if args.only == "throughput":
        _measure_throughput(args, results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.only == "latency":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import latency

        swept = latency.sweep([float(x) for x in args.latencies.split(",")], tuple(args.loads.split(",")))
        results["latency sweep"] = swept
        print(latency.markdown(swept))
        Path(args.svg or Path(__file__).with_name("latency.svg")).write_text(latency.svg(swept))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.only == "detection":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import detection

        found = detection.sweep(args.seeds, args.controls)
        results["detection"] = found
        if args.references:
            results["false alarms"] = detection.false_alarms(args.seeds)
        print(detection.markdown(found))
        if "false alarms" in results:
            print(detection.false_alarm_markdown(results["false alarms"]))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.only == "false-alarms":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import detection

        results["false alarms"] = detection.false_alarms(args.seeds, args.designs, args.examples)
        print(detection.false_alarm_markdown(results["false alarms"]))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.only == "stateful":
        _measure_stateful(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    for name in ("reference_executors.LocalExecutor", "reference_executors.SequentialExecutor"):
        wall, areas = certification_wall(name, args.runs)
        results[f"certify {name}"] = {"median_wall_s": round(wall, 2), "per_area_s": areas}
        print(f"contract-tier certification of {name}: median {wall:.2f} s over {args.runs} runs")
        print("    per area (s): " + ", ".join(f"{a} {s:.2f}" for a, s in sorted(areas.items())))
    _measure_stateful(results)
    for name in ("tests.broken_executors.HeartbeatRaises", "tests.broken_executors.NeverReportsResults"):
        wall, verdict = time_to_verdict(name)
        results[f"verdict {name}"] = {"wall_s": round(wall, 1), "verdict": verdict}
        print(f"time to a verdict for {name}: {wall:.1f} s ({verdict})")
    _measure_throughput(args, results)
    if args.e2e:
        for name in ("reference_executors.LocalExecutor", "reference_executors.SequentialExecutor"):
            wall, checks = e2e_wall(name)
            results[f"e2e {name}"] = {"wall_s": round(wall, 1), "per_check_s": checks}
            print(f"e2e tier of {name}: {wall:.1f} s; " + ", ".join(f"{c.split('.', 1)[1]} {s:.1f}"
                                                                   for c, s in sorted(checks.items())))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
