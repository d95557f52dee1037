"""End to end: the real dvc.yaml in a temporary git repo, on generated data, with tiny params."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo
from typer.testing import CliRunner

from prunelab import cli
from prunelab.device import dtype_name, resolve_runtime
from prunelab.fetch import CHECKSUMS_ENV
from prunelab.figures import BEGIN, END
from prunelab.profiles import composed_text
from prunelab.threads import THREADS_ENV
from tests.conftest import ROOT, tiny_params

PLUGIN = "prunelab.examples.fpgm:GeometricMedianStructured"
SWEEP = {"methods": ["l1_unstructured", PLUGIN], "points": [0.3, "2x"], "seeds": [0, 1], "val_images": 0}

IDENTITY = {
    "GIT_AUTHOR_NAME": "prunelab tests",
    "GIT_AUTHOR_EMAIL": "tests@prunelab.invalid",
    "GIT_COMMITTER_NAME": "prunelab tests",
    "GIT_COMMITTER_EMAIL": "tests@prunelab.invalid",
}


def run(cwd: Path, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def write_project_params(root: Path, overrides: dict) -> None:
    """The test's params as a project holds them: conf/config.yaml (what `dvc exp run` composes
    params.yaml from, with Hydra, as .dvc/config says), the shipped profiles, and params.yaml
    composed from them."""
    settings = tiny_params(overrides)
    settings.pop("profile", None)  # set by the profile chosen
    (root / "conf").mkdir()
    (root / "conf/config.yaml").write_text(
        yaml.safe_dump({"defaults": ["_self_", {"profile": "default"}], **settings}, sort_keys=False)
    )
    shutil.copytree(ROOT / "conf/profile", root / "conf/profile")
    (root / "params.yaml").write_text(composed_text([], root / "conf"))


def make_project(root: Path, archive: Path, checksums: Path) -> dict[str, str]:
    """Copy the pipeline into `root` as a fresh git + DVC repo; return the environment to run in."""
    for name in (
        "dvc.yaml",
        "comparison/dvc.yaml",
        "stages",
        "src",
        ".gitignore",
    ):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / name)
    write_project_params(root, {"data": {"source": str(archive), "val_size": 100}, "sweep": SWEEP})
    env = {
        **os.environ,
        **IDENTITY,
        CHECKSUMS_ENV: str(checksums),
        # one thread per stage whatever else runs on the machine: the count is recorded in every
        # metrics file's provenance and can change last bits, and the reruns below must match
        THREADS_ENV: "1",
        # the `python` in dvc.yaml's commands must be this interpreter, with prunelab importable
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(root / "src"),
    }
    env.pop("PRUNELAB_CIFAR10_ARCHIVE", None)
    run(root, "git", "init", "-q", env=env)
    run(root, sys.executable, "-m", "dvc", "init", "-q", env=env)
    # the committed config (analytics off, offline plot page) and the sweep plot template
    shutil.copy(ROOT / ".dvc/config", root / ".dvc/config")
    shutil.copytree(ROOT / ".dvc/html", root / ".dvc/html")
    shutil.copytree(ROOT / ".dvc/plots", root / ".dvc/plots")
    run(root, "git", "add", "-A", env=env)
    run(root, "git", "commit", "-qm", "init", env=env)
    return env


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, synthetic: tuple[Path, Path]
) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("project")
    env = make_project(root, *synthetic)
    run(root, sys.executable, "-m", "dvc", "repro", env=env)
    run(root, "git", "add", "-A", env=env)
    run(root, "git", "commit", "-qm", "first run", env=env)
    return root, env


def _refuse_non_finite(name: str) -> None:
    raise AssertionError(f"{name} in a JSON output")


def dvc(root: Path, env: dict[str, str], *args: str) -> str:
    return run(root, sys.executable, "-m", "dvc", *args, env=env)


def test_repro_produces_every_output(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    for path in (
        "models/baseline.pt",
        "models/pruned.pt",
        "models/finetuned.pt",
        "models/compact.pt",
        "models/compact.onnx",
        "dvc.lock",
        "plots/confusion/pruned.json",
        "plots/confusion/baseline.json",
    ):
        assert (root / path).exists(), path
    evaluate = json.loads((root / "metrics/evaluate.json").read_text())
    assert set(evaluate) == {
        "baseline",
        "pruned",
        "finetuned",
        "compact",
        "compact_int8",
        "scoring",
        "onnx_runtime",
        "provenance",
    }
    assert evaluate["compact_int8"]["quantized_from"] == "compact"  # dvc.yaml's --int8 compact
    # every metrics file says where it was made, and `dvc exp show` lists that as columns; the
    # precision is what train.precision auto resolves to on this machine (bf16 where the CPU has it)
    machine_precision = dtype_name(resolve_runtime("auto", "auto").dtype)
    for name in ("train", "baseline", "prune", "finetune", "compact", "evaluate", "sensitivity"):
        made = json.loads((root / f"metrics/{name}.json").read_text())["provenance"]
        assert made["precision"] == machine_precision, name
        assert made["epochs"] == 1 and made["versions"]["dvc"], name
    shown = dvc(root, project[1], "exp", "show", "--csv")
    assert "provenance.cpu" in shown and "provenance.versions.torch" in shown
    # each distinct model scored once: the baseline by evaluate_baseline, the fine-tuned model as
    # its compaction (which compact checked equal)
    assert evaluate["baseline"]["scored"] == "metrics/baseline.json"
    assert (
        evaluate["baseline"]["acc"]
        == json.loads((root / "metrics/baseline.json").read_text())["baseline"]["acc"]
    )
    assert evaluate["finetuned"]["scored"] == "as compact"
    assert evaluate["pruned"]["scored"] == "here, compacted"  # the one-shot model, in its compacted form
    assert evaluate["compact"]["params"] < evaluate["baseline"]["params"]
    assert evaluate["compact"]["macs"] < evaluate["baseline"]["macs"]
    assert evaluate["compact"]["acc"] == pytest.approx(evaluate["finetuned"]["acc"], abs=0.01)
    assert evaluate["baseline"]["speedup_b8"] == 1.0
    prune = json.loads((root / "metrics/prune.json").read_text())
    conv1 = prune["layers"]["conv1"]
    assert conv1["zero_channels"] == round(0.4 * conv1["channels"])
    assert (root / "dvclive/train/plots/metrics/val/acc.tsv").read_text().count("\n") == 2  # header + 1 epoch
    assert "data/cifar-10-batches-py" not in run(root, "git", "ls-files", env=project[1])  # never in git
    written = [
        *root.glob("metrics/**/*.json"),
        *root.glob("plots/**/*.json"),
        *root.glob("dvclive/**/*.json"),
    ]
    assert len(written) > 10
    for path in written:  # strict JSON: NaN and Infinity are refused by parsers and by dvc metrics
        json.loads(path.read_text(), parse_constant=_refuse_non_finite)


def test_prune_change_reruns_only_downstream_and_metrics_diff_shows_it(
    project: tuple[Path, dict[str, str]],
) -> None:
    root, env = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["prune"]["amount"] = 0.75
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc(root, env, "repro")
    assert "Stage 'fetch' didn't change" in out and "Stage 'train' didn't change" in out
    assert "Stage 'evaluate_baseline' didn't change" in out  # the baseline is not scored again
    assert "Running stage 'prune'" in out and "Running stage 'evaluate'" in out
    diff = json.loads(dvc(root, env, "metrics", "diff", "--json"))
    change = diff["metrics/prune.json"]["layers.conv1.zero_channels"]
    assert change["new"] > change["old"]
    assert "metrics/evaluate.json" in diff
    run(root, "git", "checkout", "--", "params.yaml", env=env)
    dvc(root, env, "checkout", "-q")


def test_exp_run_with_set_param(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    # a plugin by import path, through the same flow as a built-in
    out = dvc(
        root,
        env,
        "exp",
        "run",
        "-S",
        "prune.amount=0.25",
        "-S",
        f"prune.method={PLUGIN}",
        "-S",
        "prune.targets=[Conv2d]",
    )
    assert "Stage 'train' didn't change" in out or "train' is cached" in out
    rows = list(csv.DictReader(io.StringIO(dvc(root, env, "exp", "show", "--csv"))))
    assert "0.25" in [row["prune.amount"] for row in rows]
    prune = json.loads((root / "metrics/prune.json").read_text())
    assert prune["method"] == PLUGIN
    assert all(
        layer["zero_channels"] == round(0.25 * layer["channels"])
        for name, layer in prune["layers"].items()
        if name != "fc"
    )


def test_long_setting_trains_on_every_image_as_an_experiment(
    tmp_path: Path, synthetic: tuple[Path, Path]
) -> None:
    """docs/recipe.md's 94 % setting: airbench's net, its stem frozen, no validation split; only
    the stages it needs run (the comparison scores on the validation split it gives up)."""
    root = tmp_path / "long"
    root.mkdir()
    env = make_project(root, *synthetic)
    # the documented command, on a tiny net for a short test: `dvc exp run -S profile=long
    # evaluate_baseline`, after a workspace experiment that changed the data split
    dvc(root, env, "exp", "run", "-S", "data.val_size=50", "train")
    tiny = ["-S", "model.kwargs.widths=[8,16]", "-S", "train.epochs=1"]
    dvc(root, env, "exp", "run", "-n", "long", "-S", "profile=long", *tiny, "evaluate_baseline")
    train = json.loads((root / "metrics/train.json").read_text())
    assert train["train_images"] == 600 and train["val_acc"] is None
    assert 0 <= json.loads((root / "metrics/baseline.json").read_text())["baseline"]["acc"] <= 1
    assert not (root / "models/pruned.pt").exists()
    rows = list(csv.DictReader(io.StringIO(dvc(root, env, "exp", "show", "--csv"))))
    long = next(row for row in rows if row["Experiment"] == "long")
    assert (long["profile"], long["model.arch"], long["train.whiten"]) == ("long", "airbench", "frozen")


def test_sweep_points_and_report(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    for method in SWEEP["methods"]:
        structured = method == PLUGIN  # FPGM removes whole filters: the compacted model is smaller
        for spot in SWEEP["points"]:
            point = json.loads((root / f"metrics/sweep/{method}-{spot}.json").read_text())
            assert point["method"] == method and point["point"] == spot
            if spot == "2x":  # a cost target: MACs for a channel method, compression otherwise
                assert point["macs_speedup" if structured else "compression"] >= 2.0
            else:  # exact counts are unit-tested; structured rounding on 8-filter layers is ±1/16
                assert point["targeted_sparsity"] == pytest.approx(spot, abs=0.07)
            # l1's masks are not random: its random floor runs beside it, over the seeds
            recoveries = ["none", "bn_recalibration", "finetune"]  # the default sweep.recovery
            assert list(point["random_floor"]) == ([] if structured else recoveries)
            assert all(list(r["val_acc_by_seed"]) == ["0", "1"] for r in point["random_floor"].values())
            assert list(point["recovery"]) == recoveries
            for recovery, result in point["recovery"].items():
                # a plugin may be seed-dependent: scored once per sweep.seeds entry; l1 once,
                # but fine-tuned once per seed (sweep.trained_seeds)
                seeds = ["0", "1"] if method == PLUGIN or recovery == "finetune" else ["0"]
                assert list(result["val_acc_by_seed"]) == seeds
                mean = sum(result["val_acc_by_seed"].values()) / len(seeds)
                assert result["val_acc"] == pytest.approx(mean, abs=1e-6)
            assert point["compression"] == pytest.approx(point["params"] / point["params_nonzero"], rel=1e-3)
            assert (point["macs_compact"] < point["macs"]) == structured
            assert point["latency_speedup_b8"] > 0 and (point["latency_speedup_b1"] == 1.0 or structured)
            assert point["onnx_latency_speedup_b8"] > 0 and (
                point["onnx_latency_speedup_b1"] == 1.0 or structured
            )
    # the dense reference on the points' own images, and per-image results beside each point
    dense = json.loads((root / "metrics/sweep/dense.json").read_text())
    assert dense["val_images"] == point["val_images"] and dense["provenance"]["epochs"] == 1
    assert (root / f"metrics/sweep/{PLUGIN}-2x.correct.json").is_file()
    verdicts = json.loads((root / "report/verdicts.json").read_text())
    assert verdicts["correction"] == "Holm" and verdicts["family_size"] >= 1
    table = (root / "report/sweep.md").read_text()
    assert f"The dense baseline on the same images: {dense['val_acc']:.4f}" in table
    assert "Made on " in table and f"family of {verdicts['family_size']} tests" in table
    assert (
        "| l1_unstructured |" in table and PLUGIN in table and "mean ± std over its seeds (up to 2" in table
    )
    # ranked after fine-tuning, the cheap proxies' agreement beside it
    assert "ranked after fine-tuning with masks held (`finetune`)" in table
    assert [a["proxy"] for a in verdicts["proxy_agreement"]] == ["none"] * 2 + ["bn_recalibration"] * 2
    assert verdicts["baselines"] == 1 and "All rest on one baseline" in table
    assert "(`none`)" in table and "(`bn_recalibration`)" in table and "What each point costs" in table
    assert "## Against the random floor" in table and "l1_unstructured: above its floor at" in table
    plugin_rows = [line for line in table.splitlines() if line.startswith(f"| {PLUGIN}")]
    # three recoveries, then the cost table and the claimed-against-realised table
    assert [row.count("±") for row in plugin_rows] == [2, 2, 2, 0, 0]
    assert "Best method at each budget" in table and "fewer MACs once compacted" in table
    assert "Claimed against realised speed-up" in table
    for png in ("report/sweep.png", "report/pareto.png"):
        assert (root / png).read_bytes()[:4] == b"\x89PNG"
    # the README's results are rendered from these metrics, and a changed figure is caught
    readme = root.parent / f"{root.name}-README.md"
    readme.write_text(f"# x\n\n{BEGIN.format(name='results')}\n{END.format(name='results')}\n")
    figures = ["figures", "--readme", str(readme), "--root", str(root)]
    assert CliRunner().invoke(cli.app, [*figures, "--check"]).exit_code == 2
    assert CliRunner().invoke(cli.app, figures).exit_code == 0
    rendered = readme.read_text()
    assert "| compact: " in rendered and "Made on " in rendered and "| ≥ 2× |" in rendered
    assert f"{dense['val_acc']:.4f} on the same images" in rendered
    assert "| ONNX ms @ 8 |" in rendered and "ONNX: onnxruntime" in rendered  # both runtimes
    assert "How far the cheap proxies rank the methods as it does" in rendered
    assert CliRunner().invoke(cli.app, [*figures, "--check"]).exit_code == 0
    readme.write_text(rendered.replace("| ≥ 2× |", "| ≥ 2.5× |"))
    checked = CliRunner().invoke(cli.app, [*figures, "--check"])
    assert checked.exit_code == 2 and "results differ from the metrics" in checked.output
    assert len(json.loads((root / "plots/sweep.json").read_text())) == 12  # 4 points × 3 recoveries


def test_editing_one_sweep_entry_reruns_only_its_points(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sweep"]["points"] = [0.3, 0.5]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc(root, env, "repro")
    ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
    # the points live in comparison/dvc.yaml (their own lock file); `dvc repro` runs them for report
    points = [f"comparison/dvc.yaml:sweep@{method}-0.5" for method in ("l1_unstructured", PLUGIN)]
    assert ran == [*points, "report"]
    run(root, "git", "checkout", "--", "params.yaml", env=env)
    dvc(root, env, "repro")


def test_plots_show_renders_offline(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    dvc(root, env, "plots", "show", "-o", "plots_html")
    page = (root / "plots_html/index.html").read_text()
    assert "vegaEmbed" in page and "Accuracy vs sparsity" in page and "Accuracy vs MACs speed-up" in page
    assert re.search(r"<script[^>]+src=", page) is None  # every script is inlined
    assert "cdn.jsdelivr" not in page


def test_queued_grid_runs_in_parallel(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    run(root, "git", "add", "-A", env=env)
    run(root, "git", "commit", "-qm", "before queue", env=env)
    dvc(
        root,
        env,
        "exp",
        "run",
        "--queue",
        "-S",
        "prune.method=l1_unstructured,random_unstructured",
        "-S",
        "prune.amount=0.3,0.6",
    )
    dvc(root, env, "queue", "start", "-j", "2")
    deadline = time.time() + 400
    while time.time() < deadline:
        status = dvc(root, env, "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 4, status
    rows = list(csv.DictReader(io.StringIO(dvc(root, env, "exp", "show", "--csv"))))
    grid = {(r["prune.method"], r["prune.amount"]) for r in rows if r["State"] == "" or r.get("Experiment")}
    for method in ("l1_unstructured", "random_unstructured"):
        for amount in ("0.3", "0.6"):
            assert (method, amount) in grid, grid
    # the same experiment run alone, in the workspace, gives the same numbers as in the queue
    queued = next(
        r
        for r in rows
        if (r["prune.method"], r["prune.amount"]) == ("random_unstructured", "0.6") and r["Experiment"]
    )
    dvc(root, env, "exp", "run", "-S", "prune.method=random_unstructured", "-S", "prune.amount=0.6")
    alone = json.loads((root / "metrics/evaluate.json").read_text())
    assert float(_column(queued, "pruned.acc")) == pytest.approx(alone["pruned"]["acc"], abs=1e-9)
    prune_metrics = json.loads((root / "metrics/prune.json").read_text())
    assert float(_column(queued, "targeted_sparsity")) == pytest.approx(prune_metrics["targeted_sparsity"])


def _column(row: dict[str, str], name: str) -> str:
    """A metric from `dvc exp show --csv`, whose header may or may not prefix it with its file."""
    return next(v for k, v in row.items() if k == name or k.endswith(f":{name}"))


def _fingerprint(root: Path) -> dict[str, str]:
    """Hashes of every checkpoint and metrics file, wall-clock fields (time, latency) left out."""
    timing = ("seconds", "latency", "speedup", "onnx_latency", "onnx_speedup")

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not k.startswith(timing)}
        return value

    out = {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.glob("models/*.pt"))
    }
    for path in sorted(root.glob("metrics/**/*.json")):
        out[str(path.relative_to(root))] = json.dumps(strip(json.loads(path.read_text())), sort_keys=True)
    return out


def test_repro_force_is_bitwise_reproducible(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    run(root, "git", "checkout", "--", "params.yaml", env=env)
    dvc(root, env, "checkout", "-q", "--force")
    dvc(root, env, "repro")
    before = _fingerprint(root)
    dvc(root, env, "repro", "--force")
    assert _fingerprint(root) == before


def test_push_then_fresh_clone_pull_makes_repro_a_no_op(
    project: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, env = project
    dvc(root, env, "remote", "add", "-f", "-d", "storage", str(tmp_path / "remote"))
    run(root, "git", "add", "-A", env=env)
    run(root, "git", "commit", "-qm", "results", "--allow-empty", env=env)
    dvc(root, env, "push")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(root), str(clone), env=env)
    dvc(clone, env, "pull")
    assert (clone / "models/compact.pt").read_bytes() == (root / "models/compact.pt").read_bytes()
    out = dvc(clone, env, "repro")
    assert "Running stage" not in out and "up to date" in out


def test_team_shares_experiments_and_artifacts_through_git_and_dvc_remotes(
    project: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Two machines (clones) run experiments and push them; a teammate pulls, sees both in
    `dvc exp show` and through dvc.api, restores one exactly, and fetches a tagged artifact."""
    root, env = project
    origin, storage = tmp_path / "origin.git", tmp_path / "storage"
    run(tmp_path, "git", "init", "-q", "--bare", "--initial-branch=main", str(origin), env=env)
    dvc(root, env, "remote", "add", "-f", "-d", "team", str(storage))
    run(root, "git", "add", "-A", env=env)
    run(root, "git", "commit", "-qm", "team remote", "--allow-empty", env=env)
    # the baseline, registered as a model version, as a team lead would
    run(root, "git", "tag", "-a", "baseline@v1.0.0", "-m", "baseline v1.0.0", env=env)
    run(root, "git", "push", "-q", str(origin), "HEAD:main", "baseline@v1.0.0", env=env)
    dvc(root, env, "push", "-q")

    def machine(name: str) -> Path:
        clone = tmp_path / name
        run(tmp_path, "git", "clone", "-q", "-b", "main", str(origin), str(clone), env=env)
        dvc(clone, env, "pull", "-q")
        return clone

    amounts = {"a": "0.6", "b": "0.2"}
    for name, amount in amounts.items():
        clone = machine(name)
        # machine a pushes by hand, machine b pushes every experiment it finishes
        auto = {**env, "DVC_EXP_AUTO_PUSH": "true"} if name == "b" else env
        out = dvc(clone, auto, "exp", "run", "-n", f"{name}-amount", "-S", f"prune.amount={amount}")
        assert "Running stage 'train'" not in out  # the pulled baseline is reused
        if name == "a":
            dvc(clone, env, "exp", "push", "origin", f"{name}-amount")

    mate = machine("mate")
    dvc(mate, env, "exp", "pull", "origin")
    rows = list(csv.DictReader(io.StringIO(dvc(mate, env, "exp", "show", "--csv"))))
    pushed = {row["Experiment"]: row for row in rows if row["Experiment"]}
    assert {name: row["prune.amount"] for name, row in pushed.items()} == {
        f"{name}-amount": amount for name, amount in amounts.items()
    }
    # restored exactly: the same checkpoint bytes, and evaluating it gives the pushed metrics
    dvc(mate, env, "exp", "apply", "a-amount")
    dvc(mate, env, "pull", "-q")
    assert (mate / "models/compact.pt").read_bytes() == (tmp_path / "a/models/compact.pt").read_bytes()
    check = tmp_path / "check.json"
    run(
        mate,
        sys.executable,
        "stages/evaluate.py",
        "--params",
        "params.yaml",
        "--model",
        "compact=models/compact.pt",
        "--metrics",
        str(check),
        "--plots",
        str(tmp_path / "check_plots"),
        env=env,
    )
    assert (
        float(_column(pushed["a-amount"], "compact.acc")) == json.loads(check.read_text())["compact"]["acc"]
    )

    # the artifact's description and labels follow the experiment's params
    compact = Repo(str(mate)).artifacts.read()["dvc.yaml"]["compact"]
    assert "amount 0.6" in compact.desc and "ln_structured" in compact.labels

    # results from Python: the best compact model under a latency budget, over all experiments
    latency = {name: float(_column(row, "compact.latency_ms_b1")) for name, row in pushed.items()}
    accs = {name: float(_column(row, "compact.acc")) for name, row in pushed.items()}
    example = [sys.executable, str(ROOT / "examples/best_under_latency.py"), "--batch", "1"]
    out = run(mate, *example, "--max-ms", "1000", env=env)
    assert "a-amount" in out and "b-amount" in out
    best = max(accs[name] for name in accs)
    assert f"test acc {best:.4f}" in out.splitlines()[-1]
    refused = subprocess.run([*example, "--max-ms", str(min(latency.values()) / 2)], cwd=mate, env=env)
    assert refused.returncode == 1

    # models as artifacts: fetched by name into an empty folder, from the shared git remote
    empty = tmp_path / "consumer"
    empty.mkdir()
    dvc(empty, env, "artifacts", "get", str(origin), "baseline", "-o", "baseline.pt")
    assert (empty / "baseline.pt").read_bytes() == (root / "models/baseline.pt").read_bytes()
