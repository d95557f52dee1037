"""fetch: download CIFAR-10 (or take a local archive), verify every member's md5, extract safely."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunelab.commands import ParamsOption, done, single_command_app
from prunelab.fetch import fetch_cifar10
from prunelab.params import load_params


def main(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="directory to create (…/cifar-10-batches-py)")] = Path(
        "data/cifar-10-batches-py"
    ),
) -> None:
    """Fetch CIFAR-10 from data.source (URL or local .tar.gz; PRUNELAB_CIFAR10_ARCHIVE overrides)."""
    cfg = load_params(params)
    source = fetch_cifar10(cfg.data.source, out)
    done(f"CIFAR-10 from {source} verified", out)


app = single_command_app(main)
