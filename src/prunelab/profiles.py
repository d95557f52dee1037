"""Named profiles: params composed as `dvc exp run` composes them, for scripts and tests.

With Hydra enabled (.dvc/config), every `dvc exp run` writes params.yaml afresh from
conf/config.yaml, then the profile it names (conf/profile/<name>.yaml, `-S profile=seed`), then
its other -S overrides: never from what the workspace's params.yaml held. `compose` runs DVC's own
composition, so a script or a test gets exactly the params an experiment would run with.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from dvc.utils.hydra import compose_and_dump

CONF = Path("conf")


def compose(overrides: list[str], conf: Path = CONF) -> dict[str, Any]:
    """The params `dvc exp run -S o1 -S o2 …` would write to params.yaml, for `overrides` in
    Hydra's syntax ('profile=seed', 'train.seed=1', 'prune.targets=[conv1]')."""
    return yaml.safe_load(composed_text(overrides, conf))


def composed_text(overrides: list[str], conf: Path = CONF) -> str:
    """As `compose`, the YAML text DVC writes (params.yaml is committed in exactly this form)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        compose_and_dump(out, str(conf.resolve()), None, "config", tmp, overrides)
        return out.read_text()
