"""Shared fixtures: a generated CIFAR-10-format archive (no network) and tiny params."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from prunelab.fetch import ARCHIVE_ENV, CHECKSUMS_ENV, fetch_cifar10
from prunelab.synthetic import write_synthetic_archive

ROOT = Path(__file__).resolve().parents[1]

PROVENANCE = {
    "cpu": "AMD EPYC",
    "cpu_flags": "avx2",
    "gpu": "none",
    "precision": "float32",
    "threads": 2,
    "epochs": 6,
    "versions": {"torch": "2.9.0", "dvc": "3.67.1"},
}
"""A provenance block as an AVX2-only CPU writes it (provenance.py), for tests of what reads one."""

TINY = {
    "data": {"val_size": 100},
    "model": {"arch": "cnn", "kwargs": {"widths": [8, 16], "stem": 8}},
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1},
    "evaluate": {"batch_size": 200, "latency_batch_sizes": [1, 8], "latency_seconds": 0.05},
}


@pytest.fixture(autouse=True)
def no_real_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests fetch generated data: a PRUNELAB_CIFAR10_ARCHIVE exported for `dvc repro` (README)
    would override their data.source."""
    monkeypatch.delenv(ARCHIVE_ENV, raising=False)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(archive, checksums.json) of a small learnable data set in CIFAR-10's on-disk format."""
    folder = tmp_path_factory.mktemp("synthetic")
    archive = folder / "cifar-10-python.tar.gz"
    md5 = write_synthetic_archive(archive, n_train=600, n_test=200)
    checksums = folder / "checksums.json"
    checksums.write_text(json.dumps(md5))
    return archive, checksums


@pytest.fixture
def synthetic_env(synthetic: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    archive, checksums = synthetic
    monkeypatch.setenv(CHECKSUMS_ENV, str(checksums))
    return archive


@pytest.fixture(scope="session")
def data_dir(synthetic: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive, checksums = synthetic
    dest = tmp_path_factory.mktemp("data") / "cifar-10-batches-py"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ARCHIVE_ENV, raising=False)  # session scope: before no_real_archive runs
        mp.setenv(CHECKSUMS_ENV, str(checksums))
        fetch_cifar10(str(archive), dest)
    return dest


def tiny_params(overrides: dict | None = None, base: dict | None = None) -> dict:
    """The shipped params.yaml, updated by TINY (or `base`) and `overrides`, section-wise."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for layer in (base if base is not None else TINY, overrides or {}):
        for section, values in layer.items():
            params.setdefault(section, {}).update(values)
    return params


def write_params(path: Path, overrides: dict | None = None, base: dict | None = None) -> Path:
    """params.yaml = tiny_params(overrides, base)."""
    path.write_text(yaml.safe_dump(tiny_params(overrides, base), sort_keys=False))
    return path
