"""The command table of the README and the docs, generated from the Typer app so that it lists
every option each command takes and cannot drift from the CLI.

`python -m optbench.ui.command_table` prints it; `--write FILE ...` replaces the table between
the `<!-- commands -->` and `<!-- /commands -->` markers of each file (tests/test_readme.py
checks that they hold what this prints).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import typer

from optbench.ui.cli import app

START, END = "<!-- commands -->", "<!-- /commands -->"


def _choices(param: Any, context: Any) -> list[str]:
    """The values an option or argument takes, when it is a choice (an enum)."""
    choices = getattr(getattr(param, "type", None), "choices", None)  # click's Choice
    if choices:
        return [str(getattr(choice, "value", choice)) for choice in choices]
    display = getattr(param, "display_type", None)  # typer's own click
    shown = display(context) if callable(display) else ""
    return shown.strip("<>").split("|") if "|" in shown else []


def _metavar(param: Any, context: Any) -> str:
    choices = _choices(param, context)
    if choices:  # argparse's spelling: a | would end the markdown table's cell
        return "{" + ",".join(choices) + "}"
    if param.metavar:
        return param.metavar
    if param.param_type_name == "argument":
        return param.name.upper()
    longest = max(param.opts, key=len)
    return longest.lstrip("-").split("-")[-1].upper()  # --results-dir DIR


def usage(name: str, command: Any) -> str:
    """`optbench NAME ARGS [--option VALUE] [--flag] ...`: every parameter of the command."""
    context = command.make_context(name, [], resilient_parsing=True)
    parts = [f"optbench {name}"]
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            part = _metavar(param, context) + ("..." if param.nargs == -1 else "")
        else:
            flag = max(param.opts, key=len)
            part = flag if param.is_flag else f"{flag} {_metavar(param, context)}"
            part += " ..." if param.multiple else ""
        parts.append(part if param.required else f"[{part}]")
    return " ".join(parts)


def summary(command: Any) -> str:
    """The first paragraph of the command's help, on one line."""
    first = (command.help or "").strip().split("\n\n")[0]
    return " ".join(first.split())


def command_table() -> str:
    """The markdown table: one row per command, its usage and what it does."""
    group = typer.main.get_command(app)
    rows = ["| command | what it does |", "|---|---|"]
    for name, command in group.commands.items():
        rows.append(f"| `{usage(name, command)}` | {summary(command)} |")
    return "\n".join(rows)


def between_markers(text: str) -> str | None:
    """The table a file holds between the markers, or None when it has none."""
    found = re.search(re.escape(START) + "(.*?)" + re.escape(END), text, re.S)
    return found.group(1).strip("\n") if found else None


def write(path: Path) -> None:
    """Replace the table between the markers of `path` with the generated one."""
    text = path.read_text()
    if between_markers(text) is None:
        raise SystemExit(f"{path}: no {START} ... {END} markers")
    pattern = re.escape(START) + ".*?" + re.escape(END)
    table = f"{START}\n{command_table()}\n{END}"
    path.write_text(re.sub(pattern, lambda _: table, text, count=1, flags=re.S))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        for file in sys.argv[2:]:
            write(Path(file))
    else:
        print(command_table())
