"""Broken executors that the ``cli`` checks must catch, each next to the check
and the message it must produce (``CONTROLS``)."""

from __future__ import annotations

from typing import Any

from reference_executors.local import LocalExecutor
from tests.controls._shared import Control


class CollidingCliCommands(LocalExecutor):
    @staticmethod
    def get_cli_commands() -> list[Any]:
        from airflow.cli.cli_config import ActionCommand, GroupCommand

        return [GroupCommand(name="tasks", help="shadows airflow tasks", subcommands=(
            ActionCommand(name="list", help="x", func=lambda args: None, args=()),))]


CONTROLS: dict[str, list[Control]] = {
    "cli.commands_are_valid": [Control(CollidingCliCommands, "collide with Airflow's own commands")],
}
