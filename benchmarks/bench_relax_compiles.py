"""XLA compilations of one relaxation against the number of structures relaxed.

For each N of ``--counts``, in its own process (an empty in-memory cache; the library calls use no persistent one),
N distinct copies of the bundled C/H/O set's molecules (``datasets/cho``, cycled, each rattled by
its own seeded displacements of up to 0.05 Å) relax under ``ffield_cho`` through the fit's own
path (``load_inputs``, ``build_problem``, ``make_relaxer``) with the minimize defaults. It
records the compilations (``jax.monitoring``: count, seconds, per function) of building the
problem and of one relaxation, the relaxation's seconds and the peak RSS.

    .venv/bin/python benchmarks/bench_relax_compiles.py [--counts 10 100]
        [--out benchmarks/results/relax_compiles.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHO = ROOT / "datasets" / "cho"


def write_inputs(n: int, work: Path) -> Path:
    """An extended-XYZ file of n rattled molecules to minimize, and a config; the config's
    path."""
    import ase.io
    import numpy as np

    frames = [a for a in ase.io.read(CHO / "cho.extxyz", ":") if not a.pbc.any()]
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        atoms = frames[k % len(frames)].copy()
        atoms.positions += rng.uniform(-0.05, 0.05, atoms.positions.shape)
        atoms.info = {"name": f"copy{k}", "run_type": "minimize",
                      "energy": float(k), "energy_unit": "kcal/mol"}
        atoms.calc = None
        out.append(atoms)
    xyz = work / "copies.extxyz"
    ase.io.write(xyz, out, format="extxyz")
    config = work / "copies.yaml"
    config.write_text(f"force_field: {CHO / 'ffield_cho'}\nparams: {CHO / 'params'}\n"
                      f"structures: {xyz}\noutput_dir: {work / 'out'}\n")
    return config


def measure(n: int) -> dict:
    """Compilations and seconds of building the problem and relaxing n copies once."""
    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scan_relaxation import Compilations

    from reaxopt.config import load_config
    from reaxopt.fit.problem import build_problem
    from reaxopt.inputs import load_inputs
    from reaxopt.relaxation import make_relaxer

    compilations = Compilations()
    work = Path(tempfile.mkdtemp(prefix=f"relax_compiles_{n}_"))
    config = load_config(write_inputs(n, work))
    problem = build_problem(load_inputs(config))
    built = compilations.count
    lines: list[str] = []
    relaxer = make_relaxer(problem, config, lines.append)
    start = time.perf_counter()
    relaxer.relaxed(problem.theta_start, "the benchmark")
    seconds = time.perf_counter() - start
    return {"structures": n, "relaxed": len(relaxer.minimized),
            "compilations_building": built,
            "compilations_relaxation": compilations.count - built,
            "compile_seconds": round(compilations.seconds, 2),
            "relaxation_seconds": round(seconds, 2), "log": lines,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "by_function": dict(sorted(compilations.names.items(),
                                       key=lambda item: -item[1][1])[:12])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", nargs="+", type=int, default=[10, 100])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process's N
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "relax_compiles.json")
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.one)))
        return 0
    runs = []
    for n in args.counts:
        child = subprocess.run([sys.executable, __file__, "--one", str(n)], cwd=ROOT,
                               capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            return 1
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps({k: v for k, v in runs[-1].items() if k not in ("log", "by_function")}),
              flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    args.out.write_text(json.dumps({"what": __doc__.split("\n\n")[1].replace("\n", " "),
                                    "commit": commit, "runs": runs}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
