"""MACs counted by hooks agree with torch's dispatch-level counter; latency keeps its budget."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunelab.compact import remove_zero_channels
from prunelab.measure import compare_latency, count_macs
from prunelab.models import MODELS, build_model
from prunelab.params import PruneParams
from prunelab.pruning import prune_model


def dispatch_macs(model: nn.Module) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_macs_match_torch_flop_counter_for_every_registered_model(arch: str) -> None:
    model = build_model(arch)
    assert count_macs(model) == dispatch_macs(model) > 0


def test_macs_match_for_compacted_and_grouped_convs() -> None:
    torch.manual_seed(0)
    net = build_model("cnn", {"widths": [16, 32], "stem": 8})
    prune_model(net, PruneParams(method="ln_structured", amount=0.5, targets=["Conv2d"]))
    remove_zero_channels(net)
    grouped = nn.Sequential(
        nn.Conv2d(3, 12, 3, padding=1), nn.Conv2d(12, 12, 3, groups=4), nn.Conv2d(12, 12, 1, groups=12),
        nn.Flatten(), nn.LazyLinear(10),
    )  # fmt: skip
    grouped(torch.zeros(1, 3, 32, 32))  # materialise the lazy layer
    for model in (net, grouped):
        assert count_macs(model) == dispatch_macs(model) > 0


class Sleeper(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.conv(x)


def test_latency_ranks_models_and_keeps_to_its_budget() -> None:
    models = {"fast": Sleeper(0.002), "slow": Sleeper(0.006)}
    started = time.perf_counter()
    timings = compare_latency(models, 2, torch.float32, min_run_time=0.3)
    elapsed = time.perf_counter() - started
    ratio = timings["slow"]["median_ms"] / timings["fast"]["median_ms"]
    assert 2.0 < ratio < 4.0
    assert timings["fast"]["median_ms"] >= 2.0
    # 0.3 s for each model, plus a warm-up and a first call per model and round
    assert 0.6 <= elapsed < 1.2
