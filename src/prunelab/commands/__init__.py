"""The stages as Typer commands: each module's `main` is both `python stages/<name>.py` (DVC's
entry point) and `prunelab <name>` (the installed command). Commands are glue only: read
params, call the library, write outputs together once all are complete (io.staged_outputs),
say where they went. Each command runs with its share of the CPU threads (threads.py), and with
freed memory kept for reuse (memory.py). This module only words messages and sets threads and
memory, so dvc.yaml leaves it out of deps."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from prunelab.errors import UserError
from prunelab.memory import keep_freed_memory
from prunelab.params import ParamsError
from prunelab.threads import cpu_share

# Without a terminal (dvc repro, CI) rich would cut tables at 80 columns: give logs room.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="params.yaml to read")]


def user_errors_exit(command: Callable[..., None]) -> Callable[..., None]:
    """Report a UserError (or ParamsError) as one line on stderr and exit 2; any other exception
    is a bug and keeps its traceback."""

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> None:
        try:
            keep_freed_memory()
            with cpu_share():
                command(*args, **kwargs)
        except (UserError, ParamsError) as exc:
            Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {exc.message}")
            sys.stderr.flush()
            raise typer.Exit(2) from None

    return run


def single_command_app(main: Callable[..., None]) -> typer.Typer:
    app = typer.Typer(add_completion=False, rich_markup_mode=None, help=main.__doc__)
    app.command()(user_errors_exit(main))
    return app


def done(what: str, *paths: Path | str) -> None:
    console.print(f"[green]✓[/] {what}: " + ", ".join(str(p) for p in paths))
