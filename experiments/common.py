"""What the study scripts share: the repository, git, and the `page [--check]` command."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


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
