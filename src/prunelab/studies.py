"""The studies kept under docs/results/, read back: each experiments/ script writes a study's
metrics there and renders its page from them, and `prunelab figures` quotes a study's headline
beside the results it qualifies. Reading lives here so that both read it alike."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunelab.comparison.verdicts import rank_agreement
from prunelab.io import read_json

FINETUNE_BUDGET = Path("docs/results/finetune-budget")
PROXIES = ("none", "bn_recalibration")
"""experiments/finetune_budget.py's metrics: the methods fine-tuned at several budgets."""


@dataclass
class BudgetStudy:
    """How short a fine-tuning budget ranks the methods as the longest one does."""

    record: dict[str, Any]  # study.json: budgets, methods, points, seeds, command, commit, date, runs
    results: dict[tuple[float, str, str], dict[str, Any]]  # (budget, method, point): sweep metrics

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

    def proxies(self, root: Path) -> dict[str, dict[str, dict[str, float]]]:
        """{proxy: {point: {method: accuracy}}} of the comparison's free proxies (one-shot,
        BatchNorm recalibration) from `root`'s committed sweep, where it scored every method and
        point of the study."""
        out = {}
        for proxy in PROXIES:
            table = {
                p: {m: _sweep_accuracy(root, m, p, proxy) for m in self.record["methods"]}
                for p in self.record["points"]
            }
            if all(acc is not None for row in table.values() for acc in row.values()):
                out[proxy] = table
        return out  # type: ignore[return-value]  # every accuracy checked above

    def proxy_taus(self, root: Path) -> dict[str, float]:
        """Each free proxy's mean τ against the longest budget's ranking (see `proxies`)."""
        return {
            proxy: statistics.mean(
                rank_agreement(by_point[p], self.accuracies(self.longest, p)).tau for p in by_point
            )
            for proxy, by_point in self.proxies(root).items()
        }


def _sweep_accuracy(root: Path, method: str, point: str, recovery: str) -> float | None:
    path = root / "metrics/sweep" / f"{method}-{point}.json"
    result = read_json(path)["recovery"].get(recovery) if path.is_file() else None
    return None if result is None else result["val_acc"]


def load_budget_study(root: Path) -> BudgetStudy | None:
    """The fine-tuning budget study under `root`, or None where it was never run."""
    folder = root / FINETUNE_BUDGET
    if not (folder / "study.json").is_file():
        return None
    record = read_json(folder / "study.json")
    results = {
        (b, m, p): read_json(folder / str(b) / f"{m}-{p}.json")
        for b in record["budgets"]
        for m in record["methods"]
        for p in record["points"]
    }
    return BudgetStudy(record, results)
