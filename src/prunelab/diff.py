"""Differences that explain themselves: which metric differences between two results exceed
their noise, and which come from another kind of machine or recipe.

`dvc metrics diff` lists every number that changed. This says which changes are more than noise:
- an accuracy with per-image results on both sides (evaluate's confusion rows, a sweep point's
  .correct.json) is compared image by image, with the seed spread where there is one
  (verdicts.paired_test);
- otherwise each side's binomial error on its images, plus its seed spread where it has one;
- counts (params, MACs, sparsity) are exact: any change is real;
- wall-clock figures (seconds, latency, speed-ups) are left out: their noise is the machine's.

All accuracy tests of one diff are one family, corrected by Holm's method. When the two sides'
provenance differs in machine kind (CPU flags, GPU, precision) or recipe (the baseline's epochs),
every difference is marked as coming from that, not only from the change being compared.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from prunelab.captions import p_value
from prunelab.comparison.verdicts import ALPHA, Family, Scores, Test, Verdict
from prunelab.errors import UserError
from prunelab.params import DataParams
from prunelab.per_image import correct_path, decode
from prunelab.provenance import MACHINE_KEYS

METRICS = ("train", "baseline", "prune", "finetune", "compact", "evaluate")
"""The pipeline's metrics files (metrics/NAME.json), as `dvc metrics diff` reads them."""

EXACT = ("params", "params_nonzero", "macs", "macs_compact", "sparsity", "targeted_sparsity", "amount")
"""Counts and what follows from them: no noise."""


class Tree:
    """The result files of one side: a folder (a checkout, or a copy of its metrics) or a git
    revision (a commit, branch or tag, or a `dvc exp` experiment's name)."""

    def __init__(self, spec: str, repo: Path) -> None:
        self.spec = spec
        self.folder = Path(spec) if spec != "workspace" else repo
        self.repo = repo
        self.rev: str | None = None
        self._read: dict[str, str | None] = {}  # evaluate.json and params.yaml are asked for more than once
        if not self.folder.is_dir():
            self.folder = None  # type: ignore[assignment]
            self.rev = _resolve_rev(spec, repo)

    def read_text(self, path: str) -> str | None:
        """The file at `path` (repo-relative) on this side, None where it has none."""
        if path not in self._read:
            self._read[path] = self._load(path)
        return self._read[path]

    def _load(self, path: str) -> str | None:
        if self.folder is not None:
            file = self.folder / path
            return file.read_text() if file.is_file() else None
        shown = subprocess.run(
            ["git", "show", f"{self.rev}:{path}"], cwd=self.repo, capture_output=True, text=True
        )
        return shown.stdout if shown.returncode == 0 else None

    def read(self, path: str) -> Any | None:
        """The JSON at `path` on this side, None where it has none."""
        text = self.read_text(path)
        try:
            return json.loads(text) if text is not None else None
        except json.JSONDecodeError:
            raise UserError(
                f"{self.spec}: {path} is not valid JSON; rerun the stage that writes it"
            ) from None

    def validation_images(self) -> int:
        """data.val_size of this side's params.yaml (its default where the file has none)."""
        text = self.read_text("params.yaml")
        data = (yaml.safe_load(text) or {}).get("data", {}) if text else {}
        return int(data.get("val_size", DataParams().val_size))

    def sweep_points(self) -> list[str]:
        """The sweep points' metrics files on this side (repo-relative)."""
        if self.folder is not None:
            folder = self.folder / "metrics/sweep"
            names = [p.name for p in folder.glob("*.json")] if folder.is_dir() else []
        else:
            listed = subprocess.run(
                ["git", "ls-tree", "--name-only", f"{self.rev}:metrics/sweep"],
                cwd=self.repo,
                capture_output=True,
                text=True,
            )
            names = listed.stdout.split() if listed.returncode == 0 else []
        return sorted(
            f"metrics/sweep/{n}" for n in names if not n.endswith(".correct.json") and n != "dense.json"
        )


def _resolve_rev(spec: str, repo: Path) -> str:
    """A git revision, or the commit of the `dvc exp` experiment named `spec`."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)

    if git("rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}").returncode == 0:
        return spec
    refs = git("for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
    named = [ref for ref in refs if ref.rsplit("/", 1)[-1] == spec]
    if len(named) == 1:
        return named[0]
    raise UserError(
        f"{spec!r}: neither a folder, a git revision nor a `dvc exp` experiment here"
        + (f" (it names {len(named)} experiments; give a commit)" if named else "")
        + "; see `dvc exp show` for names, `git log` for commits"
    )


@dataclass
class Row:
    """One metric that differs: where, old and new value, and what the difference is."""

    metric: str
    old: Any
    new: Any
    kind: str  # "accuracy", "exact", "provenance"
    verdict: Verdict | None = None

    @property
    def outcome(self) -> str:
        if self.kind == "exact":
            return "changed (exact count)"
        if self.kind == "provenance":
            return "another machine or recipe"
        assert self.verdict is not None
        return {"above": "beyond noise", "below": "beyond noise"}.get(
            self.verdict.outcome, self.verdict.outcome
        )

    @property
    def beyond_noise(self) -> bool:
        return self.kind == "exact" or (self.kind == "accuracy" and self.outcome == "beyond noise")


@dataclass
class Diff:
    rows: list[Row] = field(default_factory=list)
    family: Family = field(default_factory=Family)
    machine_differs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine_or_recipe_differs": self.machine_differs,
            "alpha": ALPHA,
            "family_size": self.family.size,
            "rows": [
                {
                    "metric": r.metric,
                    "old": r.old,
                    "new": r.new,
                    "outcome": r.outcome,
                    **({"p_holm": round(r.verdict.p_holm, 6)} if r.verdict and r.verdict.test else {}),
                }
                for r in self.rows
            ],
        }


def diff_results(old: Tree, new: Tree) -> Diff:
    """Every metric of the pipeline that differs between `old` and `new`, tested against its noise."""
    result = Diff()
    made_old, made_new = _provenance(old), _provenance(new)
    for key in (*MACHINE_KEYS, "epochs"):
        if made_old.get(key) != made_new.get(key):
            result.machine_differs.append(key)
            result.rows.append(Row(f"provenance.{key}", made_old.get(key), made_new.get(key), "provenance"))
    evaluated = all(side.read("metrics/evaluate.json") is not None for side in (old, new))
    for name in METRICS:
        a, b = old.read(f"metrics/{name}.json"), new.read(f"metrics/{name}.json")
        if a is None or b is None or (name == "baseline" and evaluated):  # evaluate repeats its score
            continue
        if name in ("evaluate", "baseline"):
            for model in sorted(set(a) & set(b)):
                if isinstance(a[model], dict) and "acc" in a[model]:
                    _evaluated(result, old, new, name, model, a[model], b[model])
        elif name == "train":
            _accuracy(
                result,
                "train.val_acc",
                _binomial(a.get("val_acc"), old.validation_images()),
                _binomial(b.get("val_acc"), new.validation_images()),
            )
            _exact(result, name, a, b)
        else:
            _exact(result, name, a, b)
    for path in sorted(set(old.sweep_points()) & set(new.sweep_points())):
        _sweep_point(result, old, new, path)
    result.family.correct()
    return result


def _provenance(tree: Tree) -> dict[str, Any]:
    for name in METRICS:
        made = (tree.read(f"metrics/{name}.json") or {}).get("provenance")
        if made:
            return made
    return {}


def _exact(result: Diff, name: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in EXACT:
        if key in a and key in b and a[key] != b[key]:
            result.rows.append(Row(f"{name}.{key}", a[key], b[key], "exact"))


def _evaluated(result: Diff, old: Tree, new: Tree, name: str, model: str, a: dict, b: dict) -> None:
    """A test accuracy, paired over the test images where both sides kept their predictions."""
    _exact(result, f"{name}.{model}", a, b)
    if a["acc"] == b["acc"] and a.get("checkpoint_sha256") == b.get("checkpoint_sha256"):
        return
    if str(a.get("scored", "")).startswith("as ") and str(b.get("scored", "")).startswith("as "):
        return  # the score of its twin (`scored: as compact`), tested in the twin's row
    rows = old.read(f"plots/confusion/{model}.json"), new.read(f"plots/confusion/{model}.json")
    if all(r and len(r) == len(rows[0]) for r in rows):
        # the test set's order is fixed: row i is image i on both sides
        sides = [np.array([[r["actual"] == r["predicted"] for r in side]]) for side in rows]
        if all(abs(float(s.mean()) - acc) < 5e-5 for s, acc in zip(sides, (a["acc"], b["acc"]), strict=True)):
            _accuracy(result, f"{name}.{model}.acc", Scores(sides[0]), Scores(sides[1]))
            return
    images = 10_000  # CIFAR-10's test set
    _accuracy(
        result,
        f"{name}.{model}.acc",
        _Binomial(a["acc"], images, 0.0, 1),
        _Binomial(b["acc"], images, 0.0, 1),
    )


def _sweep_point(result: Diff, old: Tree, new: Tree, path: str) -> None:
    a, b = old.read(path), new.read(path)
    _exact(result, path.removeprefix("metrics/sweep/").removesuffix(".json"), a, b)
    per_image = old.read(str(correct_path(Path(path)))), new.read(str(correct_path(Path(path))))
    label = path.removeprefix("metrics/sweep/").removesuffix(".json")
    for side in ("recovery", "random_floor"):
        for recovery in sorted(set(a.get(side, {})) & set(b.get(side, {}))):
            ra, rb = a[side][recovery], b[side][recovery]
            if ra["val_acc_by_seed"] == rb["val_acc_by_seed"]:
                continue
            metric = f"sweep {label} {'' if side == 'recovery' else 'floor '}{recovery}"
            if (
                all(per_image)
                and per_image[0]["images"] == per_image[1]["images"] == a["val_images"] == b["val_images"]
            ):
                scores = [
                    Scores(np.stack([decode(bits, p["images"]) for bits in p[side][recovery].values()]))
                    for p in per_image
                ]
                _accuracy(result, metric, scores[0], scores[1])
            else:
                _accuracy(result, metric, _from_seeds(ra, a["val_images"]), _from_seeds(rb, b["val_images"]))


@dataclass(frozen=True)
class _Binomial:
    """An accuracy known only as a number: its images' binomial error and its seed spread."""

    accuracy: float
    images: int
    seed_std: float
    seeds: int

    @property
    def variance(self) -> float:
        return (self.accuracy * (1 - self.accuracy)) / self.images + self.seed_std**2 / self.seeds


def _binomial(acc: float | None, images: int) -> _Binomial | None:
    return None if acc is None or not images else _Binomial(acc, images, 0.0, 1)


def _from_seeds(result: dict[str, Any], images: int) -> _Binomial:
    return _Binomial(result["val_acc"], images, result["val_acc_std"], len(result["val_acc_by_seed"]))


def _accuracy(result: Diff, metric: str, a: Scores | _Binomial | None, b: Scores | _Binomial | None) -> None:
    if a is None or b is None or a.accuracy == b.accuracy:
        return
    if isinstance(a, Scores) and isinstance(b, Scores):
        verdict = result.family.compare(f"{metric} (new)", f"{metric} (old)", b, a)
    else:
        verdict = _unpaired(result.family, metric, a, b)
    result.rows.append(Row(metric, round(a.accuracy, 6), round(b.accuracy, 6), "accuracy", verdict))


def _unpaired(family: Family, metric: str, a: Any, b: Any) -> Verdict:
    """new against old as two independent accuracies (no per-image results on both sides)."""
    va = a.variance if isinstance(a, _Binomial) else a.accuracy * (1 - a.accuracy) / a.correct.shape[1]
    vb = b.variance if isinstance(b, _Binomial) else b.accuracy * (1 - b.accuracy) / b.correct.shape[1]
    difference = b.accuracy - a.accuracy
    z = difference / math.sqrt(va + vb) if va + vb > 0 else 0.0
    test = Test(
        difference, z, float(2 * stats.norm.sf(abs(z))) if va + vb > 0 else 1.0, "unpaired z, binomial"
    )
    verdict = Verdict(f"{metric} (new)", f"{metric} (old)", b.accuracy, a.accuracy, test)
    family.verdicts[(verdict.a, verdict.b)] = verdict
    return verdict


def diff_markdown(old: Tree, new: Tree, diff: Diff) -> str:
    """The differences as a table, accuracies beyond noise first, with what they are tested against."""
    lines = [f"Differences from {old.spec} to {new.spec}", ""]
    if diff.machine_differs:
        lines += [
            f"**Made on another kind of machine or recipe** ({', '.join(diff.machine_differs)} differ): "
            "every difference below comes at least partly from that, not only from the change.",
            "",
        ]
    if not diff.rows:
        return "\n".join([*lines, "No metric differs."]) + "\n"
    lines += ["| metric | old | new | verdict |", "|---|---|---|---|"]

    def order(row: Row) -> tuple[int, str]:  # provenance, accuracy beyond noise, counts, the rest
        rank = {"provenance": 0, "exact": 2}.get(row.kind, 1 if row.beyond_noise else 3)
        return rank, row.metric

    for row in sorted(diff.rows, key=order):
        verdict = row.outcome
        if row.verdict is not None and row.verdict.test is not None:
            verdict += f" ({p_value(row.verdict.test.p)}, Holm {p_value(row.verdict.p_holm)}; {row.verdict.test.test})"
        lines.append(f"| {row.metric} | {row.old} | {row.new} | {verdict} |")
    lines += [
        "",
        f"{diff.family.size} accuracy differences tested, corrected together by Holm's method at "
        f"{ALPHA:g}. Wall-clock figures (seconds, latency, speed-ups) are left out: compare them on "
        "one machine, in one run (evaluate's interleaved rounds).",
    ]
    return "\n".join(lines) + "\n"
