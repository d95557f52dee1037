from __future__ import annotations

import copy
import itertools
import shlex
from pathlib import Path

import pytest
import yaml

from prunelab.params import CIFAR10_URL, Params, ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_equal_schema_defaults() -> None:
    """params.yaml must be complete (DVC tracks its keys) and match the documented defaults."""
    shipped = load_params(ROOT / "params.yaml")
    assert shipped == Params()
    assert shipped.data.source == CIFAR10_URL
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert raw.keys() == Params.model_fields.keys()
    for section, info in Params.model_fields.items():  # dvc.yaml may list any key: all are written
        assert raw[section].keys() == info.annotation.model_fields.keys(), f"params.yaml {section}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"prune": {"amout": 0.5}}, r"unknown key 'prune.amout': did you mean 'amount'\?"),
        ({"trian": {}}, r"unknown key 'trian': did you mean 'train'\?"),
        ({"prune": {"amount": 1.5}}, r"prune.amount = 1.5: .*\[0, 1\]"),
        ({"prune": {"amount": -3}}, r"prune.amount = -3: a count must be ≥ 0"),
        (
            {"train": {"precision": "fp16"}},
            r"train.precision = 'fp16': Input should be 'auto', 'fp32' or 'bf16'",
        ),
        ({"train": {"epochs": -1}}, r"train.epochs = -1: Input should be greater than or equal to 0$"),
        ({"train": {"epochs": "ten"}}, r"train.epochs = 'ten': Input should be 'auto'$"),
        ({"train": {"epochs": "5"}}, r"train.epochs = '5': .* write it without quotes$"),
        ({"prune": {"per_layer": "all"}}, r"prune.per_layer = 'all': Input should be 'from_sensitivity'$"),
        ({"prune": {"per_layer": {"conv1": 2.0}}}, r"prune.per_layer.conv1 = 2.0"),
    ],
)
def test_bad_values_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_params(raw)


def test_yaml_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 3\n  lr: [0.1\n")
    with pytest.raises(ParamsError, match=r"params.yaml:\d+:\d+: YAML syntax error"):
        load_params(path)


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="pass --params"):
        load_params(tmp_path / "nope.yaml")


def test_partial_params_get_defaults() -> None:
    params = parse_params({"prune": {"amount": 3}})
    assert params.prune.amount == 3 and isinstance(params.prune.amount, int)
    assert params.prune.method == "ln_structured"


def test_params_reference_is_generated_from_the_schema_and_current() -> None:
    from prunelab.paramdoc import reference_markdown

    reference = reference_markdown()
    for section, info in Params.model_fields.items():
        for key, field in info.annotation.model_fields.items():
            assert f"`{section}.{key}`" in reference
            assert field.description, f"{section}.{key} has no docstring in params.py"
    assert (ROOT / "docs/params.md").read_text() == reference, (
        "docs/params.md is out of date: python -m prunelab.paramdoc > docs/params.md"
    )


def test_readme_exp_run_overrides_are_valid_params() -> None:
    """Every `dvc exp run -S key=value` the README and docs/ show must name real keys with valid values,
    applied the way DVC applies them: YAML values at dotted paths into params.yaml, all of one
    command's overrides together, and `--queue` grids (`a,b`) as their product."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(path.read_text() for path in docs).replace("\\\n", " ")
    commands = [
        shlex.split(line.split("#")[0])
        for line in text.splitlines()
        if line.lstrip().startswith("dvc exp run")
    ]
    assert commands
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    for words in commands:
        settings = [words[i + 1].partition("=") for i, w in enumerate(words[:-1]) if w == "-S"]
        grids = [value.split(",") if "--queue" in words else [value] for _, _, value in settings]
        for values in itertools.product(*grids):
            raw = copy.deepcopy(shipped)
            for (path, _, _), value in zip(settings, values, strict=True):
                *parents, leaf = path.split(".")
                node = raw
                for key in [*parents, leaf]:
                    assert key in node, f"README: `{' '.join(words)}`: no param {path}"
                    parent, node = node, node[key]
                parent[leaf] = yaml.safe_load(value)
            parse_params(raw, source=" ".join(words))


def test_one_shot_inherits_exactly_the_documented_keys() -> None:
    """sweep and sensitivity list these prune.* keys in dvc.yaml: the constant must stay true."""
    from prunelab.params import ONE_SHOT_INHERITED, PruneParams

    base = PruneParams(round_to=8, seed=5, n=2, dim=1, criterion="random", scope="global", options={"a": 1})
    base = base.model_copy(update={"parameters": ["weight", "bias"]})
    derived = base.one_shot("l1_unstructured", 0.3, ["conv2"])
    kept = {name for name in PruneParams.model_fields if getattr(derived, name) == getattr(base, name)}
    assert kept - {"exclude", "per_layer", "steps", "finetune_between", "schedule", "macs_reduction"} == set(
        ONE_SHOT_INHERITED
    )
