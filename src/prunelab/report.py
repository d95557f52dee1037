"""The comparison at a glance: sweep and sensitivity results as tables, DVC plot data and PNGs.

Formatting: every function takes the metrics the stages wrote, and the verdicts comparison.verdicts
computed from them, and returns text or draws a figure to the path it is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab.captions import caption_figure, p_value
from prunelab.comparison.verdicts import (
    ALPHA,
    CHANCE,
    COSTS,
    LATENCY_NOISE,
    NEAR_CHANCE,
    POWER,
    Comparison,
    PowerRow,
    Verdict,
    borderline,
    latency_batches,
    pareto_points,
    ranking_recovery,
    with_latency,
)

RECOVERY_TITLES = {
    "none": "one-shot, no recovery",
    "bn_recalibration": "after BatchNorm recalibration",
    "finetune": "after fine-tuning with masks held",
    "distill": "after fine-tuning with distillation from the dense model",
    "lr_rewind": "after learning-rate rewinding (control)",
    "scratch": "the pruned architecture trained from scratch (control)",
}


Grid = list[float | int | str]
"""sweep.points: amounts and cost targets (`2x`)."""


def _grid_table(points: list[dict[str, Any]], grid: Grid, cell: Any, methods: list[str] | None = None) -> str:
    """Rows: methods; columns: sweep.points; `cell(point)` fills each cell."""
    by_key = {(p["method"], p["point"]): p for p in points}
    methods = methods if methods is not None else list(dict.fromkeys(p["method"] for p in points))
    lines = ["| method | " + " | ".join(str(g) for g in grid) + " |", "|---|" + "---|" * len(grid)]
    lines += [
        f"| {method} | "
        + " | ".join(cell(by_key[(method, g)]) if (method, g) in by_key else "–" for g in grid)
        + " |"
        for method in methods
    ]
    return "\n".join(lines) + "\n"


def title_markdown(points: list[dict[str, Any]], comparison: Comparison) -> str:
    """The report's title and what it leads with."""
    recovery = comparison.recovery
    proxies = sorted({a.proxy for a in comparison.proxies})
    beside = (
        f" The cheaper {' and '.join(f'`{p}`' for p in proxies)} results stand beside it as proxies, "
        "with how far their rankings agree with it."
        if proxies
        else ""
    )
    return (
        "# Pruning methods compared\n\n"
        f"The methods are ranked {RECOVERY_TITLES.get(recovery, recovery)} (`{recovery}`), "
        f"each scored on the same {points[0]['val_images'] if points else 0} validation images as the "
        f"dense baseline.{beside}\n"
    )


def sweep_table_markdown(
    points: list[dict[str, Any]], grid: Grid, dense_acc: float | None, first: str | None = None
) -> str:
    """One table per recovery (`first` first; rows: methods; columns: sweep.points; cells:
    validation accuracy, ± its std over seeds where it depends on the seed, and the counted
    targeted sparsity), then a table of what each point costs."""
    recoveries = list(dict.fromkeys(r for p in points for r in p["recovery"]))
    if first in recoveries:
        recoveries.remove(first)
        recoveries.insert(0, first)

    def table(cell: Any) -> str:
        return _grid_table(points, grid, cell)

    seeds = max((len(s["val_acc_by_seed"]) for p in points for s in p["recovery"].values()), default=1)
    dense = f"The dense baseline on the same images: {dense_acc:.4f}. " if dense_acc is not None else ""
    repeated = (
        f"Where a result depends on the seed (random methods, plugins, training) it is the mean ± "
        f"std over its seeds (up to {seeds}: sweep.seeds, and sweep.trained_seeds where it trains); "
        "the random methods are the floor a criterion must beat. "
        if seeds > 1
        else ""
    )
    parts = [
        "## Accuracy at every point\n\n"
        f"Validation accuracy ({points[0]['val_images'] if points else 0} validation images) of each "
        "method at each point of sweep.points, after each recovery (sweep.recovery); in brackets "
        "the fraction of targeted weights that are zero, counted. A point `<r>x` is a cost target "
        "each method meets at its own amount: r× fewer MACs once compacted for channel methods, "
        f"r× compression (params / nonzero) for unstructured ones. {dense}{repeated.rstrip()}\n\n"
    ]
    for recovery in recoveries:
        parts.append(f"### {RECOVERY_TITLES.get(recovery, recovery)} (`{recovery}`)\n\n")
        parts.append(
            table(lambda p, r=recovery: f"{_accuracy(p['recovery'][r])} ({p['targeted_sparsity']:.2f})")
        )
        parts.append("\n")
    parts.append(
        "### What each point costs\n\nThe amount pruned (searched, for a cost target), then compression "
        "(params / nonzero params) and MACs speed-up of the compacted model (dense MACs / compacted "
        "MACs; only structured methods remove whole channels).\n\n"
    )
    parts.append(table(lambda p: f"{p['amount']:.3g}: {p['compression']:.2f}× / {p['macs_speedup']:.2f}×"))
    return "".join(parts)


def proxy_agreement_markdown(comparison: Comparison) -> str:
    """Kendall's τ of each cheap proxy's ranking against the ranking recovery's, per point, and
    the pairs whose order flips."""
    if not comparison.proxies:
        return ""
    recovery = comparison.recovery
    proxies = list(dict.fromkeys(a.proxy for a in comparison.proxies))
    grid = list(dict.fromkeys(a.point for a in comparison.proxies))
    by_key = {(a.proxy, a.point): a.agreement for a in comparison.proxies}
    lines = [
        "## How far the cheap proxies rank like it\n",
        f"Kendall's τ between each proxy's ranking of the methods at a point and the `{recovery}` "
        "ranking there (1: the same order; -1: reversed), then the pairs the two order differently, "
        f"the `{recovery}` ranking's better one first. Accuracies are seed means; a flip between "
        "two methods within noise of each other is expected.\n",
        "| proxy | " + " | ".join(str(g) for g in grid) + " |",
        "|---|" + "---|" * len(grid),
    ]
    for proxy in proxies:
        taus = [by_key[(proxy, g)].tau for g in grid]
        lines.append(f"| `{proxy}` | " + " | ".join("–" if t != t else f"{t:.2f}" for t in taus) + " |")
    lines.append("")
    for proxy in proxies:
        for g in grid:
            flips = by_key[(proxy, g)].flips
            if flips:
                lines.append(f"- `{proxy}` at {g}: " + ", ".join(f"{a} > {b}" for a, b in flips))
    return "\n".join(lines) + "\n"


def _accuracy(result: dict[str, Any]) -> str:
    if len(result.get("val_acc_by_seed", {})) > 1:
        return f"{result['val_acc']:.4f} ± {result['val_acc_std']:.4f}"
    return f"{result['val_acc']:.4f}"


def sweep_plot_rows(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point and recovery, for the DVC plot (one panel per recovery)."""
    return [
        {
            "method": p["method"],
            "recovery": recovery,
            "point": str(p["point"]),
            "amount": p["amount"],
            "sparsity": p["targeted_sparsity"],
            "val_acc": result["val_acc"],
            "val_acc_std": result["val_acc_std"],
            "compression": p["compression"],
            "macs_speedup": p["macs_speedup"],
            "latency_speedup": p["latency_speedup"],
        }
        for p in with_latency(points)
        for recovery, result in p["recovery"].items()
    ]


def save_sweep_png(
    points: list[dict[str, Any]], dense_acc: float | None, path: Path, made: dict[str, Any] | None = None
) -> None:
    """Accuracy against sparsity, one panel per recovery, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recoveries = list(dict.fromkeys(r for p in points for r in p["recovery"]))
    fig, axes = plt.subplots(
        1, len(recoveries), figsize=(6 * len(recoveries), 4.5), dpi=120, squeeze=False, sharey=True
    )
    for ax, recovery in zip(axes[0], recoveries, strict=True):
        for method in dict.fromkeys(p["method"] for p in points):
            mine = sorted((p for p in points if p["method"] == method), key=lambda p: p["targeted_sparsity"])
            ax.errorbar(
                [p["targeted_sparsity"] for p in mine],
                [p["recovery"][recovery]["val_acc"] for p in mine],
                yerr=[p["recovery"][recovery]["val_acc_std"] for p in mine],
                marker="o",
                capsize=3,
                label=method,
            )
        if dense_acc is not None:
            ax.axhline(dense_acc, color="black", linestyle="--", linewidth=1, label="dense baseline")
        ax.axhline(0.1, color="grey", linestyle=":", linewidth=1, label="chance")
        ax.set_xlabel("sparsity of the targeted weights")
        ax.set_title(RECOVERY_TITLES.get(recovery, recovery), fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("Accuracy vs sparsity (bars: std over seeds)", fontsize=11)
    caption_figure(fig, made)
    fig.savefig(path, format="png")  # the caller stages `path` (io.staged_outputs)
    plt.close(fig)


def family_markdown(comparison: Comparison) -> str:
    """What the report's verdicts are and how they were tested."""
    return (
        "## How the verdicts are tested\n\n"
        f"Every verdict of this report is one of a family of {comparison.family.size} tests, corrected together "
        f"by Holm's method at a family-wise error rate of {ALPHA:g}. Every model, the dense reference "
        "included, is scored on the same validation images, so each test is paired image by image: "
        "McNemar's exact test between two single scores; where a side was repeated over seeds, a z-test "
        "on the per-image differences of the seed means, with each side's seed spread added. Results "
        f"that both sit below {CHANCE + NEAR_CHANCE:.2f} (chance is {CHANCE:.2f}) are marked near chance "
        f"and not ranked. {_baselines_sentence(comparison)}\n"
    )


POWER_KINDS = {
    "best_at_budget": "best method against the second",
    "against_random_floor": "criterion against its floor",
}


def power_markdown(rows: list[PowerRow], comparison: Comparison, trained_seeds: int, all_seeds: int) -> str:
    """What the budget's choices of images and seeds cost the verdicts in power (power_rows)."""
    as_run, kinds = rows[0], list(rows[0].detectable)
    if not kinds:
        return ""
    size = comparison.family.size

    def setting(row: PowerRow) -> str:
        images = f"{row.images:,} images" + (" (sweep.val_images: 0)" if row.images > as_run.images else "")
        if row.seeds is None:
            return images + (
                f", training recoveries on {trained_seeds} seeds" if trained_seeds < all_seeds else ""
            )
        return f"{images}, every seeded result on {row.seeds} seeds (sweep.trained_seeds: {row.seeds})"

    seeds = (
        f"on {trained_seeds} of the {all_seeds} sweep.seeds (sweep.trained_seeds)"
        if trained_seeds < all_seeds
        else f"on all {all_seeds} sweep.seeds"
    )
    lines = [
        "## What the budget's choices cost in power",
        "",
        f"The budget scores each point on {as_run.images:,} validation images (sweep.val_images), runs the "
        f"training recoveries {seeds}, and tests {size} verdicts as one family, so Holm's first rejection "
        f"must clear {ALPHA:g}/{size}. These choices cost power. Below, the smallest accuracy difference, in "
        "points, that a verdict detects "
        f"with {POWER:.0%} power, at that strictest level and at {ALPHA:g}, where each verdict's own bar "
        "lies between the two. It is the median over the tested verdicts of each kind, computed from the error "
        "each was tested against (normal approximation). Then each choice is undone: more images shrink the "
        "images' part of that error; more seeds shrink the seeds' part (not the images' part of the seed "
        "means, so those rows are upper bounds). More images cost one more scoring pass per result, more "
        "seeds one more fine-tuning per point and floor. A smaller family (fewer methods or points) loosens "
        "the strictest level.",
        "",
        "| setting | " + " | ".join(f"{POWER_KINDS[k]} ({as_run.verdicts[k]})" for k in kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for row in rows:
        cells = [f"{100 * row.detectable[k][0]:.1f} / {100 * row.detectable[k][1]:.1f}" for k in kinds]
        lines.append(f"| {'as run: ' if row is as_run else ''}{setting(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _baselines_sentence(comparison: Comparison) -> str:
    if not comparison.replicates:
        return (
            "All rest on one baseline (train.seed): a verdict says how this baseline's pruned models "
            "compare, not how a retrained baseline's would (sweep.replicates adds baselines)."
        )
    seeds = ", ".join(map(str, comparison.replicates))
    return (
        f"The whole comparison also ran on {len(comparison.replicates)} more baselines, trained as this one "
        f"with train.seed {seeds} (sweep.replicates), each tested as a family of its own; "
        f"every verdict says on how many of the {comparison.baselines} baselines it comes out the same."
    )


def _holds(count: int, comparison: Comparison) -> str:
    return f" ({count}/{comparison.baselines})" if comparison.replicates else ""


def _mark(verdict: Verdict) -> str:
    return {"above": "**above**", "below": "**below**", "within noise": "≈", "near chance": "near chance"}[
        verdict.outcome
    ]


def random_floor_markdown(points: list[dict[str, Any]], grid: Grid, comparison: Comparison) -> str:
    """Each method against its random floor (random units, the method's own per-layer counts),
    per recovery and point, with a verdict per method."""
    floored = [p for p in points if p.get("random_floor")]
    if not floored:
        return ""
    methods = list(dict.fromkeys(p["method"] for p in floored))
    recoveries = list(dict.fromkeys(r for p in floored for r in p["random_floor"]))
    lines = [
        "## Against the random floor\n",
        "Each criterion against random masks that prune exactly as many units of each layer "
        "(sweep.random_floor; mean ± std over the seeds), so only the choice of units differs: "
        "same MACs, same parameter count. **above** or **below** the floor after Holm's correction, "
        "≈ within noise, or near chance"
        + (
            f"; (k/{comparison.baselines}): on how many of the baselines the verdict comes out the same.\n"
            if comparison.replicates
            else ".\n"
        ),
    ]
    for recovery in recoveries:

        def cell(p: dict[str, Any], r: str = recovery) -> str:
            if r not in p.get("random_floor", {}):
                return "–"
            key = (p["method"], p["point"], r)
            verdict = comparison.floor[key]
            holds = _holds(comparison.floor_holds(key), comparison)
            return (
                f"{_accuracy(p['recovery'][r])} vs {_accuracy(p['random_floor'][r])} {_mark(verdict)}{holds}"
            )

        lines.append(f"### {RECOVERY_TITLES.get(recovery, recovery)} (`{recovery}`)\n")
        lines.append(_grid_table(floored, grid, cell, methods))
        summaries = []
        for method in methods:
            mine = [v for (m, _, r), v in comparison.floor.items() if m == method and r == recovery]
            count = {o: sum(v.outcome == o for v in mine) for o in ("above", "below", "near chance")}
            summaries.append(
                f"{method}: above its floor at {count['above']} of {len(mine)} points, below at "
                f"{count['below']}"
                + (f", near chance at {count['near chance']}" if count["near chance"] else "")
            )
        lines.append("; ".join(summaries) + ".\n")
    return "\n".join(lines) + "\n"


def claimed_vs_realised_markdown(points: list[dict[str, Any]], grid: Grid) -> str:
    """Per structured method and sweep point: the MACs speed-up the compacted model claims
    against the latency speed-up measured at each batch size."""
    batches = latency_batches(points)
    structured = [
        m
        for m in dict.fromkeys(p["method"] for p in points)
        if any(p["macs_speedup"] > 1 for p in points if p["method"] == m)
    ]
    if not structured or not batches:
        return ""
    onnx = all(f"onnx_latency_speedup_b{b}" in p for p in points for b in batches)
    lines = [
        "## Claimed against realised speed-up\n",
        "MACs speed-up of the compacted model → latency speed-up measured against the dense model "
        f"at batch {', '.join(map(str, batches))} in eager PyTorch (interleaved rounds, the "
        "precision of train.precision)"
        + (", then in onnxruntime on the CPU (its exported ONNX, fp32, as many threads)" if onnx else "")
        + ". Unstructured methods remove no whole channel: their models keep the dense shapes "
        "(1.00×).\n",
    ]

    def cell(p: dict[str, Any]) -> str:
        eager = ", ".join(f"{p[f'latency_speedup_b{b}']:.2f}" for b in batches)
        runtime = ", ".join(f"{p[f'onnx_latency_speedup_b{b}']:.2f}" for b in batches) if onnx else ""
        return f"{p['macs_speedup']:.2f} → {eager}" + (f" / onnx {runtime}" if onnx else "")

    return "\n".join(lines) + "\n" + _grid_table(points, grid, cell, structured)


def best_at_budgets_markdown(comparison: Comparison) -> str:
    """For each cost budget, the methods ranked by their best accuracy among the points that
    reach it, after the ranking recovery, with the first against the second."""
    recovery = comparison.recovery
    lines = [
        f"## Best method at each budget ({RECOVERY_TITLES.get(recovery, recovery)})\n",
        "Per budget, each method's most accurate point that reaches it, best first (at most three). "
        "A cost target of sweep.points is met at the smallest amount that reaches it; a point given "
        "as an amount may overshoot the budget. The verdict compares the first with the second, "
        "paired over the images and corrected with the rest of the family (below). A measured "
        f"speed-up that clears its budget by less than {LATENCY_NOISE}× is marked: between two runs "
        f"of a comparison on one machine, speed-ups moved by up to {LATENCY_NOISE}×, so such a "
        "point may miss the budget in the next run and the ranking change.\n",
    ]
    for cost, (title, _) in COSTS.items():
        for ranking in (b for b in comparison.budgets if b.cost == cost):
            budget = ranking.budget
            entries = ", then ".join(
                f"{p['method']} {_accuracy(p['recovery'][recovery])} (amount {p['amount']:.3g}, {p[cost]:.2f}×"
                + (", within the noise of the budget" if borderline(p, cost, budget) else "")
                + ")"
                for p in ranking.ranked
            )
            verdict = ""
            if ranking.verdict is not None:
                first, second = ranking.ranked[0]["method"], ranking.ranked[1]["method"]
                verdict = ". " + _pair_verdict(first, second, ranking.verdict)
            if comparison.replicates:
                verdict += (
                    f"; the same lead and verdict on {comparison.budget_holds(ranking)} of "
                    f"{comparison.baselines} baselines"
                )
            lines.append(f"- **≥ {budget:g}× {title}**: {entries or 'no point reaches it'}{verdict}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _pair_verdict(first: str, second: str, verdict: Verdict) -> str:
    if verdict.test is None:
        return f"**{first} and {second} are both near chance** (not ranked)"
    relation = "beats" if verdict.outcome == "above" else "is within noise of"
    return f"**{first} {relation} {second}** ({p_value(verdict.test.p)}, Holm {p_value(verdict.p_holm)})"


def save_pareto_png(
    points: list[dict[str, Any]], dense_acc: float | None, path: Path, made: dict[str, Any] | None = None
) -> None:
    """Accuracy against MACs speed-up and against compression, after the ranking recovery; rings
    mark the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = with_latency(points)
    recovery = ranking_recovery(points)
    fig, axes = plt.subplots(1, len(COSTS), figsize=(6 * len(COSTS), 4.5), dpi=120, sharey=True)
    for ax, cost in zip(axes, COSTS, strict=True):
        front = pareto_points(points, recovery, cost)
        for method in dict.fromkeys(p["method"] for p in points):
            mine = sorted((p for p in points if p["method"] == method), key=lambda p: p[cost])
            ax.plot(
                [p[cost] for p in mine],
                [p["recovery"][recovery]["val_acc"] for p in mine],
                marker="o",
                label=method,
            )
        on_front = [p for p in points if (p["method"], p["point"]) in front]
        ax.scatter(
            [p[cost] for p in on_front],
            [p["recovery"][recovery]["val_acc"] for p in on_front],
            s=120,
            facecolors="none",
            edgecolors="black",
            label="Pareto front",
        )
        if dense_acc is not None:
            ax.axhline(dense_acc, color="black", linestyle="--", linewidth=1, label="dense baseline")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"× {COSTS[cost][0]}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy")
    axes[-1].legend(fontsize=8)
    fig.suptitle(f"Accuracy against cost, {RECOVERY_TITLES.get(recovery, recovery)}", fontsize=11)
    caption_figure(fig, made)
    fig.savefig(path, format="png")  # the caller stages `path` (io.staged_outputs)
    plt.close(fig)
