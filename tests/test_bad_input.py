"""Bad input as a new user gives it: refused with one line that names the key or file and the
fix, exit status 2, and no earlier output touched."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prunelab.cli import app
from prunelab.io import to_json, write_json
from tests.conftest import TINY, write_params


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _one_line_exit_2(code: int, output: str, *expected: str) -> None:
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output, output
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        # values YAML or a lax schema would coerce silently
        ("train:\n  epochs: true\n", ["train.epochs = True", "true/false is not a number"]),
        ("prune:\n  amount: false\n", ["prune.amount = False"]),
        ("train:\n  lr: '0.1'\n", ["train.lr = '0.1'", "without quotes"]),
        ('train:\n  batch_size: "64"\n', ["train.batch_size = '64'", "without quotes"]),
        ("train:\n  nesterov: 1\n", ["train.nesterov = 1", "valid boolean"]),
        # non-finite numbers, which train to NaN and write invalid JSON
        ("train:\n  lr: .nan\n", ["train.lr = nan", "finite number"]),
        ("finetune:\n  lr: .inf\n", ["finetune.lr = inf", "finite number"]),
        ("compact:\n  tolerance: -.inf\n", ["compact.tolerance = -inf"]),
        # a key given twice: the last one would win without a word
        (
            "prune:\n  amount: 0.5\n  method: l1_unstructured\n  amount: 0.7\n",
            [":4:3: duplicated key 'amount'"],
        ),
        (
            "train:\n  epochs: 1\ntrain:\n  epochs: 2\n",
            [":3:1: duplicated key 'train' (first given on line 1)"],
        ),
    ],
)
def test_bad_params_are_refused_in_one_line(tmp_path: Path, yaml_text: str, expected: list[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml_text)
    metrics = tmp_path / "prune.json"
    metrics.write_text('{"earlier": 1}\n')
    code, output = _run(
        "prune", "--params", str(params), "--metrics", str(metrics), "--out", str(tmp_path / "p.pt")
    )
    _one_line_exit_2(code, output, "params.yaml", *expected)
    assert metrics.read_text() == '{"earlier": 1}\n' and not (tmp_path / "p.pt").exists()


def test_registry_checks_name_the_key(tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"prune": {"method": "l1_unstruct"}})
    _one_line_exit_2(*_run("prune", "--params", str(params)), "prune.method = 'l1_unstruct'", "did you mean")
    params = write_params(tmp_path / "params.yaml", {"sensitivity": {"methods": ["global_unstructured"]}})
    _one_line_exit_2(*_run("sensitivity", "--params", str(params)), "sensitivity.methods", "jointly")


def _earlier_outputs(folder: Path) -> dict[Path, str]:
    """Outputs of an earlier run, as a stage would find them."""
    files = {
        folder / "live/metrics.json": '{"step": 3}\n',
        folder / "metrics.json": '{"epochs": 3}\n',
        folder / "model.pt": "earlier checkpoint",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def test_diverging_training_stops_with_a_clear_error_and_keeps_earlier_outputs(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 threads, whatever else runs: on 1 this loss stays huge but finite for the one epoch
    monkeypatch.setenv("PRUNELAB_THREADS", "2")
    params = write_params(tmp_path / "params.yaml", {"train": {**TINY["train"], "lr": 1e6, "warmup": 0.0}})
    earlier = _earlier_outputs(tmp_path)
    code, output = _run(
        "train",
        *("--params", str(params), "--data", str(data_dir), "--resume", str(tmp_path / "r.pt")),
        *("--out", str(tmp_path / "model.pt"), "--metrics", str(tmp_path / "metrics.json")),
        *("--live", str(tmp_path / "live")),
    )
    assert code == 2, output
    error = output.strip().splitlines()[-1]  # after the per-epoch progress lines
    assert "the loss became nan" in error and "lower the learning rate (train.lr" in error, error
    assert {p: p.read_text() for p in earlier} == earlier


def test_a_bad_input_file_leaves_the_dvclive_folder_and_outputs_alone(data_dir: Path, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml")
    earlier = _earlier_outputs(tmp_path)
    broken = tmp_path / "pruned.pt"
    broken.write_bytes(b"not a checkpoint")
    code, output = _run(
        "finetune",
        *("--params", str(params), "--data", str(data_dir), "--model", str(broken)),
        *("--out", str(tmp_path / "model.pt"), "--metrics", str(tmp_path / "metrics.json")),
        *("--live", str(tmp_path / "live")),
    )
    _one_line_exit_2(code, output, "pruned.pt: cannot read checkpoint")
    assert {p: p.read_text() for p in earlier} == earlier


def test_json_outputs_are_strict(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        to_json({"acc": math.nan})
    with pytest.raises(ValueError):
        write_json(tmp_path / "m.json", {"loss": math.inf})
    assert not (tmp_path / "m.json").exists()


def test_shipped_params_file_has_no_duplicated_keys() -> None:
    from prunelab.params import load_params
    from tests.conftest import ROOT

    load_params(ROOT / "params.yaml")
    assert yaml.safe_load((ROOT / "params.yaml").read_text())  # and plain YAML reads it too
    assert json.loads(to_json({"a": [1, 0.5, None]})) == {"a": [1, 0.5, None]}


def test_yaml_aliases_that_expand_without_bound_are_refused_naming_the_key(tmp_path: Path) -> None:
    # nine levels of ten aliases each: 10^10 values once expanded, a few hundred bytes written
    lines = ["prune:", "  options:", "    a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for before, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"    {name}: &{name} [{', '.join([f'*{before}'] * 10)}]")
    params = tmp_path / "params.yaml"
    params.write_text("\n".join(lines) + "\n")
    _one_line_exit_2(
        *_run("prune", "--params", str(params)),
        "prune.options.i expands to more than 100,000 values through YAML aliases",
    )
    # aliases that stay small are still YAML
    params.write_text(
        "prune:\n  targets: &t [conv1]\n  exclude: []\nsensitivity:\n  methods: [ln_structured]\n"
    )
    from prunelab.params import load_params

    assert load_params(params).prune.targets == ["conv1"]
