"""The structure that keeps results trustworthy.

- dvc.yaml's deps follow the imports: every src module in a stage command's import closure
  (imports inside functions included) is a dep, and no other src module is.
- The library is layered: each module imports only from lower layers, at module level, so the
  import graph has no cycle, lazy imports included; the schema imports nothing of prunelab.
- Every params key a stage reads is listed under its `params:` (recorded while the stages run
  on generated data, settings derived from the user's ones included).
"""

from __future__ import annotations

import ast
import importlib
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import prunelab.params
from prunelab.params import Params, Section
from tests.conftest import ROOT, write_params

SRC = ROOT / "src"

# Files a stage imports that cannot change its outputs (also said in dvc.yaml's header).
NOT_DEPS = {
    "src/prunelab/__init__.py": "quiets a torch import warning",
    "src/prunelab/errors.py": "the exception type of user errors",
    "src/prunelab/memory.py": "where freed memory goes: allocation, not arithmetic (test_memory.py)",
    "src/prunelab/commands/__init__.py": "error printing, console width, Typer, thread-share and memory wiring",
    "src/prunelab/comparison/__init__.py": "the package's docstring, nothing else",
}

# The library's layers, lowest first; a module may import only from layers below its own.
LAYERS = [
    {"errors", "params", "profiles", "comparison"},
    {"gpu_claims"},
    {"plugins", "io", "checkpoints", "data", "device", "amounts", "threads", "memory", "per_image"},
    {"fetch", "synthetic", "models", "predict", "provenance"},
    {"coupling", "measure", "train"},
    {"checkpoints.loading", "criteria", "compact", "dvclive_logging"},
    {"methods", "onnx_runtime", "comparison.recovery"},
    {"pruning"},
    {"cost_search"},
    {"pruning_run", "comparison.controls", "comparison.sensitivity"},
    {"comparison.sweep", "comparison.verdicts", "captions"},
    {"report", "sensitivity_report", "diff", "paramdoc", "studies", "examples", "examples.fpgm"},
    {"figures"},
    {"commands"},
    {f"commands.{p.stem}" for p in (SRC / "prunelab/commands").glob("*.py") if p.stem != "__init__"},
    {"cli"},
]


def module_file(name: str) -> Path | None:
    base = SRC / name.replace(".", "/")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def imports_of(path: Path) -> dict[str, bool]:
    """{prunelab module: imported at module level} for one file, imports in functions included;
    importing a.b.c runs a/__init__ and a/b/__init__ too."""
    found: dict[str, bool] = {}
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}

    def add(name: str, node: ast.stmt) -> None:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            found[".".join(parts[:i])] = found.get(".".join(parts[:i]), False) or id(node) in top_level

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; write `from prunelab.… import …`"
            if node.module and node.module.split(".")[0] == "prunelab":
                add(node.module, node)
                for alias in node.names:
                    if module_file(f"{node.module}.{alias.name}"):
                        add(f"{node.module}.{alias.name}", node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "prunelab":
                    add(alias.name, node)
    return found


def closure(path: Path) -> set[str]:
    """Repo-relative paths of every prunelab file that importing `path` runs."""
    todo, seen = [path], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += [module_file(name) for name in imports_of(current)]
    return {str(p.relative_to(ROOT)) for p in seen if p.is_relative_to(SRC)}


PIPELINES = ("dvc.yaml", "comparison/dvc.yaml")
"""Every dvc.yaml of the project; the comparison's stages run from the root too (wdir ..)."""


def stages() -> dict[str, dict]:
    """Every stage, each after the stages whose outputs it reads (the files' order otherwise)."""
    found: dict[str, dict] = {}
    for pipeline in PIPELINES:
        found.update(yaml.safe_load((ROOT / pipeline).read_text())["stages"])

    def paths(entries: list) -> list[str]:
        return [e if isinstance(e, str) else next(iter(e)) for e in entries]

    def overlap(dep: str, out: str) -> bool:  # a file inside a folder, or the same path
        a, b = dep.rstrip("/"), out.split("${")[0].rstrip("/")
        return a == b or a.startswith(b + "/") or b.startswith(a + "/")

    ordered: dict[str, dict] = {}
    while len(ordered) < len(found):
        ready = next(
            name
            for name, stage in found.items()
            if name not in ordered
            and not any(
                overlap(dep, out)
                for other, upstream in found.items()
                if other not in ordered and other != name
                for out in paths(upstream.get("outs", []) + upstream.get("metrics", []))
                for dep in paths(stage.get("deps", []))
            )
        )
        ordered[ready] = found[ready]
    return ordered


def script_of(stage: dict) -> str:
    words = shlex.split(stage["cmd"])
    return next(w for w in words if w.startswith("stages/"))


@pytest.mark.parametrize("name", list(stages()))
def test_stage_deps_are_the_import_closure_of_its_command(name: str) -> None:
    stage = stages()[name]
    script = script_of(stage)
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
    expected = sorted(closure(ROOT / script) - set(NOT_DEPS))
    listed = sorted(d for d in deps if d.startswith("src/"))
    assert script in deps, f"dvc.yaml stage {name}: add `- {script}` to deps"
    missing, extra = sorted(set(expected) - set(listed)), sorted(set(listed) - set(expected))
    assert not missing and not extra, (
        f"dvc.yaml stage {name}: deps miss {missing} and list {extra}, which its command does not "
        f"import; its src deps are:\n" + "\n".join(f"      - {d}" for d in expected)
    )


def test_not_deps_are_named_in_dvc_yaml() -> None:
    header = (ROOT / "dvc.yaml").read_text().split("stages:")[0]
    for path in NOT_DEPS:
        assert path.removeprefix("src/prunelab/") in header, (
            f"dvc.yaml's header must say why {path} is no dep"
        )


def test_the_comparison_package_init_holds_only_its_docstring() -> None:
    """Why comparison/__init__.py is no dep: code added there would change outputs unseen."""
    body = ast.parse((SRC / "prunelab/comparison/__init__.py").read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def library_modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(SRC / "prunelab").with_suffix("").parts).removesuffix(".__init__"): p
        for p in (SRC / "prunelab").rglob("*.py")
        if p.name != "__init__.py" or p.parent != SRC / "prunelab"
    }


def test_library_imports_only_downward_at_module_level() -> None:
    layer_of = {module: i for i, layer in enumerate(LAYERS) for module in layer}
    modules = library_modules()
    unplaced = sorted(set(modules) - set(layer_of))
    assert not unplaced, f"put {unplaced} into a layer of tests/test_structure.py's LAYERS"
    problems = []
    for module, path in modules.items():
        for name, at_top in imports_of(path).items():
            target = name.removeprefix("prunelab.")
            if name == "prunelab" or target == module:
                continue
            if not at_top:
                problems.append(f"{module} imports {target} inside a function: import it at the top")
            if layer_of[target] >= layer_of[module]:
                problems.append(
                    f"{module} (layer {layer_of[module]}) imports {target} (layer {layer_of[target]})"
                )
    assert not problems, "\n".join(problems)


def test_schema_imports_nothing_of_prunelab() -> None:
    assert set(imports_of(SRC / "prunelab/params.py")) == set()


def test_the_import_graph_has_no_cycle() -> None:
    """Implied by the layers; checked on its own so that a cycle is named as one."""
    modules = library_modules()
    graph = {
        m: {n.removeprefix("prunelab.") for n in imports_of(p) if n != "prunelab"} - {m}
        for m, p in modules.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " → ".join([*trail[trail.index(node) :], node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])
        state[node] = 2

    for module in graph:
        visit(module, [])


# ---------------------------------------------------------------------------------------------
# Params keys read by each stage


class ParamsReads:
    """Which params keys are read, following settings derived by model_copy: a key a copy
    overrides is the deriving code's choice, one it inherits is still the user's."""

    def __init__(self) -> None:
        self.origin: dict[int, tuple[str, frozenset[str]]] = {}
        self.alive: list[Section] = []  # keeps ids unique while recording
        self.keys: set[str] = set()

    def track(self, section: Section, name: str, overridden: frozenset[str] = frozenset()) -> None:
        self.origin[id(section)] = (name, overridden)
        self.alive.append(section)

    def record(self, section: Section, fields: set[str]) -> None:
        if (origin := self.origin.get(id(section))) is not None:
            name, overridden = origin
            self.keys |= {f"{name}.{f}" for f in fields - overridden}


@pytest.fixture
def params_reads(monkeypatch: pytest.MonkeyPatch) -> ParamsReads:
    reads = ParamsReads()
    parse, copy, dump = prunelab.params.parse_params, Section.model_copy, Section.model_dump

    def tracked_parse(raw: dict, source: str = "params") -> Params:
        params = parse(raw, source)
        for name in Params.model_fields:
            reads.track(object.__getattribute__(params, name), name)
        return params

    def tracked_get(self: Section, name: str) -> object:
        value = object.__getattribute__(self, name)
        if name in type(self).model_fields:
            reads.record(self, {name})
        return value

    def tracked_copy(self: Section, *, update: dict | None = None, deep: bool = False) -> Section:
        result = copy(self, update=update, deep=deep)
        if (origin := reads.origin.get(id(self))) is not None:
            reads.track(result, origin[0], origin[1] | set(update or {}))
        return result

    def tracked_dump(self: Section, **kwargs: object) -> dict:
        fields = set(type(self).model_fields) - set(kwargs.get("exclude") or ())  # type: ignore[arg-type]
        reads.record(self, fields)
        return dump(self, **kwargs)

    monkeypatch.setattr(prunelab.params, "parse_params", tracked_parse)
    monkeypatch.setattr(Section, "__getattribute__", tracked_get)
    monkeypatch.setattr(Section, "model_copy", tracked_copy)
    monkeypatch.setattr(Section, "model_dump", tracked_dump)
    return reads


def _covered(key: str, listed: list[str]) -> bool:
    return any(key == entry or key.startswith(f"{entry}.") for entry in listed)


def test_every_stage_lists_the_params_it_reads(
    params_reads: ParamsReads,
    synthetic_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs every stage's command from dvc.yaml in-process, on generated data, with settings
    that reach every reader of prune.*: a structured and a global method, and a plugin (which
    reads prune.options); amounts and cost targets; every recovery of the sweep and its floor."""
    plugin = "prunelab.examples.fpgm:GeometricMedianStructured"
    sweep = {
        "methods": ["ln_structured", "global_unstructured", "group_lamp", plugin],
        "points": [0.5, "2x"],
        "seeds": [0, 1],
        "recovery": ["none", "bn_recalibration", "finetune", "distill", "lr_rewind", "scratch"],
        "recalibration_images": 64,
        "replicates": [1],
    }
    write_params(
        tmp_path / "params.yaml",
        {
            "data": {"source": str(synthetic_env), "val_size": 100},
            "sweep": sweep,
            "finetune": {"epochs": 1, "kd_weight": 0.5},
            "sensitivity": {"amounts": [0.5], "val_images": 50},
        },
    )
    monkeypatch.chdir(tmp_path)
    problems = []
    for name, stage in stages().items():
        runs = [stage["cmd"]]
        if "matrix" in stage:
            matrix = {"method": sweep["methods"], "point": sweep["points"], "seed": sweep["replicates"]}
            for key in stage["matrix"]:
                runs = [cmd.replace(f"${{item.{key}}}", str(value)) for cmd in runs for value in matrix[key]]
        command = Path(script_of(stage)).stem
        app = importlib.import_module(f"prunelab.commands.{command}").app
        params_reads.keys.clear()
        for cmd in runs:
            args = shlex.split(cmd)
            args = args[args.index(script_of(stage)) + 1 :]
            result = CliRunner().invoke(app, args, catch_exceptions=False)
            assert result.exit_code == 0, f"{name}: {result.output}"
        listed = [p for p in stage.get("params", []) if isinstance(p, str)]
        unlisted = sorted(k for k in params_reads.keys if not _covered(k, listed))
        if unlisted:
            problems.append(f"stage {name} reads {unlisted}; add them to its params in dvc.yaml")
        assert params_reads.keys, f"stage {name}: no params read recorded; is the recorder working?"
    assert not problems, "\n".join(problems)


def stage_instances(stage: dict) -> int:
    """How many stages DVC runs for one entry of dvc.yaml: a matrix's every combination."""
    if "matrix" not in stage:
        return 1
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    count = 1
    for value in stage["matrix"].values():  # ${sweep.methods}: a list in params.yaml
        section, key = value.strip("${}").split(".")
        count *= len(params[section][key])
    return count


def reruns_rows() -> tuple[int, list[tuple[int, str, list[str]]]]:
    """(stage instances in all, [(instances an edit reruns, module file, its stages)]), most
    first: the dependants of each src module in dvc.yaml's deps."""
    all_stages = stages()
    total = sum(stage_instances(s) for s in all_stages.values())
    rows = []
    for path in sorted(set(library_modules().values())):
        name = str(path.relative_to(ROOT))
        users = [
            n
            for n, s in all_stages.items()
            if name in (d if isinstance(d, str) else next(iter(d)) for d in s["deps"])
        ]
        if users:
            count = sum(stage_instances(all_stages[n]) for n in users)
            rows.append((count, name, users))
    rows.sort(key=lambda row: (-row[0], row[1]))
    return total, rows


def code_lines(path: str) -> int:
    return sum(1 for line in (ROOT / path).read_text().splitlines() if line.strip())


def reruns_table() -> str:
    """Which stage instances an edit of each src module reruns, most first: what splitting a
    module at its seams shrinks. The headline weighs each module by its lines, since an edit
    lands on a line: splitting a module into parts adds rows without moving any line."""
    total, rows = reruns_rows()
    lines_of = {name: code_lines(name) for _, name, _ in rows}
    per_line = sum(count * lines_of[name] for count, name, _ in rows) / sum(lines_of.values())
    lines = [
        f"An edited line of library code reruns {per_line:.1f} of the {total} stage instances on "
        f"average (each module weighed by its non-blank lines); an edited module, "
        f"{sum(r[0] for r in rows) / len(rows):.1f} ({len(rows)} modules).",
        "",
        f"| module | lines | stage instances an edit reruns (of {total}) | stages |",
        "|---|---|---|---|",
        *(
            f"| `{name.removeprefix('src/prunelab/')}` | {lines_of[name]} | {count} | {', '.join(users)} |"
            for count, name, users in rows
        ),
    ]
    return "\n".join(lines)


def test_developers_reruns_table_is_current() -> None:
    text = (ROOT / "DEVELOPERS.md").read_text()
    begin, end = "<!-- reruns table: tests/test_structure.py -->\n", "\n<!-- end of reruns table -->"
    assert begin in text and end in text, "DEVELOPERS.md lost its reruns table's markers"
    current = text.split(begin)[1].split(end)[0]
    assert current == reruns_table(), "DEVELOPERS.md's reruns table is stale; paste:\n" + reruns_table()
