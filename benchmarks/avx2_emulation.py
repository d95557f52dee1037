"""What the comparison costs on a CPU without bf16, estimated on this one: sweep points run as
the sweep stage runs them, natively (train.precision auto) and with oneDNN and MKL capped at AVX2
in fp32 (ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2, train.precision fp32), alternating
so that drift falls on both alike. An emulation: a real AVX2-only CPU differs in clock, cache and
memory bandwidth, so quote the ratio as an estimate, next to what was measured natively.

Needs the baseline and the data (`dvc repro train`).

    uv run python benchmarks/avx2_emulation.py [--points ln_structured:2x group_taylor:2x ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import AVX2, ROOT, environment, write_params

from prunelab.device import cpu_description
from prunelab.threads import cpu_cores


def run_point(method: str, point: str, params: Path, out: Path, env: dict[str, str]) -> float:
    cmd = [sys.executable, str(ROOT / "stages/sweep.py"), "--params", str(params), "--method", method]
    cmd += ["--point", point, "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--points", nargs="+", default=["ln_structured:2x", "group_taylor:2x", "global_unstructured:2x"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        native_params = write_params(Path(tmp) / "native.yaml", {})
        fp32_params = write_params(Path(tmp) / "fp32.yaml", {"train.precision": "fp32"})
        env = environment()
        print(f"{cpu_description()}, {cpu_cores()} cores; sweep points as params.yaml sets them", flush=True)
        totals = {"native": 0.0, "AVX2 fp32": 0.0}
        for spec in args.points:
            method, point = spec.split(":")
            native = run_point(method, point, native_params, Path(tmp) / "n.json", env)
            emulated = run_point(method, point, fp32_params, Path(tmp) / "e.json", {**env, **AVX2})
            totals["native"] += native
            totals["AVX2 fp32"] += emulated
            print(
                f"  {method} @ {point}: native {native:6.1f} s, AVX2 fp32 {emulated:6.1f} s ({emulated / native:.2f}×)"
            )
        print(
            f"all points: native {totals['native']:.1f} s, AVX2 fp32 {totals['AVX2 fp32']:.1f} s "
            f"({totals['AVX2 fp32'] / totals['native']:.2f}×)"
        )
    print("reproduce: uv run python benchmarks/avx2_emulation.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
