"""The comparison at a glance: sweep and sensitivity results as tables, DVC plot data and PNGs.

Pure formatting: every function takes the metrics the stages wrote and returns text or draws a
figure to the path it is given."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

RECOVERY_TITLES = {
    "none": "one-shot, no recovery",
    "bn_recalibration": "after BatchNorm recalibration",
    "finetune": "after fine-tuning with masks held",
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


def sweep_table_markdown(points: list[dict[str, Any]], grid: Grid, dense_acc: float | None) -> str:
    """One table per recovery (rows: methods; columns: sweep.points; cells: validation accuracy,
    ± its std over seeds where it depends on the seed, and the counted targeted sparsity), then
    a table of what each point costs."""
    recoveries = list(dict.fromkeys(r for p in points for r in p["recovery"]))

    def table(cell: Any) -> str:
        return _grid_table(points, grid, cell)

    seeds = max((len(s["val_acc_by_seed"]) for p in points for s in p["recovery"].values()), default=1)
    dense = f"Dense baseline: {dense_acc:.4f}. " if dense_acc is not None else ""
    repeated = (
        f"Where a result depends on the seed (random methods, plugins, training) it is the mean ± "
        f"std over {seeds} seeds (sweep.seeds); the random methods are the floor a criterion must "
        "beat. "
        if seeds > 1
        else ""
    )
    parts = [
        "# Pruning methods compared\n\n"
        f"Validation accuracy ({points[0]['val_images'] if points else 0} validation images) of each "
        "method at each point of sweep.points, after each recovery (sweep.recovery); in brackets "
        "the fraction of targeted weights that are zero, counted. A point `<r>x` is a cost target "
        "each method meets at its own amount: r× fewer MACs once compacted for channel methods, "
        f"r× compression (params / nonzero) for unstructured ones. {dense}{repeated.rstrip()}\n\n"
    ]
    for recovery in recoveries:
        parts.append(f"## {RECOVERY_TITLES.get(recovery, recovery)} (`{recovery}`)\n\n")
        parts.append(
            table(lambda p, r=recovery: f"{_accuracy(p['recovery'][r])} ({p['targeted_sparsity']:.2f})")
        )
        parts.append("\n")
    parts.append(
        "## What each point costs\n\nThe amount pruned (searched, for a cost target), then compression "
        "(params / nonzero params) and MACs speed-up of the compacted model (dense MACs / compacted "
        "MACs; only structured methods remove whole channels).\n\n"
    )
    parts.append(table(lambda p: f"{p['amount']:.3g}: {p['compression']:.2f}× / {p['macs_speedup']:.2f}×"))
    return "".join(parts)


def _accuracy(result: dict[str, Any]) -> str:
    if len(result.get("val_acc_by_seed", {})) > 1:
        return f"{result['val_acc']:.4f} ± {result['val_acc_std']:.4f}"
    return f"{result['val_acc']:.4f}"


def plot_rows(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def save_sweep_png(points: list[dict[str, Any]], dense_acc: float | None, path: Path) -> None:
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
    fig.tight_layout()
    fig.savefig(path, format="png")  # the caller stages `path` (io.staged_outputs)
    plt.close(fig)


def random_floor_markdown(points: list[dict[str, Any]], grid: Grid) -> str:
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
        "same MACs, same parameter count. Verdicts by the two-sided z-test of the next section "
        f"(|z| > {Z_95}): **above** or **below** the floor, else ≈ (within noise).\n",
    ]
    for recovery in recoveries:

        def floor_of(p: dict[str, Any]) -> dict[str, Any]:
            return {"recovery": p["random_floor"], "val_images": p["val_images"]}

        def cell(p: dict[str, Any], r: str = recovery) -> str:
            if r not in p.get("random_floor", {}):
                return "–"
            z = z_score(p, floor_of(p), r)
            mark = "**above**" if z > Z_95 else "**below**" if z < -Z_95 else "≈"
            return f"{_accuracy(p['recovery'][r])} vs {_accuracy(p['random_floor'][r])} {mark}"

        lines.append(f"### {RECOVERY_TITLES.get(recovery, recovery)} (`{recovery}`)\n")
        lines.append(_grid_table(floored, grid, cell, methods))
        verdicts = []
        for method in methods:
            mine = [p for p in floored if p["method"] == method and recovery in p["random_floor"]]
            zs = [z_score(p, floor_of(p), recovery) for p in mine]
            above, below = sum(z > Z_95 for z in zs), sum(z < -Z_95 for z in zs)
            verdicts.append(f"{method}: above its floor at {above} of {len(zs)} points, below at {below}")
        lines.append("; ".join(verdicts) + ".\n")
    return "\n".join(lines) + "\n"


SPEEDUP_BUDGETS = (1.5, 2.0, 3.0, 4.0)
COMPRESSION_BUDGETS = (2.0, 4.0, 8.0)
COSTS = {
    "macs_speedup": ("fewer MACs once compacted", SPEEDUP_BUDGETS),
    "latency_speedup": ("faster, measured at the largest latency batch", SPEEDUP_BUDGETS),
    "compression": ("compression (params / nonzero)", COMPRESSION_BUDGETS),
}


LATENCY_NOISE = 0.15
"""How far a sweep's measured speed-up moved between two runs of the same comparison on one
machine (40 speed-ups: std 0.046–0.047, at most 0.13–0.15; README): a point that clears a
latency budget by less may miss it in the next run."""


def latency_batches(points: list[dict[str, Any]]) -> list[int]:
    keys = {k for p in points for k in p if k.startswith("latency_speedup_b")}
    return sorted(int(k.removeprefix("latency_speedup_b")) for k in keys)


def with_latency(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points with `latency_speedup`: the measured speed-up at the largest batch size."""
    largest = max(latency_batches(points), default=None)
    return [{**p, "latency_speedup": p[f"latency_speedup_b{largest}"] if largest else 1.0} for p in points]


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
    lines = [
        "## Claimed against realised speed-up\n",
        "MACs speed-up of the compacted model → latency speed-up measured against the dense model "
        f"at batch {', '.join(map(str, batches))} (CPU, interleaved rounds, the precision of "
        "train.precision). Unstructured methods remove no whole channel: their models keep the "
        "dense shapes (1.00×).\n",
    ]

    def cell(p: dict[str, Any]) -> str:
        return f"{p['macs_speedup']:.2f} → " + ", ".join(f"{p[f'latency_speedup_b{b}']:.2f}" for b in batches)

    return "\n".join(lines) + "\n" + _grid_table(points, grid, cell, structured)


def best_at_budgets_markdown(points: list[dict[str, Any]]) -> str:
    """For each cost budget, the methods ranked by their best accuracy among the points that
    reach it, after the most thorough recovery the sweep ran (the last in sweep.recovery)."""
    points = with_latency(points)
    recovery = list(dict.fromkeys(r for p in points for r in p["recovery"]))[-1]
    lines = [
        f"## Best method at each budget ({RECOVERY_TITLES.get(recovery, recovery)})\n",
        "Per budget, each method's most accurate point that reaches it, best first (at most three). "
        "A cost target of sweep.points is met at the smallest amount that reaches it; a point given "
        "as an amount may overshoot the budget. The verdict "
        "says the first beats the second only when a two-sided z-test on their difference is "
        f"significant at 95 % (z > {Z_95}), with each accuracy's binomial error on the "
        "validation images plus, where it was repeated, the standard error of its mean over seeds "
        "(unpaired, hence conservative: both are scored on the same images). A measured "
        f"speed-up that clears its budget by less than {LATENCY_NOISE}× is marked: between two runs "
        f"of a comparison on one machine, speed-ups moved by up to {LATENCY_NOISE}×, so such a "
        "point may miss the budget in the next run and the ranking change.\n",
    ]
    for cost, (label, budgets) in COSTS.items():
        for budget in budgets:
            best: dict[str, dict[str, Any]] = {}
            for p in points:
                acc = p["recovery"][recovery]["val_acc"]
                if p[cost] >= budget and acc > best.get(p["method"], {}).get("recovery", {}).get(
                    recovery, {}
                ).get("val_acc", -1.0):
                    best[p["method"]] = p
            ranked = sorted(best.values(), key=lambda p: -p["recovery"][recovery]["val_acc"])[:3]
            entries = ", then ".join(
                f"{p['method']} {_accuracy(p['recovery'][recovery])} (amount {p['amount']:.3g}, {p[cost]:.2f}×"
                + (", within the noise of the budget" if _borderline(p, cost, budget) else "")
                + ")"
                for p in ranked
            )
            verdict = ""
            if len(ranked) > 1:
                z = z_score(ranked[0], ranked[1], recovery)
                relation = "beats" if z > Z_95 else "is within noise of"
                verdict = f". **{ranked[0]['method']} {relation} {ranked[1]['method']}** (z = {z:.1f})"
            lines.append(f"- **≥ {budget:g}× {label}**: {entries or 'no point reaches it'}{verdict}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _borderline(point: dict[str, Any], cost: str, budget: float) -> bool:
    return cost == "latency_speedup" and point[cost] - budget < LATENCY_NOISE


Z_95 = 1.96


def z_score(a: dict[str, Any], b: dict[str, Any], recovery: str) -> float:
    """(acc a − acc b) / standard error of the difference, each accuracy's variance being its
    binomial sampling variance on the validation images plus its seed spread, both over the
    number of seeds averaged."""

    def variance(point: dict[str, Any]) -> float:
        result = point["recovery"][recovery]
        acc, seeds = result["val_acc"], len(result["val_acc_by_seed"])
        return (acc * (1 - acc) / point["val_images"] + result["val_acc_std"] ** 2) / seeds

    difference = a["recovery"][recovery]["val_acc"] - b["recovery"][recovery]["val_acc"]
    error = math.sqrt(variance(a) + variance(b))
    return difference / error if error > 0 else math.inf


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


def save_pareto_png(points: list[dict[str, Any]], dense_acc: float | None, path: Path) -> None:
    """Accuracy against MACs speed-up and against compression, after the last recovery; rings
    mark the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = with_latency(points)
    recovery = list(dict.fromkeys(r for p in points for r in p["recovery"]))[-1]
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
    fig.tight_layout()
    fig.savefig(path, format="png")  # the caller stages `path` (io.staged_outputs)
    plt.close(fig)


def sensitivity_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Per-layer sensitivity\n",
        f"Validation accuracy (first {summary['val_images']} validation images) when one layer — or one "
        f"group of convs coupled by residual additions — is pruned alone. Dense: {summary['val_acc_dense']:.4f}.\n",
    ]
    for method, result in summary["methods"].items():
        curves = result["curves"]
        amounts = list(next(iter(curves.values())))
        lines += [
            f"## {method}\n",
            "| layer | " + " | ".join(amounts) + " |",
            "|---|" + "---|" * len(amounts),
        ]
        lines += [
            f"| {unit} | " + " | ".join(f"{c[a]:.4f}" for a in amounts) + " |" for unit, c in curves.items()
        ]
        d = result["derived"]
        verdict = "beats" if d["val_acc"] > d["uniform_val_acc"] else "does not beat"
        lines += [
            "",
            f"Derived amounts (loss ≤ {summary['budget']:.3f} per layer): "
            + ", ".join(f"{k} {v:g}" for k, v in d["per_layer"].items()),
            "",
            f"At the same sparsity of these layers ({d['sparsity']:.3f} derived, {d['uniform_sparsity']:.3f} uniform), "
            f"the derived amounts reach {d['val_acc']:.4f} and uniform pruning {d['uniform_val_acc']:.4f}: "
            f"derived {verdict} uniform.\n",
        ]
    return "\n".join(lines) + "\n"


def save_sensitivity_png(summary: dict[str, Any], path: Path) -> None:
    """One heat map per method: accuracy loss per layer (rows) and amount (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = summary["methods"]
    height = max(len(r["curves"]) for r in methods.values()) * 0.35 + 1.5
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), height), dpi=120, squeeze=False)
    for ax, (method, result) in zip(axes[0], methods.items(), strict=True):
        units = list(result["curves"])
        amounts = list(next(iter(result["curves"].values())))
        loss = (
            np.array([[summary["val_acc_dense"] - result["curves"][u][a] for a in amounts] for u in units])
            * 100
        )
        image = ax.imshow(loss, cmap="Reds", vmin=0, vmax=max(5.0, float(loss.max())), aspect="auto")
        ax.set_xticks(range(len(amounts)), amounts)
        ax.set_yticks(range(len(units)), [u if len(u) < 28 else u[:25] + "…" for u in units], fontsize=7)
        for i in range(len(units)):
            for j in range(len(amounts)):
                ax.text(j, i, f"{loss[i, j]:.1f}", ha="center", va="center", fontsize=7)
        ax.set_xlabel("amount pruned")
        ax.set_title(f"{method}: accuracy loss (points)", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, format="png")  # the caller stages `path` (io.staged_outputs)
    plt.close(fig)
