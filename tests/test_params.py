from __future__ import annotations

import copy
import itertools
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from prunelab.params import CIFAR10_URL, Params, ParamsError, load_params, parse_params
from prunelab.profiles import compose, composed_text

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_equal_schema_defaults() -> None:
    """params.yaml must be complete (DVC tracks its keys) and match the documented defaults."""
    shipped = load_params(ROOT / "params.yaml")
    assert shipped == Params()
    assert shipped.data.source == CIFAR10_URL
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert raw.keys() == Params.model_fields.keys()
    for section, info in Params.model_fields.items():  # dvc.yaml may list any key: all are written
        if isinstance(raw[section], dict):
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
        fields = getattr(info.annotation, "model_fields", None)
        if fields is None:  # a top-level key (profile)
            assert f"`{section}`" in reference and info.description, section
            continue
        for key, field in fields.items():
            assert f"`{section}.{key}`" in reference
            assert field.description, f"{section}.{key} has no docstring in params.py"
    assert (ROOT / "docs/params.md").read_text() == reference, (
        "docs/params.md is out of date: python -m prunelab.paramdoc > docs/params.md"
    )


def test_readme_exp_run_overrides_are_valid_params() -> None:
    """Every `dvc exp run -S key=value` the README and docs/ show must compose (as DVC composes
    params.yaml with Hydra: conf/config.yaml, the profile, the overrides) into valid params, with
    every key a real one, and `--queue` grids (`a,b`) as their product."""
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
        for path, _, _ in settings:
            node = shipped
            for key in path.split("."):
                assert isinstance(node, dict) and key in node, f"`{' '.join(words)}`: no param {path}"
                node = node[key]
        grids = [value.split(",") if "--queue" in words else [value] for _, _, value in settings]
        for values in itertools.product(*grids):
            overrides = [f"{path}={value}" for (path, _, _), value in zip(settings, values, strict=True)]
            parse_params(compose(overrides, ROOT / "conf"), source=" ".join(words))


# The profiles as they were run before they had names (docs/history/seed-profile.md and
# docs/history/recipe.md): 10 and 5 flags on top of the shipped params.
SEED_FLAGS = [
    "model.arch=tutorial_cnn",
    "model.kwargs={widths: [64, 64, 128]}",
    "train.lr=0.05",
    "train.momentum=0.9",
    "train.epochs=25",
    "train.weight_decay=0.005",
    "train.whiten=false",
    "train.seed=3",
    "finetune.lr=0.005",
    "evaluate.tta=none",
]
LONG_FLAGS = [
    "data.val_size=0",
    "model.arch=airbench",
    "model.kwargs.widths=[64, 256, 256]",
    "train.epochs=16",
    "train.whiten=frozen",
]

# The shipping setting as docs/results/ship-4x.md's first runs gave it, in 7 flags.
SHIP_FLAGS = [
    "prune.method=group_taylor",
    "prune.scope=global",
    "prune.targets=[Conv2d]",
    "prune.macs_reduction=0.75",
    "prune.round_to=8",
    "finetune.epochs=6",
    "finetune.lr=0.1",
]

# The full comparison: three baselines, three seeds fine-tuned, the longer budget.
FULL_FLAGS = [
    "sweep.replicates=[1, 2]",
    "sweep.trained_seeds=3",
    "sweep.finetune_epochs=1.0",
    "sweep.points=[2x, 4x]",
    "sweep.random_floor=false",
]


def flags_on(params: dict, flags: list[str]) -> dict:
    """`dvc exp run -S …` without Hydra: each value (YAML) set at its dotted path."""
    params = copy.deepcopy(params)
    for flag in flags:
        path, _, value = flag.partition("=")
        *parents, leaf = path.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = yaml.safe_load(value)
    return params


@pytest.mark.parametrize(
    ("profile", "flags", "extra"),
    [
        ("seed", SEED_FLAGS, ["train.seed=3"]),
        ("long", LONG_FLAGS, []),
        ("ship", SHIP_FLAGS, []),
        ("full", FULL_FLAGS, []),
    ],
)
def test_a_profile_is_its_flags_whatever_the_workspace_held(
    tmp_path: Path, profile: str, flags: list[str], extra: list[str]
) -> None:
    """`-S profile=NAME` gives the params its flags gave on the shipped params.yaml, and DVC's
    composition reads conf/, never the workspace's params.yaml: a workspace left by the daily
    flow's `-S prune.amount=0.6` (which once compounded into the seed profile) changes nothing."""
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    expected = {**flags_on(shipped, flags), "profile": profile}
    project = tmp_path / "project"
    shutil.copytree(ROOT / "conf", project / "conf")
    (project / "params.yaml").write_text(yaml.safe_dump(flags_on(shipped, ["prune.amount=0.6"])))
    assert compose([f"profile={profile}", *extra], project / "conf") == expected
    parse_params(expected)


def test_params_yaml_is_the_composition_of_conf() -> None:
    """DVC rewrites params.yaml from conf/ on every `dvc exp run`: the committed one must be that
    text exactly, or each experiment would start from other params than `dvc repro` runs."""
    assert (ROOT / "params.yaml").read_text() == composed_text([], ROOT / "conf"), (
        "params.yaml differs from conf/: edit conf/config.yaml, then run "
        "python -c 'from prunelab.profiles import composed_text; "
        'open("params.yaml", "w").write(composed_text([]))\''
    )


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
