"""evaluate scores each distinct model once: a checkpoint scored before under the same settings
keeps its score (--scores), and a compacted model's score serves its masked twin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from prunelab.checkpoints import Checkpoint, save_checkpoint
from prunelab.commands import compact as compact_cmd
from prunelab.commands import evaluate as evaluate_cmd
from prunelab.models import build_model
from prunelab.params import PruneParams
from prunelab.pruning import prune_model
from tests.conftest import write_params

KWARGS = {"widths": [16, 32], "stem": 8}


@pytest.fixture
def models(tmp_path: Path, data_dir: Path) -> dict[str, Path]:
    """baseline.pt; finetuned.pt (half of every conv's filters pruned); compact.pt, made from it
    by the compact stage."""
    torch.manual_seed(0)
    net = build_model("cnn", KWARGS)
    paths = {"baseline": tmp_path / "baseline.pt", "finetuned": tmp_path / "finetuned.pt"}
    save_checkpoint(paths["baseline"], Checkpoint("cnn", KWARGS, net.state_dict()))
    result = prune_model(net, PruneParams(method="ln_structured", amount=0.5, targets=["Conv2d"]))
    save_checkpoint(paths["finetuned"], Checkpoint("cnn", KWARGS, net.state_dict(), result.masks))
    paths["compact"] = tmp_path / "compact.pt"
    args = ["--params", str(write_params(tmp_path / "params.yaml")), "--model", str(paths["finetuned"])]
    args += ["--data", str(data_dir), "--out", str(paths["compact"]), "--onnx", str(tmp_path / "c.onnx")]
    result = CliRunner().invoke(compact_cmd.app, [*args, "--metrics", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    return paths


def _evaluate(
    tmp_path: Path,
    data_dir: Path,
    models: dict[str, Path],
    out: str,
    *extra: str,
    overrides: dict | None = None,
) -> dict:
    params = write_params(tmp_path / "params.yaml", overrides)
    args = ["--params", str(params), "--data", str(data_dir), "--metrics", str(tmp_path / f"{out}.json")]
    args += ["--plots", str(tmp_path / out), *extra]
    args += [a for name, path in models.items() for a in ("--model", f"{name}={path}")]
    result = CliRunner().invoke(evaluate_cmd.app, args)
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / f"{out}.json").read_text())


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of images evaluate scores, one entry per model it scores."""
    calls: list[int] = []
    real = evaluate_cmd.predict

    def counting(model: torch.nn.Module, images: torch.Tensor, **kwargs: object) -> torch.Tensor:
        calls.append(len(images))
        return real(model, images, **kwargs)

    monkeypatch.setattr(evaluate_cmd, "predict", counting)
    return calls


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The models of each latency measurement evaluate makes."""
    calls: list[list[str]] = []
    real = evaluate_cmd.compare_latency

    def recording(models: dict, *args: object, **kwargs: object) -> dict:
        calls.append(list(models))
        return real(models, *args, **kwargs)

    monkeypatch.setattr(evaluate_cmd, "compare_latency", recording)
    return calls


def test_the_baseline_is_scored_once_and_a_compacted_twin_shares_one_score(
    tmp_path: Path, data_dir: Path, models: dict[str, Path], scored: list[int], timed: list[list[str]]
) -> None:
    first = _evaluate(tmp_path, data_dir, {"baseline": models["baseline"]}, "base", "--no-latency")
    assert len(scored) == 1 and first["baseline"]["scored"] == "here"
    assert "latency_ms_b1" not in first["baseline"] and "latency_setup" not in first

    scored.clear()
    second = _evaluate(tmp_path, data_dir, models, "all", "--scores", str(tmp_path / "base.json"))
    assert len(scored) == 1  # only the compact model: the baseline's score is reused, the twin shares
    assert second["baseline"]["scored"] == str(tmp_path / "base.json")
    assert second["baseline"]["acc"] == first["baseline"]["acc"]
    assert second["baseline"]["per_class_acc"] == first["baseline"]["per_class_acc"]
    assert second["compact"]["scored"] == "here" and second["finetuned"]["scored"] == "as compact"
    assert second["finetuned"]["acc"] == second["compact"]["acc"]
    assert second["finetuned"]["macs"] > second["compact"]["macs"]  # its own size and cost, measured
    for name in models:  # latency is measured afresh, in the same rounds
        assert second[name]["latency_ms_b8"] > 0
    assert second["baseline"]["speedup_b8"] == 1.0
    # ... once for the dense shapes: the masked model shares the baseline's measurement
    assert [second[n]["latency_measured"] for n in models] == ["here", "as baseline", "here"]
    assert second["finetuned"]["latency_ms_b8"] == second["baseline"]["latency_ms_b8"]
    assert second["finetuned"]["speedup_b8"] == 1.0
    # ... in onnxruntime too, the same way, with its setup recorded
    for name in models:
        assert second[name]["onnx_latency_ms_b8"] > 0 and second[name]["onnx_latency_ms_b1"] > 0
    assert second["baseline"]["onnx_speedup_b8"] == 1.0
    assert second["finetuned"]["onnx_latency_ms_b8"] == second["baseline"]["onnx_latency_ms_b8"]
    assert second["onnx_runtime"]["provider"] == "CPUExecutionProvider"
    assert second["onnx_runtime"]["threads"] >= 1 and "onnx_runtime" not in first  # no latency there
    assert timed == [["baseline", "compact"]] * len(timed) and timed
    written = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert written == ["compact.json", "finetuned.json"]  # the baseline's plot is base's to write

    # ... and scoring them apart gives the same numbers
    scored.clear()
    apart = _evaluate(tmp_path, data_dir, models, "apart", "--no-latency")
    assert len(scored) == 2  # no --scores: the baseline is scored; the twins still share
    assert apart["baseline"]["acc"] == first["baseline"]["acc"]
    alone = _evaluate(tmp_path, data_dir, {"finetuned": models["finetuned"]}, "alone", "--no-latency")
    assert alone["finetuned"]["scored"] == "here, compacted"  # see the next test
    assert alone["finetuned"]["acc"] == pytest.approx(apart["finetuned"]["acc"], abs=0.01)


def test_a_masked_model_is_scored_in_its_compacted_form(
    tmp_path: Path, data_dir: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    params_seen: list[int] = []
    real = evaluate_cmd.predict

    def recording(model: torch.nn.Module, images: torch.Tensor, **kwargs: object) -> torch.Tensor:
        params_seen.append(sum(p.numel() for p in model.parameters()))
        return real(model, images, **kwargs)

    monkeypatch.setattr(evaluate_cmd, "predict", recording)
    result = _evaluate(tmp_path, data_dir, {"finetuned": models["finetuned"]}, "m", "--no-latency")
    dense = sum(p.numel() for p in build_model("cnn", KWARGS).parameters())
    assert result["finetuned"]["scored"] == "here, compacted" and params_seen[0] < dense / 2
    assert result["finetuned"]["params"] == dense  # what it is, as the checkpoint holds it
    # where compaction would change the outputs beyond compact.tolerance, it is scored as it is
    monkeypatch.setattr(evaluate_cmd, "compacted_copy", lambda *args: None)
    params_seen.clear()
    plain = _evaluate(tmp_path, data_dir, {"finetuned": models["finetuned"]}, "p", "--no-latency")
    assert plain["finetuned"]["scored"] == "here" and params_seen == [dense]
    assert plain["finetuned"]["acc"] == pytest.approx(result["finetuned"]["acc"], abs=0.01)


def test_a_score_is_reused_only_for_the_same_checkpoint_and_settings(
    tmp_path: Path, data_dir: Path, models: dict[str, Path], scored: list[int]
) -> None:
    base = {"baseline": models["baseline"]}
    _evaluate(tmp_path, data_dir, base, "base", "--no-latency")
    earlier = ("--scores", str(tmp_path / "base.json"))

    scored.clear()  # another test-time augmentation: scored again
    other = _evaluate(
        tmp_path, data_dir, base, "tta", *earlier, "--no-latency", overrides={"evaluate": {"tta": "none"}}
    )
    assert len(scored) == 1 and other["baseline"]["scored"] == "here"
    assert other["scoring"]["tta"] == "none"

    scored.clear()  # another checkpoint under the name baseline: scored again
    _evaluate(tmp_path, data_dir, {"baseline": models["finetuned"]}, "other", *earlier, "--no-latency")
    assert len(scored) == 1

    scored.clear()  # the same checkpoint under another name: reused
    renamed = _evaluate(
        tmp_path, data_dir, {"dense": models["baseline"]}, "renamed", *earlier, "--no-latency"
    )
    assert len(scored) == 0 and renamed["dense"]["scored"] == str(tmp_path / "base.json")


def test_a_compact_model_of_another_checkpoint_is_no_twin(
    tmp_path: Path, data_dir: Path, models: dict[str, Path], scored: list[int]
) -> None:
    pair = {"finetuned": models["baseline"], "compact": models["compact"]}  # compact is not baseline's
    result = _evaluate(tmp_path, data_dir, pair, "pair", "--no-latency")
    assert len(scored) == 2 and result["finetuned"]["scored"] == "here"


def test_a_missing_scores_file_is_a_clear_error(
    tmp_path: Path, data_dir: Path, models: dict[str, Path]
) -> None:
    params = write_params(tmp_path / "params.yaml")
    args = ["--params", str(params), "--data", str(data_dir), "--model", f"baseline={models['baseline']}"]
    result = CliRunner().invoke(evaluate_cmd.app, [*args, "--scores", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "nope.json: file not found" in result.output


def test_a_compaction_of_a_compaction_is_scored_without_a_gap(
    tmp_path: Path, data_dir: Path, models: dict[str, Path], scored: list[int]
) -> None:
    again = tmp_path / "again.pt"  # compact run on a compact checkpoint: nothing left to remove
    args = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--model",
        str(models["compact"]),
        "--data",
        str(data_dir),
    ]
    args += [
        "--out",
        str(again),
        "--onnx",
        str(tmp_path / "again.onnx"),
        "--metrics",
        str(tmp_path / "a.json"),
    ]
    assert CliRunner().invoke(compact_cmd.app, args).exit_code == 0
    chain = {"finetuned": models["finetuned"], "compact": models["compact"], "again": again}
    result = _evaluate(tmp_path, data_dir, chain, "chain", "--no-latency")
    assert [result[n]["scored"] for n in chain] == ["here, compacted", "as again", "here"]
    assert len(scored) == 2 and result["compact"]["acc"] == result["again"]["acc"]


def test_int8_adds_a_row_scored_and_timed_in_onnxruntime(
    tmp_path: Path, data_dir: Path, models: dict[str, Path]
) -> None:
    chosen = {"baseline": models["baseline"], "compact": models["compact"]}
    out = _evaluate(
        tmp_path, data_dir, chosen, "q", "--int8", "compact", overrides={"evaluate": {"tta": "none"}}
    )
    row, compact = out["compact_int8"], out["compact"]
    assert row["quantized_from"] == "compact" and row["scored"] == "here, onnxruntime int8"
    assert row["macs"] == compact["macs"] and row["bytes"] < compact["bytes"]
    # scored on the whole test set, as its fp32 source is; int8 moves few predictions
    assert abs(row["acc"] - compact["acc"]) <= 0.1 and set(row["per_class_acc"]) == set(
        compact["per_class_acc"]
    )
    # timed in onnxruntime only, in the same rounds as the fp32 exports
    assert row["onnx_latency_ms_b8"] > 0 and row["onnx_speedup_b8"] > 0 and "latency_ms_b8" not in row
    setup = out["onnx_runtime"]["int8"]
    assert setup["format"] == "QDQ" and 0 < setup["calibration_images"] <= 1024
    assert (tmp_path / "q" / "compact_int8.json").exists()


def test_int8_of_an_unnamed_model_is_a_clear_error(
    tmp_path: Path, data_dir: Path, models: dict[str, Path]
) -> None:
    params = write_params(tmp_path / "params.yaml")
    args = ["--params", str(params), "--data", str(data_dir), "--metrics", str(tmp_path / "x.json")]
    args += ["--model", f"baseline={models['baseline']}", "--int8", "compact"]
    result = CliRunner().invoke(evaluate_cmd.app, args)
    assert result.exit_code != 0 and "--int8 compact: no --model named 'compact'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "x.json").exists()
