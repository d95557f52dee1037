from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from prunelab.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from prunelab.checkpoints.loading import load_model
from prunelab.commands import compact as compact_cmd
from prunelab.compact import compacted_copy, max_output_difference, remove_zero_channels
from prunelab.models import build_model
from prunelab.onnx_runtime import (
    OnnxModel,
    export_onnx,
    onnx_latency,
    onnx_sessions,
    onnx_setup,
    quantized_session,
)
from prunelab.params import PruneParams
from prunelab.predict import predict
from prunelab.pruning import apply_masks, prune_model
from tests.conftest import write_params

IMAGES = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)


def _trained_like(arch: str, kwargs: dict) -> torch.nn.Module:
    """A model whose BatchNorms hold non-trivial statistics and biases, as after training."""
    torch.manual_seed(0)
    model = build_model(arch, kwargs).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.bias.data.uniform_(-1, 1)
    return model


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("cnn", {"widths": [16, 32], "stem": 8}),
        ("resnet20", {"width": 8}),
        ("tutorial_cnn", {"widths": [8, 16]}),
        ("airbench", {"widths": [16, 32], "stem": 12}),
    ],
    ids=["cnn", "resnet20", "tutorial_cnn", "airbench"],
)
@pytest.mark.parametrize(
    "method", ["ln_structured", "random_structured", "prunelab.examples.fpgm:GeometricMedianStructured"]
)
def test_compact_model_equals_masked_model(arch: str, kwargs: dict, method: str) -> None:
    masked = _trained_like(arch, kwargs)
    prune_model(masked, PruneParams(method=method, amount=0.5, targets=["Conv2d"]))
    small = copy.deepcopy(masked)
    removed = remove_zero_channels(small)
    assert removed, "structured pruning left whole channels to remove"
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in masked.parameters())
    assert max_output_difference(masked, small, IMAGES) < 1e-4


def test_seed_experiment_removes_conv1_filters_exactly() -> None:
    masked = _trained_like("cnn", {"widths": [16, 32], "stem": 10})
    prune_model(masked, PruneParams())
    small = copy.deepcopy(masked)
    assert {k: len(v) for k, v in remove_zero_channels(small).items()} == {"conv1": 4}
    assert small.conv1.out_channels == 6 and small.conv2.in_channels == 6 and small.bn1.num_features == 6
    assert max_output_difference(masked, small, IMAGES) < 1e-4


def test_unstructured_pruning_removes_nothing() -> None:
    masked = _trained_like("cnn", {"widths": [16, 32], "stem": 8})
    prune_model(masked, PruneParams(method="l1_unstructured", amount=0.5, targets=["all"]))
    assert remove_zero_channels(copy.deepcopy(masked)) == {}


def test_a_compacted_copy_stands_in_only_where_it_computes_the_same() -> None:
    masked = _trained_like("cnn", {"widths": [16, 32], "stem": 10})
    assert compacted_copy(masked, IMAGES, 1e-3) is None  # nothing to remove
    prune_model(masked, PruneParams())
    small = compacted_copy(masked, IMAGES, 1e-3)
    assert small is not None and small.conv1.out_channels == 6 and masked.conv1.out_channels == 10
    assert compacted_copy(masked, IMAGES, -1.0) is None  # outputs differ beyond the tolerance
    unstructured = _trained_like("cnn", {"widths": [16, 32], "stem": 8})
    prune_model(unstructured, PruneParams(method="l1_unstructured", amount=0.5, targets=["all"]))
    assert compacted_copy(unstructured, IMAGES, 1e-3) is None


def _pruned_checkpoint(tmp_path: Path, couple: bool = True) -> Path:
    kwargs = {"widths": [16, 32], "stem": 8}
    model = _trained_like("cnn", kwargs)
    result = prune_model(model, PruneParams(method="ln_structured", amount=0.5, targets=["Conv2d"]))
    if not couple:  # what another tool's filter pruning leaves: BN biases of removed channels
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.data.uniform_(-1, 1)
    path = tmp_path / "finetuned.pt"
    save_checkpoint(path, Checkpoint("cnn", kwargs, model.state_dict(), result.masks))
    return path


def test_compact_stage_writes_a_loadable_smaller_model_and_onnx(tmp_path: Path, data_dir: Path) -> None:
    import onnxruntime

    source = _pruned_checkpoint(tmp_path)
    args = [
        "--params",
        str(write_params(tmp_path / "params.yaml")),
        "--model",
        str(source),
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path / "compact.pt"),
        "--onnx",
        str(tmp_path / "compact.onnx"),
        "--metrics",
        str(tmp_path / "c.json"),
    ]
    result = CliRunner().invoke(compact_cmd.app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "c.json").read_text())
    assert (
        metrics["params_compact"] < metrics["params_dense"]
        and metrics["macs_compact"] < metrics["macs_dense"]
    )
    dense = load_model(load_checkpoint(source), "dense").eval()
    small = load_model(load_checkpoint(tmp_path / "compact.pt"), "compact").eval()
    assert max_output_difference(dense, small, IMAGES) < 1e-4
    x = torch.randn(3, 3, 32, 32)
    session = onnxruntime.InferenceSession(str(tmp_path / "compact.onnx"))
    onnx_out = session.run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(onnx_out, small(x).detach().numpy(), atol=1e-4)
    dense_onnx = tmp_path / "dense.onnx"
    compact_cmd.export_onnx(dense, dense_onnx)
    assert metrics["onnx_bytes"] < dense_onnx.stat().st_size


def test_compact_stage_fails_loudly_when_outputs_would_change(tmp_path: Path, data_dir: Path) -> None:
    source = _pruned_checkpoint(tmp_path, couple=False)
    args = [
        "--params",
        str(write_params(tmp_path / "params.yaml")),
        "--model",
        str(source),
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path / "compact.pt"),
        "--onnx",
        str(tmp_path / "compact.onnx"),
        "--metrics",
        str(tmp_path / "c.json"),
    ]
    result = CliRunner().invoke(compact_cmd.app, args)
    assert result.exit_code == 2 and "differ from the masked model" in result.output
    assert not (tmp_path / "compact.pt").exists() and not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    "prune",
    [{"method": "ln_structured"}, {"method": "group_taylor", "scope": "global", "gradient_images": 64}],
)
def test_prune_stage_reaches_a_macs_target_and_compact_confirms_it(
    tmp_path: Path, data_dir: Path, prune: dict
) -> None:
    from prunelab.commands import prune as prune_cmd

    kwargs = {"widths": [16, 32], "stem": 8}
    baseline = tmp_path / "baseline.pt"
    save_checkpoint(baseline, Checkpoint("cnn", kwargs, _trained_like("cnn", kwargs).state_dict()))
    params = write_params(
        tmp_path / "params.yaml",
        {
            "model": {"arch": "cnn", "kwargs": kwargs},
            "prune": {"targets": ["Conv2d"], "macs_reduction": 0.5, **prune},
        },
    )
    common = ["--params", str(params), "--data", str(data_dir)]
    result = CliRunner().invoke(
        prune_cmd.app,
        [
            *common,
            "--model",
            str(baseline),
            "--out",
            str(tmp_path / "p.pt"),
            "--metrics",
            str(tmp_path / "p.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    pruned = json.loads((tmp_path / "p.json").read_text())
    assert 0 < pruned["amount"] < 0.9 and pruned["macs_reduction"] >= 0.5
    result = CliRunner().invoke(
        compact_cmd.app,
        [
            *common,
            "--model",
            str(tmp_path / "p.pt"),
            "--out",
            str(tmp_path / "c.pt"),
            "--onnx",
            str(tmp_path / "c.onnx"),
            "--metrics",
            str(tmp_path / "c.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    compacted = json.loads((tmp_path / "c.json").read_text())
    assert compacted["macs_compact"] == pruned["macs_compact"] <= 0.5 * compacted["macs_dense"]


def test_a_removed_filters_bias_is_folded_into_the_next_layer() -> None:
    """No BatchNorm: a pruned filter still outputs its bias (through ReLU and pooling, a
    constant), which torch's pruning keeps. prunelab moves that constant into the next layer's
    bias, so the pruned model equals torch's away from padded borders and still compacts exactly."""
    torch.manual_seed(0)
    model = build_model("tutorial_cnn", {"widths": [8, 16, 16]}).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.uniform_(0.1, 0.5)  # positive: each pruned filter sends a constant on
    images = torch.randn(4, 3, 32, 32)

    def pruned_both_ways(layer: str) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
        reference = copy.deepcopy(model)  # torch's pruning: the bias stays
        torch.nn.utils.prune.ln_structured(getattr(reference, layer), "weight", amount=0.5, n=1, dim=0)
        pruned = copy.deepcopy(model)
        result = prune_model(pruned, PruneParams(amount=0.5, targets=[layer]))
        gone = ~result.masks[f"{layer}.weight"].flatten(1).any(1)
        assert getattr(pruned, layer).bias.detach()[gone].abs().sum() == 0  # removable
        return pruned, reference, result.masks

    def conv2_output(net: torch.nn.Module) -> torch.Tensor:
        out: list[torch.Tensor] = []
        handle = net.conv2.register_forward_hook(lambda m, a, o: out.append(o))
        net(images)
        handle.remove()
        return out[0]

    with torch.no_grad():
        pruned, reference, masks = pruned_both_ways("conv1")
        ours, torchs = conv2_output(pruned), conv2_output(reference)
        assert (ours[:, :, 1:-1, 1:-1] - torchs[:, :, 1:-1, 1:-1]).abs().max() < 1e-5  # interior
        assert (ours - torchs).abs().max() > 1e-3  # borders differ: padding was zero, not the constant
        last, last_reference, _ = pruned_both_ways("conv3")  # read by the classifier: no borders
        assert (last(images) - last_reference(images)).abs().max() < 1e-5
    small = copy.deepcopy(pruned)
    remove_zero_channels(small)
    assert (
        max_output_difference(pruned, small, torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)) < 1e-5
    )
    before = copy.deepcopy(pruned.state_dict())
    apply_masks(pruned, masks)  # again: the biases are zero already, nothing to fold
    assert all(torch.equal(before[k], v) for k, v in pruned.state_dict().items())


def test_a_compact_model_pruned_and_compacted_again_keeps_both_removals(
    tmp_path: Path, data_dir: Path
) -> None:
    params = write_params(tmp_path / "params.yaml")
    common = ["--params", str(params), "--data", str(data_dir)]

    def compact_stage(source: Path, out: str) -> Path:
        args = [
            *common,
            "--model",
            str(source),
            "--out",
            str(tmp_path / out),
            "--onnx",
            str(tmp_path / "x.onnx"),
        ]
        result = CliRunner().invoke(compact_cmd.app, [*args, "--metrics", str(tmp_path / f"{out}.json")])
        assert result.exit_code == 0, result.output
        return tmp_path / out

    first = load_checkpoint(compact_stage(_pruned_checkpoint(tmp_path), "first.pt"))
    model = load_model(first, "first")
    channels = model.conv2.out_channels
    result = prune_model(model, PruneParams(method="ln_structured", amount=0.5, targets=["conv2"]))
    again = tmp_path / "pruned-again.pt"
    save_checkpoint(
        again, Checkpoint("cnn", first.model_kwargs, model.state_dict(), result.masks, first.meta)
    )
    second = load_checkpoint(compact_stage(again, "second.pt"))
    rebuilt = load_model(second, "second").eval()  # both removals replayed on a fresh dense model
    assert rebuilt.conv2.out_channels == channels - round(0.5 * channels)
    assert max_output_difference(model.eval(), rebuilt, IMAGES) < 1e-4


def test_onnx_latency_times_each_export_in_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    dense = build_model("cnn", {"widths": [8, 16], "stem": 8}).eval()
    masked = copy.deepcopy(dense)
    prune_model(masked, PruneParams(targets=["conv1", "conv2"], amount=0.5))
    small = compacted_copy(masked, torch.zeros(4, 3, 32, 32, dtype=torch.uint8), 1e-3)
    assert small is not None
    sessions = []
    real = ort.InferenceSession

    def recorded(path: str, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
        session = real(path, options, providers=providers)
        sessions.append((session, options.intra_op_num_threads))
        return session

    monkeypatch.setattr(ort, "InferenceSession", recorded)
    timing = onnx_latency(onnx_sessions({"dense": dense, "compact": small}), batch=4, min_run_time=0.05)
    assert set(timing) == {"dense", "compact"}
    assert all(t["median_ms"] > 0 and t["iqr_ms"] >= 0 for t in timing.values())
    # each session runs the model it was exported from, with torch's thread count
    x = torch.randn(2, 3, 32, 32)
    for (session, threads), model in zip(sessions, (dense, small), strict=True):
        assert threads == torch.get_num_threads() == onnx_setup()["threads"]
        out = session.run(None, {"images": x.numpy()})[0]
        with torch.no_grad():
            assert np.allclose(out, model(x).numpy(), atol=1e-4)


def test_a_session_is_scored_as_its_torch_model_is() -> None:
    model = _trained_like("cnn", {"widths": [8, 16], "stem": 8})
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    session = onnx_sessions({"m": model})["m"]
    options = {
        "batch_size": 8,
        "device": torch.device("cpu"),
        "dtype": torch.float32,
        "tta": "flip_translate",
    }
    assert torch.allclose(
        predict(OnnxModel(session), images, **options), predict(model, images, **options), atol=1e-4
    )


def test_int8_quantization_stays_close_to_fp32_and_shrinks_the_file() -> None:
    model = _trained_like("cnn", {"widths": [32, 64], "stem": 16})
    calibration = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8)
    session, size = quantized_session(model, calibration)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    options = {"batch_size": 32, "device": torch.device("cpu"), "dtype": torch.float32, "tta": "none"}
    int8 = predict(OnnxModel(session), images, **options)
    fp32 = predict(model, images, **options)
    # 8-bit activations and 7-bit weights: logits within a few percent of their spread
    assert (int8 - fp32).abs().mean() < 0.05 * fp32.std()
    assert not torch.equal(int8, fp32)  # it did quantize
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(model, Path(folder) / "fp32.onnx")
        fp32_bytes = (Path(folder) / "fp32.onnx").stat().st_size
    assert size["bytes"] < 0.5 * fp32_bytes and 0 < size["bytes_gzip"] <= size["bytes"]
