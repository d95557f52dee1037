"""The installed `prunelab` command: the same commands DVC runs through stages/*.py."""

from __future__ import annotations

import typer

from prunelab.commands import (
    compact,
    dense,
    diff,
    evaluate,
    fetch,
    figures,
    finetune,
    prune,
    report,
    sensitivity,
    sweep,
    train,
    user_errors_exit,
)

app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True, help=__doc__)
for module in (
    fetch,
    train,
    prune,
    finetune,
    compact,
    evaluate,
    dense,
    sweep,
    report,
    sensitivity,
    diff,
    figures,
):
    app.command(module.__name__.rsplit(".", 1)[-1], help=module.main.__doc__)(user_errors_exit(module.main))

if __name__ == "__main__":
    app()
