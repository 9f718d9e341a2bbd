"""``airflow reference-executors ...``: inspect and clean the reference executors' state directory."""

from __future__ import annotations

import argparse
import json
from typing import Any


def list_tasks(args: argparse.Namespace) -> None:
    """Print every task recorded in the state directory, with its verdict if it finished."""
    from reference_executors._base import default_state_dir

    state_dir = default_state_dir()
    for record in sorted(state_dir.glob("*.json")):
        if record.name.endswith(".result.json"):
            continue
        data = json.loads(record.read_text())
        result = record.with_name(record.stem + ".result.json")
        verdict = json.loads(result.read_text())["state"] if result.exists() else "running or lost"
        print(f"{record.stem}\t{'/'.join(map(str, data['key']))}\tpid={data['pid']}\t{verdict}")


def clean(args: argparse.Namespace) -> None:
    """Remove records of finished tasks that no scheduler adopted (their verdict was never read)."""
    from reference_executors._base import default_state_dir

    removed = 0
    for result in default_state_dir().glob("*.result.json"):
        result.unlink()
        result.with_name(result.name.replace(".result.json", ".json")).unlink(missing_ok=True)
        removed += 1
    print(f"removed {removed} finished task records")


def command_groups() -> list[Any]:
    from airflow.cli.cli_config import ActionCommand, GroupCommand

    return [GroupCommand(
        name="reference-executors",
        help="Inspect the state directory of the reference executors",
        subcommands=(
            ActionCommand(name="list-tasks", help="List recorded tasks and their verdicts",
                          func=list_tasks, args=()),
            ActionCommand(name="clean", help="Remove records of finished tasks", func=clean, args=()),
        ),
    )]
