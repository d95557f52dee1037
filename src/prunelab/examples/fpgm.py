"""FPGM: filter pruning via geometric median (He et al., CVPR 2019), as a prunelab plugin.

Use it with `dvc exp run -S prune.method=prunelab.examples.fpgm:GeometricMedianStructured`.
It is an ordinary torch.nn.utils.prune.BasePruningMethod, found by import path like any
user's plugin.

Norm-based criteria assume "small filters matter little". FPGM instead removes the filters that
are most *replaceable*: those closest to the geometric median of their layer's filters, whose
information the remaining filters already carry. Its saliency of filter i is the summed distance
sum_j ||w_i - w_j||; the lowest saliency is pruned first.
"""

from __future__ import annotations

import torch
import torch.nn.utils.prune as tprune


def geometric_median_saliency(weight: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Summed Euclidean distance of every slice along `dim` to all the others."""
    flat = weight.detach().transpose(0, dim).flatten(1).float()
    return torch.cdist(flat, flat).sum(1)


class GeometricMedianStructured(tprune.BasePruningMethod):
    """Prune the channels along `dim` nearest the geometric median (FPGM)."""

    PRUNING_TYPE = "structured"

    def __init__(self, amount: int | float, dim: int = 0) -> None:
        self.amount = amount
        self.dim = dim

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        channels = t.shape[self.dim]
        count = self.amount if isinstance(self.amount, int) else round(self.amount * channels)
        mask = default_mask.clone()
        if count == 0:
            return mask
        prune = geometric_median_saliency(t, self.dim).topk(count, largest=False).indices
        index = [slice(None)] * t.dim()
        index[self.dim] = prune
        mask[tuple(index)] = 0
        return mask
