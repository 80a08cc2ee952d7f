"""`reaxopt evaluate` as a whole process against LAMMPS's whole process on the same file.

    .venv/bin/python benchmarks/bench_evaluate.py [--dataset cobalt] [--repeats 5]
        [--phase-repeats 3] [--out benchmarks/results/evaluate.json]

Both commands are timed from outside (start of the subprocess to its exit, wall clock), in turns
(reaxopt, LAMMPS, reaxopt, ...) so that a drift in the machine's load hits both alike:

* reaxopt: ``reaxopt evaluate --ffield ffield_lit --geo geo -o out.jsonl`` with a fresh cache
  directory (REAXOPT_CACHE_DIR): one untimed run fills it (its time is reported as ``cold_s``),
  then --repeats timed runs (warm).
* LAMMPS: this script in worker mode (``--lammps-worker``), one Python process that reads the
  same file with reaxopt's readers (without importing JAX: reaxopt/__init__.py is skipped),
  evaluates every structure one at a time with tests/lammps_oracle.py's ``lammps_evaluate``
  (pair_style reaxff + fix qeq/reaxff, run 0: energy, terms, forces, charges) and writes them.

Reported: the medians, their ratio (reaxopt / LAMMPS) and the ratio of each pair; reaxopt's
phases (``--phases-worker``: the CLI's steps timed one by one in a warm process, median over
--phase-repeats: imports, reading the geometries, the force field, the bond cutoffs, the lists,
packing, loading the executable, running it, the JSON lines) and the start of a bare Python
process; the largest differences between reaxopt's and LAMMPS's energies, forces and charges.
Writes benchmarks/results/evaluate.json (--out) with the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
TARGET_RATIO = 0.5  # reaxopt's whole process at most half of LAMMPS's


# ------------------------------------------------------------------------------ workers


def lammps_worker(ffield: Path, geo: Path, out: Path) -> None:
    """Every structure of ``geo`` through LAMMPS one at a time; energies, forces and charges
    as JSON lines to ``out``. Imports no JAX."""
    import types

    package = types.ModuleType("reaxopt")  # reaxopt's readers without reaxopt/__init__ (JAX)
    package.__path__ = [str(ROOT / "reaxopt")]
    sys.modules["reaxopt"] = package
    sys.path.insert(0, str(ROOT / "tests"))
    from lammps_oracle import lammps_evaluate

    from reaxopt.io.geometry import read_geometries

    lines = []
    for s in read_geometries(geo):
        ref = lammps_evaluate(ffield, s.symbols, s.positions, s.cell, s.total_charge)
        lines.append(json.dumps({"name": s.name, "energy": ref["energy"], "terms": ref["terms"],
                                 "forces": ref["forces"].tolist(),
                                 "charges": ref["charges"].tolist()}))
    out.write_text("".join(line + "\n" for line in lines))
    if "jax" in sys.modules:
        raise RuntimeError("the LAMMPS worker imported JAX")


def phases_worker(ffield: Path, geo: Path, out: Path) -> dict:
    """Seconds of each step of `reaxopt evaluate` in this process (as the CLI runs them)."""
    seconds, clock = {}, [time.perf_counter()]

    def phase(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = now - clock[0]
        clock[0] = now

    import jax

    import reaxopt.cli as cli
    from reaxopt import evaluate, single_points
    from reaxopt.forcefield import build_forcefield
    from reaxopt.io.ffield import read_ffield
    from reaxopt.io.files import write_text_atomic
    from reaxopt.io.geometry import read_geometries
    from reaxopt.packed import pack
    phase("imports")
    cli._executable_cache()
    structures = read_geometries(geo)
    phase("read_geometries")
    params, topology = build_forcefield(read_ffield(ffield))
    phase("force_field")
    cutoffs = evaluate.host_cutoffs(params, topology)
    phase("bond_cutoffs")
    built = evaluate.host_systems(structures, topology, cutoffs)
    phase("lists")
    groups = single_points.pack_groups([system for _, system in built], 2_000_000)
    packs = [pack([built[k] for k in members]) for members in groups]
    phase("pack")
    runs = [single_points.single_points_executable(p, params, topology) for p in packs]
    phase("load_executable")
    outputs = [jax.device_get(run(*single_points.packed_arguments(p, params)))
               for run, p in zip(runs, packs)]
    phase("execute")
    results: list = [None] * len(structures)
    for members, output in zip(groups, outputs):
        split = single_points.split_outputs(output, [structures[k].n_atoms for k in members])
        for k, result in zip(members, split):
            results[k] = {"name": structures[k].name, **result}
    write_text_atomic(out, evaluate.jsonl_text(results))
    phase("json_output")
    return {"seconds": seconds, "packs": len(packs),
            "packed_sizes": [list(p.sizes) for p in packs]}


# ------------------------------------------------------------------------------ driver


def timed(command: list[str], env: dict) -> float:
    """Wall seconds of ``command`` as a whole process; raises if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def agreement(ours: Path, reference: Path) -> dict:
    """Largest differences between two JSON-lines outputs: energy (absolute and relative to
    max(1, |E|)), terms, forces and charges."""
    import numpy as np

    a = [json.loads(line) for line in ours.read_text().splitlines()]
    b = [json.loads(line) for line in reference.read_text().splitlines()]
    if [r["name"] for r in a] != [r["name"] for r in b]:
        raise RuntimeError("the two outputs name different structures")
    return {
        "structures": len(a),
        "energy_abs": max(abs(x["energy"] - y["energy"]) for x, y in zip(a, b)),
        "energy_rel": max(abs(x["energy"] - y["energy"]) / max(1.0, abs(y["energy"]))
                          for x, y in zip(a, b)),
        "terms_abs": max(abs(x["terms"][k] - y["terms"][k]) for x, y in zip(a, b)
                         for k in y["terms"]),
        "forces_abs": max(float(np.max(np.abs(np.subtract(x["forces"], y["forces"]))))
                          for x, y in zip(a, b)),
        "charges_abs": max(float(np.max(np.abs(np.subtract(x["charges"], y["charges"]))))
                           for x, y in zip(a, b))}


def median_phases(runs: list[dict]) -> dict:
    """Per phase, the median seconds over the phase worker's runs."""
    return {name: statistics.median(run["seconds"][name] for run in runs)
            for name in runs[0]["seconds"]}


def measure(ffield: Path, geo: Path, repeats: int, phase_repeats: int, work: Path) -> dict:
    """The benchmark's numbers (see the module docstring)."""
    env = {**os.environ, "REAXOPT_CACHE_DIR": str(work / "cache")}
    reaxopt = [sys.executable, "-m", "reaxopt", "evaluate", "--ffield", str(ffield), "--geo",
               str(geo), "-o", str(work / "reaxopt.jsonl")]
    lammps = [sys.executable, __file__, "--lammps-worker", str(ffield), str(geo),
              str(work / "lammps.jsonl")]
    cold = timed(reaxopt, env)
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(timed(reaxopt, env))
        theirs.append(timed(lammps, env))
    phases = []
    for _ in range(phase_repeats):
        done = subprocess.run([sys.executable, __file__, "--phases-worker", str(ffield),
                               str(geo), str(work / "phases.jsonl")], env=env,
                              capture_output=True, text=True, check=True)
        phases.append(json.loads(done.stdout.strip().splitlines()[-1]))
    startup = statistics.median(timed([sys.executable, "-c", "pass"], env) for _ in range(5))
    return {
        "reaxopt": {"cold_s": cold, "warm_s": ours, "median_s": statistics.median(ours)},
        "lammps": {"runs_s": theirs, "median_s": statistics.median(theirs)},
        "ratio_of_medians": statistics.median(ours) / statistics.median(theirs),
        "ratios_per_pair": [a / b for a, b in zip(ours, theirs)],
        "target_ratio": TARGET_RATIO,
        "reaxopt_phases_s": median_phases(phases), "packs": phases[0]["packs"],
        "packed_sizes": phases[0]["packed_sizes"], "python_startup_s": startup,
        "agreement_with_lammps": agreement(work / "reaxopt.jsonl", work / "lammps.jsonl"),
        "phases_output_equals_cli_output": ((work / "phases.jsonl").read_text()
                                            == (work / "reaxopt.jsonl").read_text())}


def machine(load_at_start) -> dict:
    """Where the numbers were measured."""
    import jax

    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "jax": jax.__version__,
            "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()}


def report(results: dict) -> list[str]:
    """A few lines for the terminal."""
    r = results
    lines = [f"{r['dataset']}: {r['structures']} structures, {r['repeats']} runs each",
             f"reaxopt evaluate (warm) median {r['reaxopt']['median_s']:.2f} s "
             f"(cold {r['reaxopt']['cold_s']:.1f} s); "
             f"LAMMPS median {r['lammps']['median_s']:.2f} s",
             f"ratio reaxopt/LAMMPS {r['ratio_of_medians']:.3f} (target <= {TARGET_RATIO}); "
             f"per pair {', '.join(f'{x:.3f}' for x in r['ratios_per_pair'])}",
             f"python start {r['python_startup_s']:.2f} s; reaxopt phases (median s):"]
    lines += [f"  {name:16s} {value:6.3f}" for name, value in r["reaxopt_phases_s"].items()]
    a = r["agreement_with_lammps"]
    lines.append(f"vs LAMMPS: energy {a['energy_abs']:.2e} kcal/mol (rel {a['energy_rel']:.1e}), "
                 f"forces {a['forces_abs']:.1e} kcal/mol/Å, charges {a['charges_abs']:.1e} e")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cobalt")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--phase-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results"
                        / "evaluate.json")
    parser.add_argument("--lammps-worker", nargs=3, type=Path, metavar=("FFIELD", "GEO", "OUT"))
    parser.add_argument("--phases-worker", nargs=3, type=Path, metavar=("FFIELD", "GEO", "OUT"))
    args = parser.parse_args(argv)
    if args.lammps_worker:
        lammps_worker(*args.lammps_worker)
        return 0
    if args.phases_worker:
        print(json.dumps(phases_worker(*args.phases_worker)))
        return 0
    load_at_start = os.getloadavg()
    ffield, geo = SHARED / args.dataset / "ffield_lit", SHARED / args.dataset / "geo"
    with tempfile.TemporaryDirectory() as work:
        numbers = measure(ffield, geo, args.repeats, args.phase_repeats, Path(work))
        structures = sum(1 for _ in open(Path(work) / "reaxopt.jsonl"))
    results = {"machine": machine(load_at_start), "dataset": args.dataset,
               "ffield": "ffield_lit", "structures": structures, "repeats": args.repeats,
               **numbers}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(report(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
