"""The comparison report: the best method at each cost budget, each criterion against its
random floor, and the Pareto front, with verdicts paired over the same images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from prunelab.captions import p_value, provenance_line
from prunelab.comparison.verdicts import Scores, compare_sweep, pareto_points
from prunelab.report import (
    best_at_budgets_markdown,
    claimed_vs_realised_markdown,
    family_markdown,
    proxy_agreement_markdown,
    random_floor_markdown,
    save_pareto_png,
    sweep_table_markdown,
    title_markdown,
)
from tests.conftest import PROVENANCE

IMAGES = 2500


def correct_at(acc: float, seed: int) -> np.ndarray:
    """Which of IMAGES images a result of accuracy `acc` gets right: nested, so a better result
    gets right every image a worse one does (a strongly paired comparison)."""
    order = np.random.default_rng(seed).permutation(IMAGES)
    correct = np.zeros(IMAGES, dtype=bool)
    correct[order[: round(acc * IMAGES)]] = True
    return correct


def scores_of(points: list[dict[str, Any]]) -> dict[tuple[str, Any], dict[str, dict[str, Scores]]]:
    """Per-image results matching each point's accuracies by seed (the same image order for all,
    so results are paired as the sweep's are)."""

    def side(results: dict[str, Any]) -> dict[str, Scores]:
        return {
            r: Scores(np.stack([correct_at(acc, 0) for acc in res["val_acc_by_seed"].values()]))
            for r, res in results.items()
        }

    return {
        (p["method"], p["point"]): {
            "recovery": side(p["recovery"]),
            "random_floor": side(p.get("random_floor", {})),
        }
        for p in points
    }


def point(
    method: str,
    amount: float,
    acc: float,
    macs: float,
    compression: float,
    std: float = 0.0,
    images: int = 2500,
) -> dict:
    seeds = {"0": acc} if not std else {"0": acc - std, "1": acc + std}
    result = {"val_acc": acc, "val_acc_std": std, "val_acc_by_seed": seeds}
    return {
        "method": method,
        "point": amount,
        "amount": amount,
        "macs_speedup": macs,
        "compression": compression,
        "val_images": images,
        "recovery": {"none": {**result, "val_acc": acc / 2}, "bn_recalibration": result},
    }


POINTS = [
    point("cheap", 0.3, 0.80, 1.6, 1.4),
    point("cheap", 0.6, 0.50, 4.5, 2.5),
    point("good", 0.3, 0.85, 1.2, 1.4),
    point("good", 0.6, 0.70, 2.1, 2.5),
    point("noisy", 0.6, 0.60, 2.1, 2.5, std=0.08),
]


def test_best_at_each_budget_ranks_each_methods_best_point_that_reaches_it() -> None:
    text = best_at_budgets_markdown(compare_sweep(POINTS, scores_of(POINTS)))
    assert "after BatchNorm recalibration" in text  # the last recovery the sweep ran
    lines = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- **")}
    assert lines["≥ 1.5× fewer MACs once compacted"].index("cheap 0.8000") < lines[
        "≥ 1.5× fewer MACs once compacted"
    ].index("good 0.7000")
    assert "noisy 0.6000 ± 0.0800" in lines["≥ 2× fewer MACs once compacted"]
    assert "cheap 0.5000 (amount 0.6, 4.50×)" in lines["≥ 4× fewer MACs once compacted"]
    # a budget the same points reach as the next stricter one ranks them alike: only the stricter
    # is listed (≥ 3× is reached by 4.5× alone, as ≥ 4× is); of those no point reaches, the first
    assert "≥ 3× fewer MACs once compacted" not in lines
    assert "no point reaches it" in lines["≥ 4× compression (params / nonzero)"]
    assert "≥ 8× compression (params / nonzero)" not in lines


def test_pareto_front_keeps_only_undominated_points(tmp_path: Path) -> None:
    front = pareto_points(POINTS, "bn_recalibration", "macs_speedup")
    assert front == {("good", 0.3), ("cheap", 0.3), ("good", 0.6), ("cheap", 0.6)}
    save_pareto_png(POINTS, 0.9, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_verdict_needs_a_difference_beyond_the_noise() -> None:
    comparison = compare_sweep(POINTS, scores_of(POINTS))
    text = best_at_budgets_markdown(comparison)
    lines = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- **")}
    # 0.80 against 0.70 on the same 2500 images: far beyond the noise
    assert "**cheap beats good**" in lines["≥ 1.5× fewer MACs once compacted"]
    # 0.70 against 0.60 ± 0.08 over 2 seeds: the seed spread swallows it
    assert "**good is within noise of noisy**" in lines["≥ 2× fewer MACs once compacted"]
    assert "Holm" in text
    # one ranking asked at two budgets is one test of the family
    assert comparison.family.size == len({(v.a, v.b) for v in comparison.family.verdicts.values()})


def test_a_p_value_too_small_for_a_float_is_not_printed_as_zero() -> None:
    # 3,000 images that only one side of a pair gets right: McNemar's exact p, 2 × 0.5**3000,
    # underflows to 0, which printed as "p = 0" reads as certainty
    underflowed = stats.binomtest(0, 3000, 0.5).pvalue
    assert underflowed == 0.0 and p_value(underflowed) == "p < 1e-300"
    assert p_value(0.012) == "p = 0.012" and p_value(1.0) == "p = 1" and p_value(3e-7) == "p = 3e-07"


def test_a_report_says_where_it_was_made() -> None:
    line = provenance_line(PROVENANCE)
    assert (
        line
        == "Made on AMD EPYC (avx2), float32, 2 threads, baseline trained 6 epochs; torch 2.9.0, dvc 3.67.1."
    )
    assert provenance_line(None) == "Provenance: not recorded."
    one = provenance_line({**PROVENANCE, "threads": 1, "epochs": 1})
    assert ", 1 thread, baseline trained 1 epoch;" in one


def test_claimed_against_realised_speedup_per_structured_method() -> None:
    points = [
        {**point("filters", 0.5, 0.7, 3.9, 2.0), "latency_speedup_b1": 1.4, "latency_speedup_b128": 3.1},
        {**point("weights", 0.5, 0.8, 1.0, 2.0), "latency_speedup_b1": 1.0, "latency_speedup_b128": 1.0},
        {**point("middle", 0.4, 0.6, 2.5, 1.5), "latency_speedup_b1": 1.2, "latency_speedup_b128": 2.5},
    ]
    table = claimed_vs_realised_markdown(points, [0.5])
    assert "| filters | 3.90 → 1.40, 3.10 |" in table and "| weights |" not in table
    assert "at batch 1, 128" in table
    text = best_at_budgets_markdown(compare_sweep(points, scores_of(points)))
    assert "**≥ 3× faster, measured at the largest latency batch**: filters 0.7000" in text
    # 3.10× clears 3× by less than the run-to-run noise of a measured speed-up; 2× by more
    assert "filters 0.7000 (amount 0.5, 3.10×, within the noise of the budget)" in text
    lines = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- **")}
    assert (
        "filters 0.7000 (amount 0.5, 3.10×), then"
        in lines["≥ 2× faster, measured at the largest latency batch"]
    )
    assert "3.90×, within the noise" not in text  # MACs are counted, not measured


def with_floor(p: dict, floor_acc: float, std: float = 0.0) -> dict:
    seeds = {"0": floor_acc - std, "1": floor_acc + std}
    result = {"val_acc": floor_acc, "val_acc_std": std, "val_acc_by_seed": seeds}
    return {**p, "random_floor": {"none": result, "bn_recalibration": result}}


def test_each_method_against_its_random_floor_with_a_verdict() -> None:
    points = [
        with_floor(point("lamp", "2x", 0.80, 2.0, 2.0), 0.60, std=0.01),  # far above
        with_floor(point("lamp", "4x", 0.40, 4.0, 4.0), 0.41, std=0.02),  # within noise
        with_floor(point("bad", "2x", 0.50, 2.0, 2.0), 0.70, std=0.01),  # below
        point("random_structured", "2x", 0.55, 2.0, 2.0),  # random masks: no floor of its own
    ]
    comparison = compare_sweep(points, scores_of(points))
    text = random_floor_markdown(points, ["2x", "4x"], comparison)
    section = text.split("(`bn_recalibration`)")[1]
    assert "| lamp | 0.8000 vs 0.6000 ± 0.0100 **above** | 0.4000 vs 0.4100 ± 0.0200 ≈ |" in section
    assert "| bad | 0.5000 vs 0.7000 ± 0.0100 **below** | – |" in section
    assert "random_structured" not in text
    assert "lamp: above its floor at 1 of 2 points, below at 0" in section
    assert "bad: above its floor at 0 of 1 points, below at 1" in section
    lone = [point("x", 0.5, 0.5, 1, 1)]
    assert random_floor_markdown(lone, [0.5], compare_sweep(lone, scores_of(lone))) == ""


def test_results_near_chance_are_not_ranked_against_their_floor() -> None:
    points = [with_floor(point("lamp", "4x", 0.12, 4.0, 4.0), 0.10, std=0.002)]
    comparison = compare_sweep(points, scores_of(points))
    text = random_floor_markdown(points, ["4x"], comparison)
    assert "0.1200 vs 0.1000 ± 0.0020 near chance" in text
    assert "near chance at 1" in text and comparison.family.size == 0


def test_cost_targets_and_amounts_share_one_table() -> None:
    points = [
        {**point("lamp", "2x", 0.8, 2.0, 2.0), "amount": 0.2871, "targeted_sparsity": 0.29},
        {**point("lamp", 0.3, 0.85, 1.2, 1.4), "targeted_sparsity": 0.3},
    ]
    table = sweep_table_markdown(points, ["2x", 0.3], 0.9)
    assert "| method | 2x | 0.3 |" in table and "cost target" in table
    assert "| lamp | 0.8000 (0.29) | 0.8500 (0.30) |" in table
    assert "| lamp | 0.287: 2.00× / 2.00× | 0.3: 1.40× / 1.20× |" in table


def _with_finetune(p: dict[str, Any], acc: float) -> dict[str, Any]:
    result = {"val_acc": acc, "val_acc_std": 0.0, "val_acc_by_seed": {"0": acc}}
    control = {**result, "val_acc": 0.5, "val_acc_by_seed": {"0": 0.5}}
    recovery = {**p["recovery"], "finetune": result, "lr_rewind": control}
    return {**p, "recovery": recovery, "targeted_sparsity": 0.3, "amount": 0.3}


def test_the_report_ranks_after_fine_tuning_with_the_proxies_agreement_beside_it() -> None:
    # bn_recalibration ranks good > cheap > other at 0.3; fine-tuning reverses the first two
    points = [
        _with_finetune(point("cheap", 0.3, 0.80, 2.0, 1.4), 0.88),
        _with_finetune(point("good", 0.3, 0.85, 2.0, 1.4), 0.86),
        _with_finetune(point("other", 0.3, 0.60, 2.0, 1.4), 0.70),
    ]
    comparison = compare_sweep(points, scores_of(points))
    assert comparison.recovery == "finetune"  # not the control listed after it
    assert all(b.ranked[0]["method"] == "cheap" for b in comparison.budgets if b.ranked)
    agreement = {(a.proxy, a.point): a.agreement for a in comparison.proxies}
    assert set(agreement) == {("none", 0.3), ("bn_recalibration", 0.3)}
    # one of three pairs flips: τ = (2 - 1) / 3
    assert agreement[("bn_recalibration", 0.3)].tau == pytest.approx(1 / 3)
    assert agreement[("bn_recalibration", 0.3)].flips == [("cheap", "good")]
    text = proxy_agreement_markdown(comparison)
    assert "| `bn_recalibration` | 0.33 |" in text and "`bn_recalibration` at 0.3: cheap > good" in text
    assert comparison.as_dict()["proxy_agreement"][1] == {
        "proxy": "bn_recalibration",
        "point": 0.3,
        "kendall_tau": pytest.approx(1 / 3, abs=1e-4),
        "p": 1.0,
        "flips": [["cheap", "good"]],
    }
    assert "ranked after fine-tuning with masks held (`finetune`)" in title_markdown(points, comparison)
    tables = sweep_table_markdown(points, [0.3], 0.9, first=comparison.recovery)
    assert tables.index("(`finetune`)") < tables.index("(`none`)") < tables.index("(`lr_rewind`)")


def test_without_fine_tuning_the_report_ranks_after_recalibration_and_has_no_proxies() -> None:
    comparison = compare_sweep(POINTS, scores_of(POINTS))
    assert comparison.recovery == "bn_recalibration"
    assert [a.proxy for a in comparison.proxies] == ["none"] * len({p["point"] for p in POINTS})


def test_every_verdict_says_on_how_many_baselines_it_holds() -> None:
    floored = [
        {
            **point("lamp", 0.3, 0.85, 2.0, 1.4),
            "random_floor": {"bn_recalibration": point("x", 0, 0.70, 1, 1)["recovery"]["bn_recalibration"]},
        },
        {**point("l2", 0.3, 0.80, 2.0, 1.4)},
    ]
    # the second baseline: the floor catches up with lamp, and l2 leads the budget
    again = [
        {**floored[0], "random_floor": {"bn_recalibration": floored[0]["recovery"]["bn_recalibration"]}},
        {**point("l2", 0.3, 0.90, 2.0, 1.4)},
    ]
    one = compare_sweep(floored, scores_of(floored))
    assert one.baselines == 1 and "one baseline" in family_markdown(one)
    both = compare_sweep(floored, scores_of(floored), {7: compare_sweep(again, scores_of(again))})
    key = ("lamp", 0.3, "bn_recalibration")
    assert both.floor[key].outcome == "above" and both.floor_holds(key) == 1
    assert "vs 0.7000 **above** (1/2)" in random_floor_markdown(floored, [0.3], both)
    ranking = next(b for b in both.budgets if b.cost == "macs_speedup" and b.budget == 2.0)
    assert ranking.ranked[0]["method"] == "lamp" and both.budget_holds(ranking) == 1
    assert "the same lead and verdict on 1 of 2 baselines" in best_at_budgets_markdown(both)
    assert "train.seed 7 (sweep.replicates)" in family_markdown(both)
    as_dict = both.as_dict()
    assert as_dict["baselines"] == 2 and as_dict["replicate_seeds"] == [7]
    assert as_dict["against_random_floor"][0]["holds_on"] == 1
    # the same comparison again on the replicate: every verdict holds on both
    same = compare_sweep(floored, scores_of(floored), {7: compare_sweep(floored, scores_of(floored))})
    assert same.floor_holds(key) == 2 and all(same.budget_holds(b) == 2 for b in same.budgets)
