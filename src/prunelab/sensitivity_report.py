"""The per-layer sensitivity at a glance: a markdown table and a heat map (rendering only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab.captions import caption_figure, provenance_line


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
    lines.append(provenance_line(summary.get("provenance")) + "\n")
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
    caption_figure(fig, summary.get("provenance"))
    fig.savefig(path, format="png")  # the caller stages `path` (io.staged_outputs)
    plt.close(fig)


def layer_curve_rows(curves: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per unit and amount, the shape of DVC's by-layer plot."""
    return [
        {"layer": unit, "amount": float(a), "val_acc": acc}
        for unit, c in curves.items()
        for a, acc in c.items()
    ]
