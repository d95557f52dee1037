from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from prunelab.checkpoints import Checkpoint, load_checkpoint, load_state_into, save_checkpoint
from prunelab.errors import UserError
from prunelab.io import atomic_path, write_json
from prunelab.models import build_model


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"acc": 0.9})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"acc": 0.')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{\n  "acc": 0.9\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp left behind


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_model("cnn", {"widths": [8], "stem": 4})
    masks = {"conv1.weight": torch.ones_like(model.conv1.weight, dtype=torch.bool)}
    save_checkpoint(
        tmp_path / "m.pt", Checkpoint("cnn", {"widths": [8], "stem": 4}, model.state_dict(), masks, {"k": 1})
    )
    ckpt = load_checkpoint(tmp_path / "m.pt")
    rebuilt = build_model(ckpt.arch, ckpt.model_kwargs)
    load_state_into(rebuilt, ckpt.state_dict, "m.pt")
    assert torch.equal(rebuilt.conv1.weight, model.conv1.weight) and ckpt.meta == {"k": 1}


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "prunelab.checkpoint/1", "payload": _Evil()}, path)
    with pytest.raises(UserError, match="refused to load"):
        load_checkpoint(path)
    assert not Path("pwned").exists()


def test_truncated_and_foreign_checkpoints(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"format": "prunelab.checkpoint/1"}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(UserError, match=r"cut\.pt: cannot read checkpoint"):
        load_checkpoint(cut)
    plain = tmp_path / "plain.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, plain)
    with pytest.raises(UserError, match="not a prunelab checkpoint"):
        load_checkpoint(plain)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(UserError):
        load_checkpoint(raw)


def test_state_that_does_not_fit_names_the_keys() -> None:
    model = build_model("cnn", {"widths": [8], "stem": 4})
    state = model.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["fc.bias"]
    with pytest.raises(UserError, match=r"missing keys \[fc.bias\].*unexpected keys \[extra.weight\]"):
        load_state_into(model, state, "x.pt")


def test_a_killed_runs_staging_folder_is_swept_by_the_next_run(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    leftover = tmp_path / ".metrics.json.k1ll3d_0.tmp"  # what a run killed mid-write leaves
    leftover.mkdir()
    (leftover / "metrics.json").write_text('{"acc": 0.')
    other = tmp_path / ".metrics.json.x.abcd1234.tmp"  # output metrics.json.x's staging folder stays
    other.mkdir()
    write_json(target, {"acc": 0.9})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metrics.json.x.abcd1234.tmp", "metrics.json"]
