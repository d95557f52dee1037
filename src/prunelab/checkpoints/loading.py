"""Loading a checkpoint into a model: the architecture rebuilt, compacted shapes replayed, weights
loaded."""

from __future__ import annotations

from torch import nn

from prunelab.checkpoints import Checkpoint, load_state_into
from prunelab.coupling import rebuild_compact
from prunelab.models import build_model


def load_model(ckpt: Checkpoint, source: str) -> nn.Module:
    """Rebuild the model a checkpoint describes, compacted shapes included, with its weights."""
    model = build_model(ckpt.arch, ckpt.model_kwargs)
    removed = ckpt.meta.get("removed_channels")
    if removed:
        rebuild_compact(model, removed)
    load_state_into(model, ckpt.state_dict, source)
    return model
