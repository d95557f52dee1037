"""Recipe ablations: airbench's training choices tried on prunelab's net, many runs at once.

Each variant trains on the stages' 45,000-image split (data.val_size 5000, split seed 0) and is
scored on the 10,000 test images with 4-view TTA (and without). Variants named `R…` use only
prunelab's own settings (train.*). Variants named `AB…` also try what prunelab does not offer,
by changing the model or the optimiser here, in this script: airbench94's optimisation in
its decoupled form (per-batch lr 11.5 / 1024, momentum 0.85, weight decay 0.0153 / 1024 on
every parameter), logits × 1/9, BatchNorm momentum 0.4, its triangular schedule with
look-ahead; and its 2×2 whitening stem (frozen, no BatchNorm), a global max-pool head, and
training on all 50,000 images. Results go to stdout and, one JSON line per run, to
$OUT/grid.jsonl (OUT defaults to the current folder). Meant for a GPU (a run of 10 epochs
takes ~20 s on an H100, 5 at a time); on a CPU one run takes as long as `dvc repro train`.

    uv run python benchmarks/recipe_grid.py [--data data/cifar-10-batches-py] [--workers 5]
        [--round 1|2|3] [NAME ...]

A machine without the data and without network (such as a lent GPU) can take CIFAR-10 as
lossless WebP mosaics, ~48 MB for each half: `--make-packs DIR` writes them here from --data,
`--packs DIR1,DIR2` reads them there (bit-identical images).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunelab.data import Split, load_split, normalize, split_validation
from prunelab.errors import UserError
from prunelab.models import Scale, build_model, whiten_first_conv
from prunelab.params import TrainParams
from prunelab.predict import accuracy, predict
from prunelab.train import fit, make_optimizer

LONG = [64, 256, 256]
R1 = {"bn_scale": False, "bias_lr_scale": 64.0, "momentum": 0.85, "lr": 0.75, "weight_decay": 0.00133}
"""airbench's optimisation in prunelab's settings (batch 512): see docs/recipe.md."""
AB = {
    "airbench_opt": True,
    "bias_lr": 64.0,
    "bn_frozen_weight": True,
    "bn_momentum": 0.4,
    "logit_scale": 1 / 9,
    "triangle": True,
    "lookahead": True,
}


def ab(**changes: object) -> dict:
    return {**AB, **changes}


def r1(epochs: int, seed: int = 0, **changes: object) -> dict:
    return {"params": {**R1, "epochs": epochs, "seed": seed}, **changes}


AIRBENCH_NET = {"widths": LONG, "stem": 24, "stem_kernel": 2, "stem_norm": False, "head": "max"}
"""airbench94's net in the library's own `cnn` kwargs: 2×2 stem without BatchNorm, max-pool head."""


def air(
    epochs: int, seed: int = 0, logit_scale: float = 1 / 9, all50k: bool = True, **params: object
) -> dict:
    """The long setting in the library's own settings: airbench's net, its stem frozen."""
    return {
        "params": {**R1, "epochs": epochs, "seed": seed, "whiten": "frozen", **params},
        "kwargs": {**AIRBENCH_NET, "logit_scale": logit_scale},
        "all50k": all50k,
    }


VARIANTS: dict[str, dict] = {
    # round 1: airbench's optimisation and its parts
    "R0_def_e8": {"epochs": 8},
    "R0_long_e10": {"widths": LONG, "epochs": 10},
    "R0_long_e10_s1": {"widths": LONG, "epochs": 10, "seed": 1},
    "R0_long_e16": {"widths": LONG, "epochs": 16},
    "R0_long_e10_b128": {"widths": LONG, "epochs": 10, "batch_size": 128, "lr": 0.05},
    "R0_def_e8_bias64": {"epochs": 8, "bias_lr": 64.0},
    "R0_long_e10_bias64": {"widths": LONG, "epochs": 10, "bias_lr": 64.0},
    "R0_long_e10_bnfrozen_bias64": {"widths": LONG, "epochs": 10, "bias_lr": 64.0, "bn_frozen_weight": True},
    **{f"AB_def_e{e}": ab(epochs=e) for e in (6, 8, 10)},
    **{f"AB_def_e{e}_s1": ab(epochs=e, seed=1) for e in (8, 10)},
    "AB_def_e8_bnweight": ab(epochs=8, bn_frozen_weight=False),
    **{f"AB_long_e{e}": ab(widths=LONG, epochs=e) for e in (10, 12, 14, 16)},
    **{f"AB_long_e{e}_s1": ab(widths=LONG, epochs=e, seed=1) for e in (10, 12, 14, 16)},
    "AB_long_e10_b1024": ab(widths=LONG, epochs=10, batch_size=1024),
    "AB_long_e10_nologit": ab(widths=LONG, epochs=10, logit_scale=None),
    "AB_long_e10_bnweight": ab(widths=LONG, epochs=10, bn_frozen_weight=False),
    "AB_long_e10_bias1": ab(widths=LONG, epochs=10, bias_lr=1.0),
    "AB_long_e10_linear": ab(widths=LONG, epochs=10, triangle=False, lookahead=False),
    "AB_long_e10_bnmom": ab(widths=LONG, epochs=10, bn_momentum=None),
    "AB_long_e10_lr2x": ab(widths=LONG, epochs=10, lr_mult=2.0),
    "AB_long_e10_lrhalf": ab(widths=LONG, epochs=10, lr_mult=0.5),
    # round 2: without the logit scale; airbench's stem, head and data
    **{f"AB_def_e7{s}": ab(epochs=7, seed=int(bool(s))) for s in ("", "_s1")},
    **{
        f"NL_def_e{e}{s}": ab(epochs=e, logit_scale=None, seed=int(bool(s)))
        for e in (7, 8)
        for s in ("", "_s1")
    },
    "NL_long_e10_s1": ab(widths=LONG, epochs=10, logit_scale=None, seed=1),
    "NL_long_e14": ab(widths=LONG, epochs=14, logit_scale=None),
    "AB_long_e20": ab(widths=LONG, epochs=20),
    "AB_long_e10_all50k": ab(widths=LONG, epochs=10, all50k=True),
    "AB_long_e10_maxpool": ab(widths=LONG, epochs=10, maxpool=True),
    "AB_long_e10_stem2": ab(widths=LONG, epochs=10, stem2=True),
    "AB_long_e10_stem2_maxpool": ab(widths=LONG, epochs=10, stem2=True, maxpool=True),
    "AB_long_e10_stem2_maxpool_all50k": ab(widths=LONG, epochs=10, stem2=True, maxpool=True, all50k=True),
    # round 3: the library's own settings (R1)
    **{f"R1_e{e}{s}": r1(e, int(bool(s))) for e in (7, 8, 10) for s in ("", "_s1")},
    **{f"R1_e10{s}_long": r1(10, int(bool(s)), widths=LONG) for s in ("", "_s1")},
    # round 4: the fast recipe at more epochs
    **{f"R1_e12{s}": r1(12, int(bool(s))) for s in ("", "_s1")},
    **{f"R1_e{e}{s}_long": r1(e, int(bool(s)), widths=LONG) for e in (14, 16) for s in ("", "_s1")},
    # round 5: the long setting in the library (model.kwargs, train.whiten frozen, data.val_size 0)
    **{f"A9_e{e}{s}": air(e, int(bool(s))) for e in (10, 12, 14, 16) for s in ("", "_s1")},
    **{f"A1_e{e}{s}": air(e, int(bool(s)), logit_scale=1.0) for e in (10, 12) for s in ("", "_s1")},
    "A9_e10_lookahead": air(10, lookahead=True),
    "A9_e10_trained_stem": {**air(10, whiten=True), "whitening_scales": True},  # frozen's filters, trained
    "A9_e10_val_split": air(10, all50k=False),
    # round 6: more seeds; the validation split kept, as the comparison needs it
    **{f"A9_e{e}_s{seed}": air(e, seed) for e in (12, 16) for seed in (2, 3)},
    **{f"A9_e16_val_split{s}": air(16, int(bool(s)), all50k=False) for s in ("", "_s1")},
    # round 7: airbench's net against the default net, both at the default's 10 epochs and split
    **{f"A9_e10_val_split_s{seed}": air(10, seed, all50k=False) for seed in (1, 2)},
    # R1 with weight decay on every parameter, as airbench (run on the GPU before R1 dropped it)
    **{f"R1d_e{e}{s}": r1(e, int(bool(s)), decay_all=True) for e in (7, 8, 10) for s in ("", "_s1")},
    **{f"R1d_e10{s}_long": r1(10, int(bool(s)), widths=LONG, decay_all=True) for s in ("", "_s1")},
}
ROUND_6 = ["A9_e12_s2", "A9_e12_s3", "A9_e16_s2", "A9_e16_s3", "A9_e16_val_split", "A9_e16_val_split_s1"]
ROUND_7 = ["A9_e10_val_split_s1", "A9_e10_val_split_s2", "R1_e10", "R1_e10_s1"]
ROUND_2_MARKS = ("NL_", "AB_def_e7", "e20", "all50k", "maxpool", "stem2")
ROUNDS = {
    "1": [n for n in VARIANTS if n[:2] in ("R0", "AB") and not any(m in n for m in ROUND_2_MARKS)],
    "2": [n for n in VARIANTS if any(m in n for m in ROUND_2_MARKS)],
    "3": [n for n in VARIANTS if n.startswith("R1") and not any(m in n for m in ("e12", "e14", "e16"))],
    "4": [
        n
        for n in VARIANTS
        if n.startswith("R1_") and ("e10" in n or any(m in n for m in ("e12", "e14", "e16")))
    ],
    "5": [n for n in VARIANTS if n[:2] in ("A9", "A1") and n not in ROUND_6 + ROUND_7]
    + ["AB_long_e10_stem2_maxpool_all50k"],
    "6": ROUND_6,
    "7": ROUND_7,
}  # round 3 ran on the GPU as R1d at 7, 8, 10 epochs and long, R1 at 7 and 8; round 4 as listed


class ScaledSGD(torch.optim.SGD):
    """SGD whose groups may scale the learning rate that fit sets on every group (AB variants)."""

    def step(self, closure=None):
        saved = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"] *= g.get("ab_scale", 1.0)
        out = super().step(closure)
        for g, lr in zip(self.param_groups, saved, strict=True):
            g["lr"] = lr
        return out


def airbench_optimizer(variant: dict):
    """airbench94's parameter groups: the same per-step weight decay on every trained parameter,
    BatchNorm biases at `bias_lr` × the learning rate (its decay divided by as much)."""

    def make(model: nn.Module, cfg: TrainParams) -> torch.optim.SGD:
        norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
        trained = [p for p in model.parameters() if p.requires_grad]
        scale = variant.get("bias_lr", variant.get("params", {}).get("bias_lr_scale", 1.0))
        decay = variant.get("airbench_opt") or variant.get("decay_all")
        groups = [
            {"params": [p for p in trained if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {
                "params": [p for p in trained if p.ndim <= 1 and id(p) not in norm_biases],
                "weight_decay": cfg.weight_decay if decay else 0.0,
            },
            {
                "params": [p for p in trained if id(p) in norm_biases],
                "weight_decay": cfg.weight_decay / scale if decay else 0.0,
                "ab_scale": scale,
            },
        ]
        return ScaledSGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)

    return make


def triangle(step: int, total: int, start: float = 0.2, peak: float = 0.23, end: float = 0.07) -> float:
    top = int(peak * total)
    if step < top:
        return start + (1 - start) * step / top
    return 1 + (end - 1) * (step - top) / max(1, total - top)


def whitening_stem(images: torch.Tensor) -> nn.Conv2d:
    """airbench's stem: a 2×2 conv of 24 filters, the patches' principal directions scaled by
    1/√eigenvalue with their negations, weights frozen. Kept as the AB variants ran (eigh in
    float32, bias trained); the library's form is `airbench` with train.whiten `frozen`."""
    conv = nn.Conv2d(3, 24, 2, bias=True)
    x = normalize(images[:5000]).float()
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    values, vectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    filters = (vectors.T.flip(0) / torch.sqrt(values.flip(0) + 5e-4)[:, None]).reshape(12, 3, 2, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([filters, -filters]))
        conv.bias.zero_()
    conv.weight.requires_grad_(False)
    return conv


def run(name: str, variant: dict, train: Split, val: Split, test: Split, device: torch.device) -> dict:
    batch = variant.get("batch_size", 512)
    cfg = TrainParams(
        epochs=variant.get("epochs", 8), batch_size=batch, seed=variant.get("seed", 0),
        device=device.type, val_every=0, lookahead=bool(variant.get("lookahead")),
    )  # fmt: skip
    if "lr" in variant:
        cfg = cfg.model_copy(update={"lr": variant["lr"]})
    if variant.get("airbench_opt"):
        per_example = 1024 * (1 + 1 / (1 - 0.85))  # airbench's decoupled units, for a mean loss
        lr = 11.5 / per_example * batch * variant.get("lr_mult", 1.0)
        cfg = cfg.model_copy(
            update={"lr": lr, "momentum": 0.85, "weight_decay": 0.0153 * batch / per_example / lr}
        )
    cfg = cfg.model_copy(update=variant.get("params", {}))
    if variant.get("all50k"):
        train = Split(torch.cat([train.images, val.images]), torch.cat([train.labels, val.labels]))
    torch.manual_seed(cfg.seed)
    kwargs = variant.get("kwargs") or {
        "widths": variant.get("widths", [64, 128, 256]),
        "stem": 24 if variant.get("stem2") else 32,
    }
    model = build_model("cnn", kwargs)
    whiten_first_conv(
        model, train.images, frozen=cfg.whiten == "frozen" or bool(variant.get("whitening_scales"))
    )
    if variant.get("stem2"):
        model.conv1, model.bn1 = whitening_stem(train.images), nn.Identity()
    if variant.get("maxpool"):
        model.gpool = nn.AdaptiveMaxPool2d(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.requires_grad_(not variant.get("bn_frozen_weight"))
            m.momentum = variant.get("bn_momentum") or m.momentum
    if variant.get("logit_scale"):
        model.add_module("scale", Scale(variant["logit_scale"]))
    model.to(device)
    optimizer = (
        airbench_optimizer(variant) if "params" not in variant or variant.get("decay_all") else make_optimizer
    )
    schedule = (lambda s, t: cfg.lr * triangle(s, t)) if variant.get("triangle") else None
    started = time.perf_counter()
    history = fit(model, train, cfg, val=val, lr_schedule=schedule, label=name, optimizer=optimizer)
    seconds = time.perf_counter() - started
    scores = {
        tta: accuracy(
            predict(model, test.images, batch_size=500, device=device, dtype=torch.bfloat16, tta=tta),
            test.labels,
        )
        for tta in ("flip_translate", "none")
    }
    return {
        "name": name,
        "test_tta": round(scores["flip_translate"], 4),
        "test_plain": round(scores["none"], 4),
        "val": round(history[-1].val_acc or math.nan, 4),
        "seconds": round(seconds, 1),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }


# ---- data as WebP mosaics (lossless), for a machine that has neither the archive nor network

FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


def make_packs(data: Path, out: Path) -> None:
    from PIL import Image

    train, test = load_split(data, train=True), load_split(data, train=False)
    batches = {
        f"data_batch_{i + 1}": Split(
            train.images[i * 10_000 : (i + 1) * 10_000], train.labels[i * 10_000 : (i + 1) * 10_000]
        )
        for i in range(5)
    }
    batches["test_batch"] = test
    for half, names in (("a", FILES[:2] + FILES[5:]), ("b", FILES[2:5])):
        (out / half).mkdir(parents=True, exist_ok=True)
        for name in names:
            x = batches[name].images.permute(0, 2, 3, 1).numpy()  # N×32×32×3
            for k in range(len(x) // 1000):
                mosaic = x[k * 1000 : (k + 1) * 1000].reshape(25, 40, 32, 32, 3).transpose(0, 2, 1, 3, 4)
                Image.fromarray(mosaic.reshape(800, 1280, 3)).save(
                    out / half / f"{name}.{k:02d}.webp", "WEBP", lossless=True, quality=100, method=5
                )
            np.save(out / half / f"{name}.labels.npy", batches[name].labels.numpy())
    print(f"packs written: {out}/a and {out}/b")


def read_pack(dirs: list[Path], name: str) -> Split:
    from PIL import Image

    folder = next(d for d in dirs if (d / f"{name}.labels.npy").exists())
    parts = [
        np.asarray(Image.open(f).convert("RGB"))
        .reshape(25, 32, 40, 32, 3)
        .transpose(0, 2, 1, 3, 4)
        .reshape(1000, 32, 32, 3)
        for f in sorted(folder.glob(f"{name}.*.webp"))
    ]
    images = np.ascontiguousarray(np.concatenate(parts).transpose(0, 3, 1, 2))
    return Split(torch.from_numpy(images), torch.from_numpy(np.load(folder / f"{name}.labels.npy")))


def load(args: argparse.Namespace) -> tuple[Split, Split]:
    if not args.packs:
        return load_split(args.data, train=True), load_split(args.data, train=False)
    dirs = [Path(d) for d in args.packs.split(",")]
    parts = [read_pack(dirs, name) for name in FILES[:5]]
    full = Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    return full, read_pack(dirs, "test_batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="variants to run (default: those of --round)")
    parser.add_argument("--round", choices=sorted(ROUNDS), default="3")
    parser.add_argument("--data", type=Path, default=Path("data/cifar-10-batches-py"))
    parser.add_argument("--packs", help="read the images from WebP packs in these folders")
    parser.add_argument(
        "--make-packs", type=Path, metavar="DIR", help="write WebP packs of --data, then exit"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes training at once")
    parser.add_argument(
        "--limit", type=int, default=0, help="first N training and test images (a smoke test)"
    )
    parser.add_argument("--worker", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_packs:
        return make_packs(args.data, args.make_packs)
    names = args.names or ROUNDS[args.round]
    if unknown := [n for n in names if n not in VARIANTS]:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if args.worker < 0 and args.workers > 1:  # fan out, one process per worker
        base = [sys.executable, __file__, *sys.argv[1:]]
        procs = [
            subprocess.Popen(
                [*base, "--worker", str(i)],
                env={**os.environ, "PRUNELAB_LOCK_DIR": str(Path(tempfile.gettempdir()) / f"grid-lk{i}")},
            )
            for i in range(args.workers)
        ]
        raise SystemExit(max(p.wait() for p in procs))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    full, test = load(args)
    if args.limit:
        full, test = (Split(s.images[: args.limit], s.labels[: args.limit]) for s in (full, test))
    train, val = split_validation(full, min(5000, len(full) // 10), 0)
    out = Path(os.environ.get("OUT", "."))
    for k, name in enumerate(names):
        if args.workers > 1 and k % args.workers != args.worker:
            continue
        try:
            result = run(name, VARIANTS[name], train, val, test, device)
        except UserError as exc:  # a diverged run is a result too
            result = {"name": name, "error": str(exc)}
        line = json.dumps(result)
        print(line, flush=True)
        with (out / "grid.jsonl").open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
