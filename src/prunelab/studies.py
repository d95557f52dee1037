"""The studies kept under docs/results/, read back: each experiments/ script writes a study's
metrics there and renders its page from them, and `prunelab figures` quotes a study's headline
beside the results it qualifies. Reading lives here so that both read it alike."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prunelab.captions import counted, setting
from prunelab.comparison.verdicts import ALPHA, Scores, holm, load_point_scores, paired_test, rank_agreement
from prunelab.io import read_json

FINETUNE_BUDGET = Path("docs/results/finetune-budget")
PROXIES = ("none", "bn_recalibration")
"""experiments/finetune_budget.py's metrics: the methods fine-tuned at several budgets."""


@dataclass
class BudgetStudy:
    """How short a fine-tuning budget ranks the methods as the longest one does."""

    record: dict[str, Any]  # study.json: budgets, methods, points, seeds, sessions, runs, proxies
    results: dict[tuple[float, str, str], dict[str, Any]]  # (budget, method, point): sweep metrics
    scores: dict[tuple[str, str], Scores]  # (method, point): the longest budget's per-image results
    # (method, point): the free proxies' sweep metrics (one-shot, BatchNorm recalibration), scored
    # from the study's own baseline; empty where the study has none
    proxy_results: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _separated: list[tuple[str, str, str]] | None = field(default=None, init=False, repr=False)

    @property
    def longest(self) -> float:
        return max(self.record["budgets"])

    def accuracies(self, budget: float, point: str, seed: int | None = None) -> dict[str, float]:
        """Each method's fine-tuned accuracy at `point` after `budget`: the seed mean, or one seed."""
        out = {}
        for method in self.record["methods"]:
            result = self.results[(budget, method, point)]["recovery"]["finetune"]
            out[method] = result["val_acc"] if seed is None else result["val_acc_by_seed"][str(seed)]
        return out

    def tau(self, budget: float, point: str) -> float:
        """Kendall's τ of `budget`'s ranking at `point` against the longest budget's."""
        return rank_agreement(self.accuracies(budget, point), self.accuracies(self.longest, point)).tau

    def mean_tau(self, budget: float) -> float:
        return statistics.mean(self.tau(budget, point) for point in self.record["points"])

    def seed_tau(self, point: str) -> float:
        """The longest budget's first seed against its second: how far two runs agree."""
        first, second = self.record["seeds"][:2]
        return rank_agreement(
            self.accuracies(self.longest, point, second), self.accuracies(self.longest, point, first)
        ).tau

    def mean_seed_tau(self) -> float:
        return statistics.mean(self.seed_tau(point) for point in self.record["points"])

    def separated(self) -> list[tuple[str, str, str]]:
        """The pairs (point, better, worse) the longest budget orders beyond noise: paired tests
        over the images with the seeds' spread (comparison.verdicts), Holm-corrected over every
        pair of methods at every point. Tested once; every verdict on a budget asks again."""
        if self._separated is not None:
            return self._separated
        tests = []
        for point in self.record["points"]:
            for i, a in enumerate(self.record["methods"]):
                for b in self.record["methods"][i + 1 :]:
                    tests.append((point, a, b, paired_test(self.scores[(a, point)], self.scores[(b, point)])))
        adjusted = holm([test.p for *_, test in tests])
        self._separated = [
            (point, a, b) if test.difference > 0 else (point, b, a)
            for (point, a, b, test), p in zip(tests, adjusted, strict=True)
            if p <= ALPHA
        ]
        return self._separated

    def ordered_alike(self, accuracies: dict[str, dict[str, float]]) -> int:
        """How many `separated` pairs `accuracies` ({point: {method: accuracy}}) order as the
        longest budget does."""
        return sum(
            accuracies[point][better] > accuracies[point][worse] for point, better, worse in self.separated()
        )

    def faithful(self, budget: float) -> bool:
        """Whether `budget` orders every pair the longest budget separates beyond noise as the
        longest budget does (and it separates at least one). Pairs the longest budget leaves
        within noise have no order a cheaper budget could be held to; τ counts them all."""
        accuracies = {point: self.accuracies(budget, point) for point in self.record["points"]}
        return bool(self.separated()) and self.ordered_alike(accuracies) == len(self.separated())

    def cheapest_faithful(self) -> float | None:
        """The shortest budget that is `faithful`, None where no shorter one is."""
        return next(
            (b for b in sorted(self.record["budgets"]) if b != self.longest and self.faithful(b)), None
        )

    def proxies(self) -> dict[str, dict[str, dict[str, float]]]:
        """{proxy: {point: {method: accuracy}}} of the free proxies (one-shot, BatchNorm
        recalibration) the study scored from its own baseline, where it scored every method and
        point. The comparison's committed sweep would not do: it may come from another baseline."""
        out = {}
        for proxy in PROXIES:
            table = {
                p: {m: self._proxy_accuracy(m, p, proxy) for m in self.record["methods"]}
                for p in self.record["points"]
            }
            if all(acc is not None for row in table.values() for acc in row.values()):
                out[proxy] = table
        return out  # type: ignore[return-value]  # every accuracy checked above

    def _proxy_accuracy(self, method: str, point: str, proxy: str) -> float | None:
        result = self.proxy_results.get((method, point), {}).get("recovery", {}).get(proxy)
        return None if result is None else result["val_acc"]

    def proxy_taus(self) -> dict[str, float]:
        """Each free proxy's mean τ against the longest budget's ranking (see `proxies`)."""
        return {
            proxy: statistics.mean(
                rank_agreement(by_point[p], self.accuracies(self.longest, p)).tau for p in by_point
            )
            for proxy, by_point in self.proxies().items()
        }

    def made_on(self) -> str:
        """The kind of machine, precision and baseline epochs the study's runs were made with."""
        return settings_of(result["provenance"] for result in self.results.values() if "provenance" in result)


def settings_of(provenances: Iterable[dict[str, Any]]) -> str:
    """The kinds of machine, precision and baseline epochs in these provenance blocks, each where
    they differ (threads aside: they change speed and the last bits only)."""
    return " and ".join(sorted({setting(p, threads=False) for p in provenances})) or "not recorded"


def load_budget_study(root: Path) -> BudgetStudy | None:
    """The fine-tuning budget study under `root`, or None where it was never run."""
    folder = root / FINETUNE_BUDGET
    if not (folder / "study.json").is_file():
        return None
    record = read_json(folder / "study.json")
    runs = [(m, p) for m in record["methods"] for p in record["points"]]
    # a budget still running (or cut short) has not every run: leave it out until it has
    record["budgets"] = [
        b for b in record["budgets"] if all((folder / str(b) / f"{m}-{p}.json").is_file() for m, p in runs)
    ]
    results = {
        (b, m, p): read_json(folder / str(b) / f"{m}-{p}.json") for b in record["budgets"] for m, p in runs
    }
    longest = str(max(record["budgets"]))
    scores = {
        (m, p): load_point_scores(folder / longest / f"{m}-{p}.json")["recovery"]["finetune"] for m, p in runs
    }
    proxy_files = {(m, p): folder / "proxies" / f"{m}-{p}.json" for m, p in runs}
    proxies = {key: read_json(path) for key, path in proxy_files.items() if path.is_file()}
    return BudgetStudy(record, results, scores, proxies)


def _read_run(folder: Path, metrics: tuple[str, ...]) -> dict[str, Any]:
    """One run a study kept: {name: its metrics JSON} for each of `metrics`, and "params", the
    params.yaml it ran with."""
    run = {name: read_json(folder / f"{name}.json") for name in metrics}
    run["params"] = yaml.safe_load((folder / "params.yaml").read_text())
    return run


SHIP = Path("docs/results/ship-4x")
"""experiments/ship.py's metrics: the shipping setting's runs, one folder per fine-tuning seed,
and the speed-up timed again (timing.json)."""
SHIP_METRICS = ("prune", "finetune", "compact", "evaluate")
"""The metrics files of each run, copied out of its experiment's commit."""


@dataclass
class ShipStudy:
    """The shipping setting (conf/profile/ship.yaml), run once per fine-tuning seed."""

    record: dict[str, Any]  # study.json: seeds, command, commit, date, runs (seconds per seed)
    runs: dict[int, dict[str, Any]]  # seed: {prune, finetune, compact, evaluate: metrics; params}
    noise: dict[str, Any] | None  # timing.json: the speed-ups timed again, or None

    @property
    def batches(self) -> list[int]:
        first = self.runs[self.record["seeds"][0]]["evaluate"]["compact"]
        return sorted(int(k.removeprefix("speedup_b")) for k in first if k.startswith("speedup_b"))

    def params(self, seed: int) -> dict[str, Any]:
        return self.runs[seed]["params"]

    def macs_ratio(self, seed: int) -> float:
        evaluate = self.runs[seed]["evaluate"]
        return evaluate["baseline"]["macs"] / evaluate["compact"]["macs"]

    def mean_acc(self, model: str = "compact") -> float:
        return statistics.mean(self.runs[s]["evaluate"][model]["acc"] for s in self.record["seeds"])

    def mean_points(self, model: str = "compact") -> float:
        """Mean test accuracy of the seeds against the dense model's, in points."""
        dense = statistics.mean(self.runs[s]["evaluate"]["baseline"]["acc"] for s in self.record["seeds"])
        return (self.mean_acc(model) - dense) * 100

    def speedups(self, key: str) -> list[float]:
        """Every measurement of the speed-up `key` (`speedup_b128`, `onnx_speedup_b1`): each run's
        evaluate, then the repeats of timing.json."""
        runtime = "onnx" if key.startswith("onnx_") else "eager"
        batch = key.rsplit("_b", 1)[1]
        runs = [self.runs[s]["evaluate"]["compact"][key] for s in self.record["seeds"]]
        return runs + (self.noise["speedups"][f"{runtime}_b{batch}"] if self.noise else [])

    def verdicts(self, goals: dict[str, float]) -> list[str]:
        """Each goal (macs, points, speedup, minutes), met or not, with the figures that say so."""
        seeds = self.record["seeds"]
        ratio = min(self.macs_ratio(s) for s in seeds)
        points = self.mean_points()
        lines = [
            f"{'Met' if ratio >= goals['macs'] else 'Not met'}: ≥ {goals['macs']:g}× fewer MACs "
            f"({ratio:.2f}×).",
            f"{'Met' if -points <= goals['points'] else 'Not met'}: ≤ {goals['points']:g} point below the "
            f"dense model as the mean of {len(seeds)} seeds ({points:+.2f}).",
        ]
        largest = max(self.batches)
        for key, runtime in (
            (f"speedup_b{largest}", "eager PyTorch"),
            (f"onnx_speedup_b{largest}", "onnxruntime"),
        ):
            values = self.speedups(key)
            met = min(values) >= goals["speedup"]
            lines.append(
                f"{'Met' if met else 'Not met'}: ≥ {goals['speedup']:g}× faster at batch {largest} in {runtime}, "
                f"in every one of {len(values)} measurements, so by more than their spread (the {len(seeds)} "
                f"runs' and the repeats'): "
                f"{min(values):.2f}× to {max(values):.2f}×."
            )
        minutes = [v / 60 for v in self.record["runs"].values()]
        if minutes:
            made = self.runs[seeds[0]]["evaluate"]["provenance"]
            lines.append(
                f"{'Met' if max(minutes) <= goals['minutes'] else 'Not met'} on this machine: ≤ "
                f"{goals['minutes']:g} minutes a run ({max(minutes):.1f} at most, {made['precision']} on "
                f"{counted(made['threads'], 'thread')} of {made['cpu']}); not measured on a bf16 CPU, which trains about 2× faster."
            )
        return lines


def load_ship_study(root: Path) -> ShipStudy | None:
    """The shipping setting's runs under `root`, or None where they were never run."""
    folder = root / SHIP
    if not (folder / "study.json").is_file():
        return None
    record = read_json(folder / "study.json")
    runs = {}
    for seed in record["seeds"]:
        runs[seed] = _read_run(folder / f"seed-{seed}", SHIP_METRICS)
    timing = folder / "timing.json"
    return ShipStudy(record, runs, read_json(timing) if timing.is_file() else None)


RECOVERY = Path("docs/results/recovery")
"""experiments/recovery.py's metrics: one folder per variant, one per point and fine-tuning seed
inside it (prune.json, finetune.json and the params it ran with), and study.json."""
RECOVERY_BASE = (
    "prune.method=group_taylor",
    "prune.targets=[Conv2d]",
    "prune.round_to=1",
    "prune.scope=local",
    "finetune.epochs=1",
)
"""The plain run's -S overrides: one-shot Taylor pruning of every conv, 1 epoch of fine-tuning."""
RECOVERY_POINTS = {"2x": 0.5, "3x": 0.667, "4x": 0.75}
"""prune.macs_reduction of each cost target (× fewer MACs once compacted)."""
_KD = ("finetune.kd_weight=0.5",)
_AGP = ("prune.schedule=agp", "prune.steps=3", "prune.finetune_between=1")
_GLOBAL = ("prune.scope=global",)
RECOVERY_VARIANTS = {
    "plain": (),
    "kd": _KD,
    "3_epochs": ("finetune.epochs=3",),
    "agp": _AGP,
    "global": _GLOBAL,
    "combined": _GLOBAL + _KD + _AGP,
}
"""What each variant overrides on top of the plain run."""


@dataclass
class RecoveryStudy:
    """Each recovery variant at each cost target, once per fine-tuning seed, beside the dense
    baseline scored on the same validation images."""

    record: dict[str, Any]  # study.json: runs ({variant/point-sSEED: {stage: seconds}}), sessions
    runs: dict[tuple[str, str, int], dict[str, Any]]  # (variant, point, seed): {prune, finetune, params}
    dense: dict[str, Any]  # dense.json: the baseline's metrics/train.json when the study ran

    def _present(self, index: int, order: Any) -> list[Any]:
        found = {key[index] for key in self.runs}
        return [item for item in order if item in found]

    @property
    def variants(self) -> list[str]:
        return self._present(0, RECOVERY_VARIANTS)

    @property
    def points(self) -> list[str]:
        return self._present(1, RECOVERY_POINTS)

    def seeds(self, variant: str, point: str) -> list[int]:
        return sorted(s for v, p, s in self.runs if (v, p) == (variant, point))

    def ran(self, variant: str, point: str) -> bool:
        """Whether the variant ran at the point (a study still running has not run them all)."""
        return bool(self.seeds(variant, point))

    def accuracies(self, variant: str, point: str) -> list[float]:
        """Validation accuracy of each seed, in seed order."""
        return [self.runs[(variant, point, s)]["finetune"]["val_acc"] for s in self.seeds(variant, point)]

    def points_vs_dense(self, variant: str, point: str) -> float:
        return (statistics.mean(self.accuracies(variant, point)) - self.dense["val_acc"]) * 100

    def macs_ratio(self, variant: str, point: str) -> float:
        """× fewer MACs once compacted (the same for every seed: pruning does not depend on it)."""
        pruned = self.runs[(variant, point, self.seeds(variant, point)[0])]["prune"]
        return pruned["macs"] / pruned["macs_compact"]

    def minutes(self, variant: str, point: str) -> float:
        """Mean wall-clock minutes from the baseline to the fine-tuned model (prune and finetune)."""
        keys = [f"{variant}/{point}-s{s}" for s in self.seeds(variant, point)]
        return statistics.mean(sum(self.record["runs"][k].values()) for k in keys) / 60

    def gain(self, variant: str, point: str, over: str = "plain") -> tuple[float, bool]:
        """Points gained over `over` (seed means), and whether the gain lies beyond the seeds'
        spread: every seed of one side above every seed of the other, with at least two a side. With
        two seeds a side that is the most their runs can say; no test pretends to more."""
        mine, theirs = self.accuracies(variant, point), self.accuracies(over, point)
        points = (statistics.mean(mine) - statistics.mean(theirs)) * 100
        measured = len(mine) > 1 and len(theirs) > 1  # one seed measures no spread
        return points, measured and (min(mine) > max(theirs) or max(mine) < min(theirs))

    def gain_text(self, variant: str, point: str) -> str:
        """The gain over plain in points, **bold** where it lies beyond the seeds' spread; – where
        either has not run."""
        if not (self.ran(variant, point) and self.ran("plain", point)):
            return "–"
        points, beyond = self.gain(variant, point)
        return f"**{points:+.2f}**" if beyond else f"{points:+.2f}"

    def extra_minutes(self, variant: str) -> float:
        """Minutes the variant adds to the plain run's, mean over the points both ran."""
        both = [p for p in self.points if self.ran(variant, p) and self.ran("plain", p)]
        extra = statistics.mean(self.minutes(variant, p) - self.minutes("plain", p) for p in both)
        return round(extra, 1) + 0.0  # + 0.0: a rounded -0.0 prints as +0.0

    def frontier(self, point: str) -> list[str]:
        """The variants no other one beats at `point` in both mean accuracy and minutes (as good
        in one, better in the other), cheapest first: the ones worth their minutes."""
        ran = [v for v in self.variants if self.ran(v, point)]
        scores = {v: (statistics.mean(self.accuracies(v, point)), self.minutes(v, point)) for v in ran}

        def beaten(acc: float, minutes: float) -> bool:
            return any(a >= acc and m <= minutes and (a, m) != (acc, minutes) for a, m in scores.values())

        return sorted((v for v, score in scores.items() if not beaten(*score)), key=lambda v: scores[v][1])


def load_recovery_study(root: Path) -> RecoveryStudy | None:
    """The recovery study's runs under `root`, or None where it was never run."""
    folder = root / RECOVERY
    if not (folder / "study.json").is_file():
        return None
    record = read_json(folder / "study.json")
    runs = {}
    for key in record["runs"]:
        variant, rest = key.split("/")
        point, seed = rest.rsplit("-s", 1)
        runs[(variant, point, int(seed))] = _read_run(folder / key, ("prune", "finetune"))
    return RecoveryStudy(record, runs, read_json(folder / "dense.json"))


FULL_STUDY = Path("docs/results/full-study")
"""experiments/full_study.py's metrics: one folder per architecture holding what its experiment
committed (params.yaml, report/verdicts.json, metrics/train.json, metrics/replicates/*/train.json,
metrics/sweep/**.json without the per-image files), and study.json."""
FULL_STUDY_ARCHS = {
    "cnn": (),
    "resnet20": ("model.arch=resnet20", "~model.kwargs", "+model.kwargs={width: 16}", "train.lr=0.05"),
}
"""The -S overrides of each architecture's experiment, beside -S profile=full: resnet20 takes
other kwargs than the cnn's, so they are replaced whole (Hydra merges a mapping otherwise), and
a lower peak learning rate: the cnn's airbench-style 0.75, with BatchNorm biases at 64 times
it, leaves resnet20 near chance after a few epochs (experiments/recipe_check.py, short runs on
a subset of the training images, chose 0.05 among 0.05 to 0.75)."""
RANKING_RECOVERY = "finetune"


@dataclass
class FullStudy:
    """The full comparison (conf/profile/full.yaml) of each architecture: its fine-tuned ranking
    on every baseline, and the report's verdicts with the baselines each holds on."""

    record: dict[str, Any]  # study.json: archs, runs (seconds per arch), sessions
    folder: Path

    @property
    def archs(self) -> list[str]:
        return [a for a in self.record["archs"] if (self.folder / a / "params.yaml").is_file()]

    @property
    def pending(self) -> list[str]:
        """The architectures whose experiment has not been copied here yet: not run, or still
        running (it takes hours, over several sessions)."""
        return [a for a in FULL_STUDY_ARCHS if a not in self.archs]

    def params(self, arch: str) -> dict[str, Any]:
        return yaml.safe_load((self.folder / arch / "params.yaml").read_text())

    def baselines(self, arch: str) -> list[int]:
        """train.seed of every baseline, the committed one first."""
        params = self.params(arch)
        return [params["train"]["seed"], *params["sweep"]["replicates"]]

    def _under(self, arch: str, folder: str, seed: int) -> Path:
        """metrics/FOLDER of the first baseline; metrics/FOLDER/replicates/SEED of the others
        (metrics/replicates/SEED for train.json), as dvc.yaml and comparison/dvc.yaml write them."""
        first = seed == self.baselines(arch)[0]
        return self.folder / arch / "metrics" / folder / ("" if first else f"replicates/{seed}")

    def baseline_acc(self, arch: str, seed: int) -> float:
        return read_json(self._under(arch, "", seed) / "train.json")["val_acc"]

    def point(self, arch: str, seed: int, method: str, point: str) -> dict[str, Any]:
        """One point's metrics on one baseline."""
        return read_json(self._under(arch, "sweep", seed) / f"{method}-{point}.json")

    def finetuned(self, arch: str, seed: int, point: str) -> dict[str, float]:
        """{method: fine-tuned validation accuracy (mean over the seeds)} at `point` on one baseline."""
        return {
            m: self.point(arch, seed, m, point)["recovery"][RANKING_RECOVERY]["val_acc"]
            for m in self.params(arch)["sweep"]["methods"]
        }

    def dense_acc(self, arch: str, seed: int) -> float:
        """The dense model's accuracy on the points' images (the sweep's dense reference)."""
        return read_json(self._under(arch, "sweep", seed) / "dense.json")["val_acc"]

    def mean_finetuned(self, arch: str, point: str) -> dict[str, float]:
        """Each method's accuracy at `point`, the mean over the baselines."""
        runs = [self.finetuned(arch, seed, point) for seed in self.baselines(arch)]
        return {m: statistics.mean(run[m] for run in runs) for m in runs[0]}

    def baseline_agreement(self, arch: str, point: str, seed: int) -> Any:
        """Baseline `seed`'s ranking at `point` against the first baseline's (τ and flips)."""
        first = self.baselines(arch)[0]
        return rank_agreement(self.finetuned(arch, seed, point), self.finetuned(arch, first, point))

    def baseline_taus(self, arch: str) -> list[float]:
        """Kendall's τ of every other baseline's ranking against the first's, at every point."""
        return [
            self.baseline_agreement(arch, str(point), seed).tau
            for point in self.params(arch)["sweep"]["points"]
            for seed in self.baselines(arch)[1:]
        ]

    def arch_agreement(self, arch: str, reference: str, point: str) -> Any:
        """`arch`'s ranking (baseline means) against `reference`'s, over the methods both ran."""
        return rank_agreement(self.mean_finetuned(arch, point), self.mean_finetuned(reference, point))

    def verdicts(self, arch: str) -> dict[str, Any]:
        return read_json(self.folder / arch / "report/verdicts.json")

    def provenances(self, arch: str) -> list[dict[str, Any]]:
        """Where each of ARCH's baselines and points was made (those that record it): a leg
        resumed over several sessions may have run on more than one machine."""
        sweep = self.params(arch)["sweep"]
        files = [
            *(read_json(self._under(arch, "", seed) / "train.json") for seed in self.baselines(arch)),
            *(
                self.point(arch, seed, method, str(point))
                for seed in self.baselines(arch)
                for method in sweep["methods"]
                for point in sweep["points"]
            ),
        ]
        return [f["provenance"] for f in files if f.get("provenance")]

    def made_on(self, arch: str) -> str:
        """The kind of machine, precision and baseline epochs ARCH's files were made with, each
        where they differ (threads aside: they change speed and the last bits only)."""
        return settings_of(self.provenances(arch))

    def holding(self, arch: str) -> dict[str, tuple[int, int]]:
        """{kind: (verdicts beyond the noise, of them those that hold on every baseline)} for the
        report's verdicts against the random floor (where it ran one) and of the best method at
        each budget."""
        verdicts = self.verdicts(arch)
        kinds = ["against_random_floor"] if self.params(arch)["sweep"]["random_floor"] else []
        out = {}
        for kind in [*kinds, "best_at_budget"]:
            found = [v for v in verdicts[kind] if _outcome(v) in ("above", "below")]
            out[kind] = (len(found), sum(v["holds_on"] == verdicts["baselines"] for v in found))
        return out


def _outcome(verdict: dict[str, Any]) -> str | None:
    """A verdict's outcome; the best-at-budget ones nest it (none where one method stood alone)."""
    inner = verdict.get("verdict", verdict)
    return inner.get("outcome") if inner else None


def load_full_study(root: Path) -> FullStudy | None:
    """The full study under `root`, or None where it was never run."""
    folder = root / FULL_STUDY
    if not (folder / "study.json").is_file():
        return None
    return FullStudy(read_json(folder / "study.json"), folder)
