"""Where compact CNNs are served on CPUs: the model exported to ONNX, its latency in
onnxruntime, and its int8 quantization.

Eager PyTorch is where prunelab trains and scores; a deployed CNN more often runs an ONNX export
in onnxruntime, whose kernels answer channel counts differently. So evaluate and the sweep time
both. Here each model is exported (`export_onnx`, also the compact stage's output) and run in
onnxruntime's CPU provider with as many intra-op threads as torch has in this stage
(threads.py), timed in interleaved rounds as eager models are (measure.interleaved_latency):
the ratios hold on a drifting machine. `OnnxModel` lets a session be scored as a torch model is.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime import quantization
from torch import nn

from prunelab.data import normalize
from prunelab.device import CPU
from prunelab.measure import file_bytes, interleaved_latency

INT8 = {
    "format": "QDQ",
    "weights": "int8, per channel, 7-bit range",
    "activations": "uint8, per tensor",
    "calibration": "MinMax",
}
"""How `quantized_session` quantizes, as metrics record it. The 7-bit weight range
(reduce_range) is what onnxruntime advises for CPUs without VNNI: there uint8 × int8 products
saturate, and on an AVX2 EPYC the full range cost 4 points of test accuracy (0.858 against
0.901) where the 7-bit one cost none."""


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


def onnx_sessions(models: Mapping[Hashable, nn.Module]) -> dict[Hashable, ort.InferenceSession]:
    """Each model exported to ONNX and loaded in onnxruntime (the files are gone after loading)."""
    with tempfile.TemporaryDirectory() as folder:
        sessions = {}
        for i, (name, model) in enumerate(models.items()):
            path = Path(folder) / f"{i}.onnx"
            export_onnx(model.to(CPU), path)
            sessions[name] = onnx_session(path, torch.get_num_threads())
        return sessions


def onnx_latency(
    sessions: Mapping[Hashable, ort.InferenceSession], batch: int, min_run_time: float = 1.0, rounds: int = 3
) -> dict[Hashable, dict[str, float]]:
    """Latency of each session at `batch` (median and IQR in ms), timed in interleaved rounds."""
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)
    calls = {name: partial(session.run, None, {"images": x}) for name, session in sessions.items()}
    return interleaved_latency(calls, min_run_time, rounds)


def quantized_session(
    model: nn.Module, calibration: torch.Tensor
) -> tuple[ort.InferenceSession, dict[str, int]]:
    """`model`'s ONNX export quantized statically to int8 by onnxruntime (as INT8 says),
    calibrated on uint8 `calibration` images, and loaded; with the int8 file's size (file_bytes)."""
    with tempfile.TemporaryDirectory() as folder, _quiet_quantizer():
        fp32, prepared, int8 = (Path(folder) / f"{n}.onnx" for n in ("fp32", "prepared", "int8"))
        export_onnx(model.to(CPU), fp32)
        quantization.quant_pre_process(str(fp32), str(prepared))  # shapes inferred, graph folded
        quantization.quantize_static(
            str(prepared),
            str(int8),
            _Calibration(calibration),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
        )
        return onnx_session(int8, torch.get_num_threads()), file_bytes(int8)


class _Calibration(quantization.CalibrationDataReader):
    """uint8 images, normalized as the model's input is, in batches of 64."""

    def __init__(self, images: torch.Tensor) -> None:
        self.batches = iter(
            [{"images": normalize(images[i : i + 64]).numpy()} for i in range(0, len(images), 64)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantizer logs a warning for every BatchNorm it leaves unquantized: noise here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class OnnxModel(nn.Module):
    """An onnxruntime session as a module, so it is scored (predict, with test-time
    augmentation) exactly as a torch model is. It computes in fp32 on the CPU whatever the
    caller's device and autocast."""

    def __init__(self, session: ort.InferenceSession) -> None:
        super().__init__()
        self.session = session

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().to(CPU, torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"images": x})[0]).to(images.device)
