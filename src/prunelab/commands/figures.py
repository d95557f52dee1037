"""figures: render the README's result figures from the committed metrics (not a DVC stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunelab.commands import done, single_command_app
from prunelab.errors import UserError
from prunelab.figures import rewrite, stale_blocks
from prunelab.io import write_text


def main(
    readme: Annotated[Path, typer.Option(help="the markdown file with generated blocks")] = Path("README.md"),
    root: Annotated[Path, typer.Option(help="the checkout whose metrics render them")] = Path("."),
    check: Annotated[bool, typer.Option(help="change nothing; exit 2 if a block is stale")] = False,
) -> None:
    """Rewrite the generated blocks of README.md (between their markers) from metrics/*.json and
    report/verdicts.json; with --check, only say which blocks differ from their files."""
    if not readme.is_file():
        raise UserError(f"{readme}: not found; pass --readme PATH")
    text = readme.read_text()
    if check:
        stale = stale_blocks(text, root)
        if stale:
            raise UserError(
                f"{readme}: generated block(s) {', '.join(stale)} differ from the metrics; run `prunelab figures`"
            )
        done("figures current", readme)
        return
    write_text(readme, rewrite(text, root))
    done("figures rendered", readme)


app = single_command_app(main)
