"""What the study scripts share: the repository, git, and the `page [--check]` command."""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def committed_head(why: str) -> str:
    """HEAD, where no tracked file differs from it; else exit saying `why` that matters."""
    if git("status", "--porcelain", "--untracked-files=no"):
        raise SystemExit(f"the workspace has uncommitted changes: {why}; commit first")
    return git("rev-parse", "HEAD")


def session(command: str, head: str) -> dict[str, str]:
    """Where and how a study's `run` ran, for its page: the command, the commit and the date."""
    return {
        "command": command,
        "commit": head[:7],
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
    }


def temp_experiment(head: str, name: str, command: list[str]) -> tuple[str, float | None]:
    """The ref of experiment `name` of commit `head`, running `command` (a `dvc exp run --temp
    -n NAME …`) where it does not exist yet; with the seconds it ran, or None if it was there."""
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    if git("for-each-ref", ref):
        return ref, None
    began = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    return ref, round(time.perf_counter() - began, 1)


def add_page_command(sub: argparse._SubParsersAction, default: Path) -> None:
    page = sub.add_parser("page")
    page.add_argument("--check", action="store_true", help="exit 2 if the page differs from its metrics")
    page.add_argument("--page", type=Path, default=default, help="the page to write or check")


def write_or_check(args: argparse.Namespace, render: Callable[[], str], script: str) -> None:
    """`page`: write the page, or with --check exit 2 where it is not what its metrics render."""
    if not args.check:
        args.page.write_text(render())
    elif not args.page.is_file() or args.page.read_text() != render():
        print(f"{args.page} is not what its metrics render: run `python {script} page`")
        sys.exit(2)
