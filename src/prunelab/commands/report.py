"""report: gather the sweep into a markdown table, DVC plot data and a PNG."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from prunelab.captions import provenance_line
from prunelab.commands import ParamsOption, console, done, single_command_app
from prunelab.comparison.verdicts import compare_sweep, load_point_scores, power_rows
from prunelab.errors import UserError
from prunelab.io import read_json, staged_outputs
from prunelab.params import load_params
from prunelab.report import (
    best_at_budgets_markdown,
    claimed_vs_realised_markdown,
    family_markdown,
    power_markdown,
    proxy_agreement_markdown,
    random_floor_markdown,
    save_pareto_png,
    save_sweep_png,
    sweep_plot_rows,
    sweep_table_markdown,
    title_markdown,
)


def point_path(folder: Path, method: str, point: float | int | str) -> Path:
    """Where a sweep point's metrics live; dvc.yaml's matrix writes the same name."""
    return folder / f"{method}-{point}.json"


def main(
    params: ParamsOption = Path("params.yaml"),
    sweep: Annotated[Path, typer.Option(help="folder of sweep point metrics")] = Path("metrics/sweep"),
    table: Annotated[Path, typer.Option(help="markdown table to write")] = Path("report/sweep.md"),
    plot: Annotated[Path, typer.Option(help="DVC plot data to write")] = Path("plots/sweep.json"),
    png: Annotated[Path, typer.Option(help="PNG of the plot to write")] = Path("report/sweep.png"),
    verdicts: Annotated[Path, typer.Option(help="every verdict of the report, as JSON")] = Path(
        "report/verdicts.json"
    ),
    pareto: Annotated[Path, typer.Option(help="PNG of accuracy against cost to write")] = Path(
        "report/pareto.png"
    ),
) -> None:
    """Gather sweep.methods × sweep.points: the best method at each cost budget after the ranking
    recovery (fine-tuning, where the sweep ran it), how far the cheap proxies rank like it,
    tables per recovery, each method against its random floor, an accuracy-vs-sparsity plot and
    accuracy-vs-cost plots."""
    cfg = load_params(params)
    points, scores, dense = _load_sweep(sweep, cfg.sweep.methods, cfg.sweep.points, "")
    replicates = {}
    for seed in cfg.sweep.replicates:
        found = _load_sweep(
            sweep / "replicates" / str(seed), cfg.sweep.methods, cfg.sweep.points, "_replicate"
        )
        replicates[seed] = compare_sweep(found[0], found[1])
    comparison = compare_sweep(points, scores, replicates)
    power = power_rows(comparison, dense["val_images"], cfg.data.val_size, len(cfg.sweep.seeds))
    markdown = "\n".join(
        [
            title_markdown(points, comparison),
            provenance_line(dense.get("provenance")) + "\n",
            best_at_budgets_markdown(comparison),
            proxy_agreement_markdown(comparison),
            family_markdown(comparison),
            power_markdown(
                power, comparison, min(cfg.sweep.trained_seeds, len(cfg.sweep.seeds)), len(cfg.sweep.seeds)
            ),
            sweep_table_markdown(points, cfg.sweep.points, dense["val_acc"], comparison.recovery),
            random_floor_markdown(points, cfg.sweep.points, comparison),
            claimed_vs_realised_markdown(points, cfg.sweep.points),
        ]
    )
    with staged_outputs() as outputs:
        outputs.write_text(table, markdown)
        outputs.write_json(plot, sweep_plot_rows(points))
        outputs.write_json(
            verdicts,
            {
                "provenance": dense.get("provenance"),
                **comparison.as_dict(),
                "power": [asdict(row) for row in power],
            },
        )
        save_sweep_png(points, dense["val_acc"], outputs.path(png), dense.get("provenance"))
        save_pareto_png(points, dense["val_acc"], outputs.path(pareto), dense.get("provenance"))
    console.print(markdown, markup=False)  # as text: rendered tables would cut cells
    done("report", table, plot, png, pareto, verdicts)


def _load_sweep(
    folder: Path, methods: list[str], grid: list[float | int | str], stage: str
) -> tuple[list[dict[str, Any]], dict[tuple[str, Any], Any], dict[str, Any]]:
    """One baseline's sweep points, their per-image scores and its dense reference, from
    `folder`; a missing file names the stage that writes it (`stage`: "" or "_replicate")."""
    points, scores = [], {}
    for method in methods:
        for point in grid:
            path = point_path(folder, method, point)
            if not path.is_file():
                raise UserError(f"{path}: sweep point missing; run `dvc repro` (stage sweep{stage}@…) first")
            points.append(read_json(path))
            scores[(method, point)] = load_point_scores(path)
    dense_path = folder / "dense.json"
    if not dense_path.is_file():
        raise UserError(
            f"{dense_path}: the dense reference is missing; run `dvc repro` (stage dense{stage}) first"
        )
    return points, scores, read_json(dense_path)


app = single_command_app(main)
