"""The comparison: which method, at what cost, after which recovery, and is the difference real.

- `sweep`: score each (method, cost) point of params.yaml's sweep, with its recoveries.
- `recovery`: BatchNorm recalibration, fine-tuning (in compacted form), LR rewinding, distillation.
- `controls`: what a method must beat: a random mask of the same shape, and training from scratch.
- `sensitivity`: per-layer sensitivity curves and the amounts derived from them.
- `verdicts`: the statistics: paired tests, Holm's correction, rankings, Pareto fronts, τ.

`report` and `figures` render what these decide.
"""
