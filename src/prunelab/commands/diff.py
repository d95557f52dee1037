"""diff: which metric differences between two results exceed their noise (not a DVC stage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from prunelab.commands import console, single_command_app
from prunelab.diff import Tree, diff_markdown, diff_results


def main(
    old: Annotated[
        str, typer.Argument(help="a git revision, a `dvc exp` experiment's name, or a folder")
    ] = "HEAD",
    new: Annotated[
        str, typer.Argument(help="the same kinds, or `workspace` for the files as they are here")
    ] = "workspace",
    repo: Annotated[Path, typer.Option(help="the git repository revisions are read from")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print the differences as JSON")] = False,
) -> None:
    """Compare the metrics of OLD and NEW (by default the last commit and the workspace, as `dvc
    metrics diff` does) and say which accuracy differences exceed their noise: paired over the
    images where both sides kept per-image results, else by their images' binomial error and seed
    spread; Holm-corrected together. Differences from another kind of machine or recipe are marked."""
    before, after = Tree(old, repo), Tree(new, repo)
    diff = diff_results(before, after)
    if as_json:
        print(json.dumps(diff.as_dict(), indent=2))
    else:
        console.print(diff_markdown(before, after, diff), markup=False)


app = single_command_app(main)
