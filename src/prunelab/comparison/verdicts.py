"""The comparison's statistics: paired tests over the same images, seed variation where there is
any, and Holm's correction over every verdict a report prints.

Every sweep point, its random floor and the dense reference are scored on the same validation
images, and each score keeps which images it got right (per_image.py). So two results are
compared image by image:

- one score against one score (two deterministic results): McNemar's exact test, a two-sided
  binomial test on the images that only one of them gets right (scipy's `binomtest`);
- where either side was repeated over seeds: the per-image difference of the seed means, whose
  variance over the images is the images' part of the error, plus each side's spread of seed
  accuracies over its number of seeds (the seeds' part, which averaging over the same images
  does not shrink). The second term also holds some of the first, so the test errs towards
  "within noise".

A difference whose error is zero (the two agree on every image, or a side never varies) gets no
verdict beyond what its images support: with no image in disagreement it is p = 1, never an
infinite z. Two results that both sit near chance are not ranked at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from prunelab.io import read_json
from prunelab.per_image import correct_path, decode

ALPHA = 0.05
"""The family-wise error rate of a report's verdicts (Holm)."""

CHANCE = 0.1
"""Top-1 accuracy of guessing on CIFAR-10's 10 classes."""

NEAR_CHANCE = 0.05
"""Two results both below CHANCE + NEAR_CHANCE are called near chance and not ranked: a network
that guesses has no order worth reporting."""


@dataclass(frozen=True)
class Scores:
    """One result on the comparison's images: which images it got right, one row per seed."""

    correct: np.ndarray  # seeds × images, bool

    @property
    def seeds(self) -> int:
        return self.correct.shape[0]

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


@dataclass(frozen=True)
class Error:
    """The variance of a paired difference of accuracies, in its parts: the images' (the
    variance of the per-image differences over the images, over their number) and, per side,
    the variance of one seed's accuracy with the number of seeds its mean is over (0 and 1
    for a single score)."""

    images: float
    seeds: tuple[tuple[float, int], tuple[float, int]]

    def variance(self, images_scale: float = 1.0, seeds: int | None = None) -> float:
        """The variance as run; or with the images' part scaled by `images_scale` (n / N for N
        images instead of n) and each side's mean taken over at least `seeds` seeds."""
        return self.images * images_scale + sum(
            spread / max(count, seeds or 0) for spread, count in self.seeds
        )


def paired_error(a: Scores, b: Scores) -> Error:
    """The error of a's accuracy minus b's over the same images (see the module's docstring)."""
    per_image = a.correct.mean(0) - b.correct.mean(0)
    return Error(float(per_image.var(ddof=1)) / len(per_image), (_seed_spread(a), _seed_spread(b)))


def _seed_spread(scores: Scores) -> tuple[float, int]:
    """The variance of one seed's accuracy and the number of seeds (0 for one seed: a
    deterministic result on one baseline does not vary)."""
    if scores.seeds < 2:
        return 0.0, 1
    return float(scores.correct.mean(1).var(ddof=1)), scores.seeds


@dataclass(frozen=True)
class Test:
    """A paired comparison of a against b: difference of accuracies, its z (NaN for the exact
    test), its two-sided p-value, which test gave it, and the error it was tested against."""

    difference: float
    z: float
    p: float
    test: str
    error: Error | None = None  # None where no per-image results were paired


def paired_test(a: Scores, b: Scores) -> Test:
    """a against b on the same images (see the module's docstring)."""
    if a.correct.shape[1] != b.correct.shape[1]:
        raise ValueError(f"scored on {a.correct.shape[1]} and {b.correct.shape[1]} images: not paired")
    difference = a.accuracy - b.accuracy
    error = paired_error(a, b)
    if a.seeds == 1 and b.seeds == 1:
        only_a = int((a.correct[0] & ~b.correct[0]).sum())
        only_b = int((b.correct[0] & ~a.correct[0]).sum())
        if only_a + only_b == 0:
            return Test(difference, math.nan, 1.0, "McNemar exact", error)
        p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
        return Test(difference, math.nan, float(p), "McNemar exact", error)
    variance = error.variance()
    if variance == 0:
        return Test(difference, 0.0, 1.0, "paired z, images and seeds", error)
    z = difference / math.sqrt(variance)
    return Test(difference, z, float(2 * stats.norm.sf(abs(z))), "paired z, images and seeds", error)


POWER = 0.8
"""The probability of detecting a difference that `detectable_difference` reports."""


def detectable_difference(
    error: Error, level: float, images_scale: float = 1.0, seeds: int | None = None
) -> float:
    """The smallest true difference of accuracies that a two-sided test at `level` detects with
    probability POWER, given the error a paired test had (scaled as `Error.variance` says):
    (z at 1 - level/2 + z at POWER) standard errors. The normal approximation, for McNemar's
    test as well: its discordant images make the images' part. With more seeds only the seeds'
    part shrinks here, not the images' part of the seed means: an upper bound."""
    return (stats.norm.isf(level / 2) + stats.norm.ppf(POWER)) * math.sqrt(
        error.variance(images_scale, seeds)
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: reject where adjusted ≤ ALPHA and
    the family-wise error rate stays at ALPHA."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [1.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def near_chance(*accuracies: float) -> bool:
    return all(acc < CHANCE + NEAR_CHANCE for acc in accuracies)


@dataclass(frozen=True)
class Agreement:
    """How far one ranking of the same items agrees with a reference ranking: Kendall's τ-b (1:
    the same order, -1: reversed; NaN where either side ties everything), its two-sided p, and
    the pairs the two order differently (reference's better one first)."""

    tau: float
    p: float
    flips: list[tuple[str, str]]


def rank_agreement(ranking: dict[str, float], reference: dict[str, float]) -> Agreement:
    """`ranking` against `reference` over the items both score (scipy's kendalltau)."""
    items = [k for k in reference if k in ranking]
    flips = [
        (a, b) if reference[a] > reference[b] else (b, a)
        for i, a in enumerate(items)
        for b in items[i + 1 :]
        if (reference[a] - reference[b]) * (ranking[a] - ranking[b]) < 0
    ]
    if len(items) < 2:
        return Agreement(math.nan, math.nan, flips)
    result = stats.kendalltau([ranking[k] for k in items], [reference[k] for k in items])
    return Agreement(float(result.statistic), float(result.pvalue), flips)


# ---------------------------------------------------------------------------------------------
# The sweep's files


def load_point_scores(metrics_path: Path) -> dict[str, dict[str, Scores]]:
    """{"recovery" | "random_floor": {recovery: Scores}} of one sweep point, from the
    .correct.json beside its metrics."""
    raw = read_json(correct_path(metrics_path))
    images = raw["images"]
    return {
        side: {
            recovery: Scores(np.stack([decode(bits, images) for bits in by_seed.values()]))
            for recovery, by_seed in raw[side].items()
        }
        for side in ("recovery", "random_floor")
    }


def load_dense_scores(metrics_path: Path) -> Scores:
    raw = read_json(correct_path(metrics_path))
    return Scores(decode(raw["dense"], raw["images"])[None, :])


@dataclass
class Verdict:
    """One line of a report: a against b, tested or not, and after Holm's correction."""

    a: str
    b: str
    accuracy_a: float
    accuracy_b: float
    test: Test | None  # None: both near chance, not ranked
    p_holm: float = 1.0

    @property
    def outcome(self) -> str:
        """'above', 'below', 'within noise' or 'near chance'."""
        if self.test is None:
            return "near chance"
        if self.p_holm > ALPHA:
            return "within noise"
        return "above" if self.test.difference > 0 else "below"

    def as_dict(self) -> dict[str, Any]:
        test = self.test
        return {
            "a": self.a,
            "b": self.b,
            "accuracy_a": round(self.accuracy_a, 6),
            "accuracy_b": round(self.accuracy_b, 6),
            "difference": round(test.difference, 6) if test else None,
            "z": None if test is None or math.isnan(test.z) else round(test.z, 3),
            "p": round(test.p, 6) if test else None,
            "p_holm": round(self.p_holm, 6) if test else None,
            "test": test.test if test else None,
            "outcome": self.outcome,
        }


class Family:
    """The verdicts of one report, corrected together for their number (Holm)."""

    def __init__(self) -> None:
        self.verdicts: dict[tuple[str, str], Verdict] = {}

    def compare(self, a: str, b: str, scores_a: Scores, scores_b: Scores) -> Verdict:
        """a against b; the same pair asked again (one ranking at two budgets) is one verdict."""
        if (a, b) not in self.verdicts:
            accuracy_a, accuracy_b = scores_a.accuracy, scores_b.accuracy
            test = None if near_chance(accuracy_a, accuracy_b) else paired_test(scores_a, scores_b)
            self.verdicts[(a, b)] = Verdict(a, b, accuracy_a, accuracy_b, test)
        return self.verdicts[(a, b)]

    def correct(self) -> None:
        """Apply Holm's correction over every tested verdict (call once all are in)."""
        tested = [v for v in self.verdicts.values() if v.test is not None]
        for verdict, adjusted in zip(tested, holm([v.test.p for v in tested]), strict=True):  # type: ignore[union-attr]
            verdict.p_holm = adjusted

    @property
    def size(self) -> int:
        return sum(v.test is not None for v in self.verdicts.values())


# ---------------------------------------------------------------------------------------------
# The comparison's verdicts: each criterion against its random floor, and the best methods at
# each cost budget, one family

SPEEDUP_BUDGETS = (1.5, 2.0, 3.0, 4.0)
COMPRESSION_BUDGETS = (2.0, 4.0, 8.0)
COSTS = {
    "macs_speedup": ("fewer MACs once compacted", SPEEDUP_BUDGETS),
    "latency_speedup": ("faster, measured at the largest latency batch", SPEEDUP_BUDGETS),
    "compression": ("compression (params / nonzero)", COMPRESSION_BUDGETS),
}


def _telling_budgets(points: list[dict[str, Any]], cost: str, levels: tuple[float, ...]) -> list[float]:
    """The budget levels whose ranking says something the others do not. A level that the same
    points reach as the next stricter one ranks them alike (with two points, 2x and 4x, ≥ 1.5×
    is ≥ 2× again), so only the stricter one is kept; of the levels no point reaches, only the
    first."""
    reaching = [frozenset(i for i, p in enumerate(points) if p[cost] >= level) for level in levels]
    return [
        level
        for i, level in enumerate(levels)
        if (reaching[i] and (i + 1 == len(levels) or reaching[i + 1] != reaching[i]))
        or (not reaching[i] and (i == 0 or reaching[i - 1]))
    ]


LATENCY_NOISE = 0.15
"""How far a sweep's measured speed-up moved between two runs of the same comparison on one
machine (40 speed-ups: std 0.046–0.047, at most 0.13–0.15, on an Intel Xeon with AMX): a point
that clears a latency budget by less may miss it in the next run."""


def latency_batches(points: list[dict[str, Any]]) -> list[int]:
    keys = {k for p in points for k in p if k.startswith("latency_speedup_b")}
    return sorted(int(k.removeprefix("latency_speedup_b")) for k in keys)


def with_latency(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points with `latency_speedup`: the measured speed-up at the largest batch size."""
    largest = max(latency_batches(points), default=None)
    return [{**p, "latency_speedup": p[f"latency_speedup_b{largest}"] if largest else 1.0} for p in points]


def borderline(point: dict[str, Any], cost: str, budget: float) -> bool:
    """A measured speed-up that clears its budget by less than the run-to-run noise."""
    return cost == "latency_speedup" and point[cost] - budget < LATENCY_NOISE


RANKED_AFTER = ("finetune", "distill", "bn_recalibration", "none")
"""The recovery the report ranks after, the first the sweep ran: fine-tuning is what users ship;
the others are its cheap proxies. The controls (lr_rewind, scratch) are never the ranking."""

PROXIES = ("none", "bn_recalibration")


def ranking_recovery(points: list[dict[str, Any]]) -> str:
    """The recovery the report's rankings are made after (RANKED_AFTER)."""
    ran = list(dict.fromkeys(r for p in points for r in p["recovery"]))
    return next((r for r in RANKED_AFTER if r in ran), ran[-1])


@dataclass
class ProxyAgreement:
    """How a cheap recovery ranks the methods at one point, against the ranking recovery."""

    proxy: str
    point: Any
    agreement: Agreement

    def as_dict(self) -> dict[str, Any]:
        tau, p = self.agreement.tau, self.agreement.p
        return {
            "proxy": self.proxy,
            "point": self.point,
            "kendall_tau": None if math.isnan(tau) else round(tau, 4),
            "p": None if math.isnan(p) else round(p, 6),
            "flips": [list(pair) for pair in self.agreement.flips],
        }


def proxy_agreement(points: list[dict[str, Any]], recovery: str) -> list[ProxyAgreement]:
    """Per proxy (PROXIES the sweep ran, other than `recovery`) and sweep point: Kendall's τ of
    its ranking of the methods against `recovery`'s, and the pairs that flip."""
    ran = list(dict.fromkeys(r for p in points for r in p["recovery"]))
    out = []
    for proxy in (r for r in PROXIES if r in ran and r != recovery):
        for point in dict.fromkeys(p["point"] for p in points):
            here = [p for p in points if p["point"] == point]
            out.append(
                ProxyAgreement(
                    proxy,
                    point,
                    rank_agreement(
                        {p["method"]: p["recovery"][proxy]["val_acc"] for p in here},
                        {p["method"]: p["recovery"][recovery]["val_acc"] for p in here},
                    ),
                )
            )
    return out


def label(point: dict[str, Any]) -> str:
    return f"{point['method']} @ {point['point']}"


@dataclass
class BudgetRanking:
    """Per cost budget: each method's most accurate point that reaches it, best first (at most
    three), and the verdict of the first against the second."""

    cost: str
    budget: float
    ranked: list[dict[str, Any]]
    verdict: Verdict | None


@dataclass
class Comparison:
    """Every verdict of one report, corrected together."""

    floor: dict[tuple[str, Any, str], Verdict]  # (method, point, recovery)
    budgets: list[BudgetRanking]
    recovery: str  # of the budget rankings
    family: Family
    proxies: list[ProxyAgreement]
    replicates: dict[int, Comparison] = field(default_factory=dict)  # by train.seed

    @property
    def baselines(self) -> int:
        return 1 + len(self.replicates)

    def floor_holds(self, key: tuple[str, Any, str]) -> int:
        """On how many baselines the floor verdict `key` comes out as on this one."""
        outcome = self.floor[key].outcome
        return 1 + sum(r.floor[key].outcome == outcome for r in self.replicates.values() if key in r.floor)

    def budget_holds(self, ranking: BudgetRanking) -> int:
        """On how many baselines the same method leads at the budget, by the same verdict."""

        def summary(b: BudgetRanking) -> tuple[str | None, str | None]:
            return (b.ranked[0]["method"] if b.ranked else None, b.verdict.outcome if b.verdict else None)

        mine = summary(ranking)
        return 1 + sum(
            summary(b) == mine
            for r in self.replicates.values()
            for b in r.budgets
            if (b.cost, b.budget) == (ranking.cost, ranking.budget)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "alpha": ALPHA,
            "correction": "Holm",
            "family_size": self.family.size,
            "near_chance_below": CHANCE + NEAR_CHANCE,
            "baselines": self.baselines,
            "replicate_seeds": list(self.replicates),
            "against_random_floor": [
                {
                    "method": m,
                    "point": p,
                    "recovery": r,
                    **v.as_dict(),
                    "holds_on": self.floor_holds((m, p, r)),
                }
                for (m, p, r), v in self.floor.items()
            ],
            "best_at_budget": [
                {
                    "cost": b.cost,
                    "budget": b.budget,
                    "recovery": self.recovery,
                    "ranked": [label(p) for p in b.ranked],
                    **({"verdict": b.verdict.as_dict()} if b.verdict else {}),
                    "holds_on": self.budget_holds(b),
                }
                for b in self.budgets
            ],
            "proxy_agreement": [a.as_dict() for a in self.proxies],
        }


def compare_sweep(
    points: list[dict[str, Any]],
    scores: dict[tuple[str, Any], dict[str, dict[str, Scores]]],
    replicates: dict[int, Comparison] | None = None,
) -> Comparison:
    """The report's verdicts: every criterion against its random floor after each recovery, and
    the first against the second method at each cost budget after the ranking recovery (with
    the cheap proxies' agreement with its ranking); `scores` holds each point's per-image results
    by (method, point) (load_point_scores); `replicates` the same comparison on each replicate
    baseline (by train.seed), each corrected as its own family, against which every verdict is
    checked."""
    family = Family()
    floor = {}
    for p in points:
        mine = scores[(p["method"], p["point"])]
        for recovery, floor_scores in mine["random_floor"].items():
            floor[(p["method"], p["point"], recovery)] = family.compare(
                f"{label(p)}, {recovery}",
                f"its random floor, {recovery}",
                mine["recovery"][recovery],
                floor_scores,
            )
    points = with_latency(points)
    recovery = ranking_recovery(points)
    budgets = []
    for cost, (_, levels) in COSTS.items():
        for budget in _telling_budgets(points, cost, levels):
            best: dict[str, dict[str, Any]] = {}
            for p in points:
                if p[cost] < budget:
                    continue
                acc = p["recovery"][recovery]["val_acc"]
                if p["method"] not in best or acc > best[p["method"]]["recovery"][recovery]["val_acc"]:
                    best[p["method"]] = p
            ranked = sorted(best.values(), key=lambda p: -p["recovery"][recovery]["val_acc"])[:3]
            verdict = None
            if len(ranked) > 1:
                first, second = ranked[0], ranked[1]
                verdict = family.compare(
                    f"{label(first)}, {recovery}",
                    f"{label(second)}, {recovery}",
                    scores[(first["method"], first["point"])]["recovery"][recovery],
                    scores[(second["method"], second["point"])]["recovery"][recovery],
                )
            budgets.append(BudgetRanking(cost, budget, ranked, verdict))
    family.correct()
    return Comparison(floor, budgets, recovery, family, proxy_agreement(points, recovery), replicates or {})


@dataclass(frozen=True)
class PowerRow:
    """What the report's verdicts could detect with another choice of images or seeds: per kind
    of verdict, the median `detectable_difference` over its tested verdicts, at Holm's
    strictest level (ALPHA over the family's size) and at ALPHA."""

    images: int
    seeds: int | None  # each seeded side's mean over at least this many seeds; None: as run
    detectable: dict[str, tuple[float, float]]  # kind: (at ALPHA / family size, at ALPHA)
    verdicts: dict[str, int]  # kind: how many tested verdicts the medians are over


def power_rows(comparison: Comparison, images: int, all_images: int, all_seeds: int) -> list[PowerRow]:
    """The verdicts' power as run (`images` scored per point) and with each choice the budget
    made undone: every one of `all_images` validation images scored, every seeded result on
    `all_seeds` seeds (sweep.seeds), and both."""
    tested = {
        "best_at_budget": list(
            {
                id(b.verdict): b.verdict.test for b in comparison.budgets if b.verdict and b.verdict.test
            }.values()
        ),
        "against_random_floor": [v.test for v in comparison.floor.values() if v.test is not None],
    }
    errors = {  # the kinds with any tested verdict
        kind: found
        for kind, tests in tested.items()
        if (found := [t.error for t in tests if t.error is not None])
    }
    strictest = ALPHA / max(comparison.family.size, 1)
    settings = [(images, None)]
    if all_images > images:
        settings.append((all_images, None))
    seeded = [count for found in errors.values() for e in found for spread, count in e.seeds if spread > 0]
    if seeded and min(seeded) < all_seeds:
        settings += [(images, all_seeds)] + ([(all_images, all_seeds)] if all_images > images else [])
    counts = {kind: len(found) for kind, found in errors.items()}

    def median(found: list[Error], level: float, count: int, seeds: int | None) -> float:
        return round(
            float(np.median([detectable_difference(e, level, images / count, seeds) for e in found])), 6
        )

    return [
        PowerRow(
            count,
            seeds,
            {
                kind: (median(found, strictest, count, seeds), median(found, ALPHA, count, seeds))
                for kind, found in errors.items()
            },
            counts,
        )
        for count, seeds in settings
    ]


def pareto_points(points: list[dict[str, Any]], recovery: str, cost: str) -> set[tuple[str, Any]]:
    """(method, point) of the points no other point beats on both cost and accuracy."""
    front = set()
    for p in points:
        acc = p["recovery"][recovery]["val_acc"]
        dominated = any(
            q[cost] >= p[cost]
            and q["recovery"][recovery]["val_acc"] >= acc
            and (q[cost] > p[cost] or q["recovery"][recovery]["val_acc"] > acc)
            for q in points
        )
        if not dominated:
            front.add((p["method"], p["point"]))
    return front
