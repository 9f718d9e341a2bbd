"""SPEC CLI-1 and LOG-1: commands vended to the ``airflow`` CLI, and task logs for the UI."""

from __future__ import annotations

import inspect

from conformance.groundtruth.probes import Probe, ProbeKind
from conformance.harness import airflow_compat as compat
from conformance.harness.catalog import check
from conformance.harness.context import CheckContext


def _core_command_names() -> set[str]:
    from airflow.cli import cli_config

    return {cmd.name for cmd in cli_config.core_commands}


@check("cli.commands_are_valid", clause="CLI-1", needs=("cli_commands",),
       title="get_cli_commands() is a staticmethod returning parser-ready, non-colliding command groups",
       expects="The CLI calls get_cli_commands() on the executor *class* and adds each command to "
               "Airflow's argparse tree; a name that collides shadows a core command.",
       fix="Declare @staticmethod get_cli_commands() returning GroupCommand/ActionCommand objects with "
           "unique names.")
def commands_are_valid(ctx: CheckContext) -> None:
    """Static, a list of GroupCommand/ActionCommand, no collision, buildable into a parser."""
    from airflow.cli.cli_config import ActionCommand, GroupCommand

    cls = ctx.profile.executor_type()
    ctx.expect(isinstance(inspect.getattr_static(cls, "get_cli_commands"), staticmethod),
               "get_cli_commands is not a staticmethod")
    commands = cls.get_cli_commands()
    ctx.expect(isinstance(commands, list) and all(isinstance(c, (GroupCommand, ActionCommand)) for c in commands),
               f"get_cli_commands() returned {commands!r}, not a list of GroupCommand/ActionCommand")
    clash = sorted({c.name for c in commands} & _core_command_names())
    ctx.expect(not clash, f"command names collide with Airflow's own commands: {clash}")
    try:
        cls._get_parser()
    except BaseException as exc:
        raise ctx.fail(f"Airflow's parser rejected the commands: {type(exc).__name__}: {exc}") from None


@check("logs.get_task_log_shape", clause="LOG-1",
       title="get_task_log(ti, try_number) returns two lists and never raises for a task without logs",
       expects="FileTaskHandler asks the executor for logs whenever a user opens a task's log page.",
       fix="Return ([], []) when there is nothing, and (messages, log_lines) lists otherwise.")
def get_task_log_shape(ctx: CheckContext) -> None:
    """For a task that never ran and for one that did: (list, list)."""
    h = ctx.harness()
    never = compat.make_task("conformance_dag", "never_ran_task")
    task = h.queue(Probe.new(ProbeKind.OK))
    h.drain_terminal([task])
    for label, ti in (("a task that never ran", never.ti), ("a task that ran", task.ti)):
        result = h.call(f"get_task_log({label}, 1)", h.executor.get_task_log, ti, 1)
        ctx.expect(isinstance(result, tuple) and len(result) == 2 and all(isinstance(x, list) for x in result),
                   f"get_task_log for {label} returned {result!r}")
