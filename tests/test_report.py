"""The comparison report: the best method at each cost budget and the Pareto front."""

from __future__ import annotations

from pathlib import Path

from prunelab.report import best_at_budgets_markdown, pareto_points, save_pareto_png


def point(method: str, amount: float, acc: float, macs: float, compression: float, std: float = 0.0) -> dict:
    seeds = {"0": acc} if not std else {"0": acc - std, "1": acc + std}
    result = {"val_acc": acc, "val_acc_std": std, "val_acc_by_seed": seeds}
    return {
        "method": method,
        "amount": amount,
        "macs_speedup": macs,
        "compression": compression,
        "recovery": {"none": {**result, "val_acc": acc / 2}, "bn_recalibration": result},
    }


POINTS = [
    point("cheap", 0.3, 0.80, 1.6, 1.4),
    point("cheap", 0.6, 0.50, 4.5, 2.5),
    point("good", 0.3, 0.85, 1.2, 1.4),
    point("good", 0.6, 0.70, 2.1, 2.5),
    point("noisy", 0.6, 0.60, 2.1, 2.5, std=0.05),
]


def test_best_at_each_budget_ranks_each_methods_best_point_that_reaches_it() -> None:
    text = best_at_budgets_markdown(POINTS)
    assert "after BatchNorm recalibration" in text  # the last recovery the sweep ran
    lines = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- **")}
    assert lines["≥ 1.5× fewer MACs once compacted"].index("cheap 0.8000") < lines[
        "≥ 1.5× fewer MACs once compacted"
    ].index("good 0.7000")
    assert "noisy 0.6000 ± 0.0500" in lines["≥ 2× fewer MACs once compacted"]
    assert "cheap 0.5000 (amount 0.6, 4.50×)" in lines["≥ 4× fewer MACs once compacted"]
    assert "no point reaches it" in lines["≥ 8× compression (params / nonzero)"]


def test_pareto_front_keeps_only_undominated_points(tmp_path: Path) -> None:
    front = pareto_points(POINTS, "bn_recalibration", "macs_speedup")
    assert front == {("good", 0.3), ("cheap", 0.3), ("good", 0.6), ("cheap", 0.6)}
    save_pareto_png(POINTS, 0.9, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
