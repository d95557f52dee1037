"""Where compact CNNs are served on CPUs: the model exported to ONNX, and its latency in onnxruntime.

Eager PyTorch is where prunelab trains and scores; a deployed CNN more often runs an ONNX export
in onnxruntime, whose kernels answer channel counts differently. So evaluate and the sweep time
both. Here each model is exported (`export_onnx`, also the compact stage's output) and timed in onnxruntime's CPU provider,
fp32, with as many intra-op threads as torch has in this stage (threads.py), in interleaved
rounds as measure.compare_latency times eager models: the ratios hold on a drifting machine.
"""

from __future__ import annotations

import statistics
import tempfile
import warnings
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from prunelab.device import CPU
from prunelab.measure import timed_blocks


def export_onnx(model: nn.Module, path: Path) -> None:
    """ONNX with a dynamic batch axis, loadable by onnxruntime without torch or prunelab.
    Writes `path` directly: stage it (io.staged_outputs) when it replaces an output."""
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream but needs no onnxscript and handles
        # these plain conv nets exactly (outputs checked against torch in the tests).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 3, 32, 32),),
            str(path),
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}},
        )


def onnx_setup() -> dict[str, Any]:
    """How onnxruntime runs here: what a metrics file records beside its ONNX latencies."""
    return {
        "runtime": f"onnxruntime {ort.__version__}",
        "provider": "CPUExecutionProvider",
        "threads": torch.get_num_threads(),
        "precision": "float32",
    }


def onnx_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_onnx_latency(
    models: Mapping[Hashable, nn.Module], batch: int, min_run_time: float = 1.0, rounds: int = 3
) -> dict[Hashable, dict[str, float]]:
    """Latency of each model's ONNX export in onnxruntime at `batch` (median and IQR in ms, of
    blocks timed in interleaved rounds, `min_run_time` seconds a model in all)."""
    threads = torch.get_num_threads()
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        sessions = {}
        for i, (name, model) in enumerate(models.items()):
            path = Path(folder) / f"{i}.onnx"
            export_onnx(model.to(CPU), path)
            sessions[name] = onnx_session(path, threads)
        times: dict[Hashable, list[float]] = {name: [] for name in models}
        for _ in range(rounds):
            for name, session in sessions.items():
                session.run(None, {"images": x})  # warm-up
                times[name] += timed_blocks(
                    lambda session=session: session.run(None, {"images": x}), min_run_time / rounds, CPU
                )
    out = {}
    for name, samples in times.items():
        q1, median, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
        out[name] = {"median_ms": round(median * 1e3, 3), "iqr_ms": round((q3 - q1) * 1e3, 3)}
    return out
