"""``executor-conformance``: certify an executor, list and explain checks, merge reports.

``certify`` is a front end to the certification core (``conformance.certify``): checks overlap on
worker processes, progress is one line per check, the executor's own output goes to ``certify.log``
beside the report. Given any pytest option (``-k``, ``-x``, ``-n``, ``--junitxml``) or ``--coverage``, it
runs the same certification as a pytest session (``pytest --executor ...``) instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import conformance


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="executor-conformance",
        description="Certify an Apache Airflow executor against the contract Airflow's scheduler relies on.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {conformance.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    certify = sub.add_parser("certify", help="run the suite against an executor and write a report")
    certify.add_argument("executor", metavar="DOTTED.PATH", nargs="?",
                         help="e.g. my_pkg.executors.MyExecutor (default: executor under [tool.executor-conformance] "
                              "in ./pyproject.toml)")
    certify.add_argument("--report", metavar="DIR", help="report directory (default reports/<executor-name>/)")
    certify.add_argument("--executor-kwargs", metavar="JSON", help="constructor kwargs as a JSON object")
    certify.add_argument("--backend-driver", metavar="DOTTED.PATH",
                         help="a BackendDriver that injects backend faults (SPEC HB-5)")
    certify.add_argument("--e2e", action="store_true",
                         help="also run the end-to-end tier under a real Airflow scheduler (takes minutes)")
    certify.add_argument("--time-scale", metavar="FACTOR", type=float,
                         help="multiply every time budget (a slow backend or a busy machine; default 1)")
    certify.add_argument("--strict", action="store_true",
                         help="no exceptions: expected failures and advice fail the certification")
    certify.add_argument("--max-minutes", metavar="M", type=float,
                         help="a ceiling for the whole run (a CI job's limit): what it cuts short is inconclusive, "
                              "never a failure or a pass")
    certify.add_argument("--overlap", metavar="N", type=int,
                         help="checks run at once, each on its own executor and sandbox (default: sized to the "
                              "machine and the executor's round trip; 1: one at a time)")
    certify.add_argument("--seed", type=int, metavar="N", help="seed of the state machine (the report records it)")
    certify.add_argument("--checks", metavar="ID[,ID...]", help="run only these checks (the verdict is PARTIAL)")
    certify.add_argument("--coverage", action="store_true",
                         help="measure line and branch coverage of the executor's package, task processes included "
                              "(costs time: about 1.8x for the reference LocalExecutor)")
    certify.add_argument("--airflow-info", action="store_true", help="print the installed Airflow and exit")
    certify.epilog = ("Any other argument is passed to pytest, and the run becomes a pytest session "
                      "(e.g. -k heartbeat, -x, -n 2, --junitxml=FILE).")

    sub.add_parser("checks", help="print the catalogue of checks")
    explain = sub.add_parser("explain", help="explain one check: what it asserts, why, how to fix")
    explain.add_argument("check_id")
    diff = sub.add_parser("diff", help="compare two certificates; exit 1 when a check newly fails")
    diff.add_argument("old", metavar="OLD", help="a report.json or a folder of reports")
    diff.add_argument("new", metavar="NEW", help="a report.json or a folder of reports")
    matrix = sub.add_parser("matrix", help="merge report.json files into one Markdown matrix")
    matrix.add_argument("reports", nargs="+", metavar="REPORT_OR_DIR")
    matrix.add_argument("--output", metavar="FILE", help="write the table here as well as to stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "certify":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = extra
    if args.command == "certify":
        return _certify(args)
    if args.command == "checks":
        return _checks()
    if args.command == "explain":
        return _explain(args.check_id)
    if args.command == "diff":
        return _diff(Path(args.old), Path(args.new))
    if args.command == "matrix":
        return _matrix(args.reports, args.output)
    parser.print_help()
    return 0


def _certify(args: argparse.Namespace) -> int:
    if args.airflow_info:
        from conformance.harness import airflow_compat as compat

        print(f"Airflow {compat.version_string()}; Python {sys.version.split()[0]}")
        return 0

    from conformance.certification.settings import pyproject_settings

    executor = args.executor or pyproject_settings(Path.cwd()).get("executor")
    if not executor:
        print("executor-conformance certify: name the executor (pkg.mod.Class), or set executor under "
              "[tool.executor-conformance] in ./pyproject.toml", file=sys.stderr)
        return 4
    name = str(executor).replace(":", ".").rsplit(".", 1)[-1]
    report = args.report or os.path.join("reports", name)
    extra = [a for a in args.pytest_args if a != "--"]
    if extra or args.coverage:
        return _certify_with_pytest(args, str(executor), report, extra)
    return _certify_with_core(args, str(executor), Path(report))


def _certify_with_core(args: argparse.Namespace, executor: str, report: Path) -> int:
    """Exit 0: certified (or PARTIAL without failures); 1: not; 4: bad input."""
    from conformance.certification import CertifyOptions, certify
    from conformance.certification.settings import pyproject_settings
    from conformance.certification.summary import ansi, publish, summary_lines
    from conformance.harness.profile import ProfileError, parse_kwargs

    table = pyproject_settings(Path.cwd())
    colour = sys.stdout.isatty()
    try:
        kwargs_json = args.executor_kwargs or (json.dumps(table["executor_kwargs"])
                                               if isinstance(table.get("executor_kwargs"), dict)
                                               else table.get("executor_kwargs"))
        options = CertifyOptions(
            executor_kwargs=parse_kwargs(kwargs_json),
            backend_driver=args.backend_driver or table.get("backend_driver"),
            checks=tuple(c.strip() for c in (args.checks or "").split(",") if c.strip()),
            expected_failures=dict(table.get("expected_failures") or {}), strict=args.strict, e2e=args.e2e,
            time_scale=float(args.time_scale or table.get("time_scale") or 1.0), seed=args.seed,
            max_minutes=args.max_minutes, overlap=args.overlap, reproducer_dir=report.resolve() / "reproducers")
    except ProfileError as exc:
        print(f"executor-conformance certify: {exc}", file=sys.stderr)
        return 4
    report.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(report / "reproducers", ignore_errors=True)  # only this run's reproducers belong with it
    log = report / "certify.log"
    print(f"executor-conformance {conformance.__version__}: certifying {executor} "
          f"(the executor's own output: {log})", flush=True)

    def progress(result: Any) -> None:
        text = f"  {result.outcome.value:<15} {result.check_id} ({result.seconds:.1f}s)"
        style = {"red": True} if result.outcome.value in ("failed", "inconclusive") else {}
        print(ansi(text, style, colour), file=screen, flush=True)

    def said(line: str) -> None:
        print(line, file=screen, flush=True)

    with _output_to(log) as screen:
        try:
            certificate = certify(executor, options, on_result=progress, on_progress=said)
        except ProfileError as exc:
            print(f"executor-conformance certify: {exc}", file=screen)
            refused = True
        else:
            refused = False
    if refused:
        with contextlib.suppress(OSError):
            if log.stat().st_size == 0:
                log.unlink()  # a refused run leaves no empty log behind
        return 4
    for text, style in summary_lines(certificate):
        print(ansi(text, style, colour))
    for text in publish(certificate, report, os.environ.get("GITHUB_STEP_SUMMARY")):
        print(text)
    verdict = certificate.verdict
    return 0 if verdict.kind.certifies or (verdict.kind.value == "PARTIAL" and not verdict.blocking) else 1


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[Any]:
    """While certifying, this process's stdout and stderr (the executor's logging, Airflow's, task output)
    go to ``log``; the progress goes to the terminal, through the stream this yields."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    screen = os.fdopen(os.dup(1), "w")
    with open(log, "wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield screen
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            screen.close()


def _certify_with_pytest(args: argparse.Namespace, executor: str, report: str, extra: list[str]) -> int:
    import pytest

    pytest_args = ["--executor", executor, "--conformance-report", report, "-p", "no:cacheprovider"]
    for flag, value in (("--executor-kwargs", args.executor_kwargs), ("--backend-driver", args.backend_driver),
                        ("--conformance-time-scale", args.time_scale), ("--conformance-seed", args.seed),
                        ("--conformance-max-minutes", args.max_minutes), ("--checks", args.checks)):
        if value is not None:
            pytest_args += [flag, str(value)]
    pytest_args += [flag for flag, on in (("--e2e", args.e2e), ("--conformance-strict", args.strict),
                                          ("--conformance-coverage", args.coverage)) if on]
    if not any(a.startswith("-n") or a == "--numprocesses" for a in extra) and (os.cpu_count() or 1) >= 4:
        extra += ["-n", "auto", "--dist", "loadgroup"]  # xdist pays off with spare cores; sandboxes are per worker
    return int(pytest.main(pytest_args + extra))


def _checks() -> int:
    from conformance import checks

    specs = checks.catalogue()
    width = max(len(i) for i in specs)
    for check_id in sorted(specs):
        spec = specs[check_id]
        needs = ",".join(spec.needs) or "-"
        print(f"{check_id:<{width}}  {spec.clause:<7} {needs:<24} {spec.title}")
    return 0


def _explain(check_id: str) -> int:
    from conformance import checks

    try:
        spec = checks.get(check_id)  # its KeyError says "did you mean" for a typo
    except KeyError as exc:
        print(f"executor-conformance: {exc.args[0]} (see `executor-conformance checks`)", file=sys.stderr)
        return 4
    print(f"{spec.id} (SPEC {spec.clause}; applies to {spec.applies_text}"
          f"{'; needs ' + ', '.join(spec.needs) if spec.needs else ''})")
    print(f"\nDemands: {spec.title}.")
    print(f"How it is checked: {spec.doc}")
    print(f"\nWhy Airflow needs it: {spec.expects}")
    print(f"\nHow to fix: {spec.fix}")
    return 0


def _diff(old: Path, new: Path) -> int:
    """Exit 0: nothing newly fails; 1: a regression; 4: a report could not be read."""
    from conformance.reporting.diff import diff_paths

    try:
        diffs = diff_paths(old, new)
    except ValueError as exc:
        print(f"executor-conformance diff: {exc}", file=sys.stderr)
        return 4
    print("\n\n".join(d.render() for d in diffs))
    return 1 if any(d.regressed for d in diffs) else 0


def _matrix(paths: list[str], output: str | None) -> int:
    """A report that cannot be read is a warning (the matrix shows the others); none readable is an error."""
    from conformance.reporting.matrix import render_matrix
    from conformance.reporting.report import load_report

    reports = []
    for raw in paths:
        try:
            reports.append(load_report(Path(raw)))
        except ValueError as exc:
            print(f"executor-conformance matrix: warning: {exc}; left out of the matrix", file=sys.stderr)
    if not reports:
        print("executor-conformance matrix: no readable report", file=sys.stderr)
        return 4
    table = render_matrix(reports)
    print(table)
    if output:
        Path(output).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
