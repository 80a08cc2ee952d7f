"""Energy benchmark: our JAX ReaxFF against LAMMPS on the shared training sets' geometry files.

For each data set (ffield_lit + geo): the structures are batched as ``evaluate_structures``
does (``reaxopt.evaluate.batch_structures``: one padded shape per size group, one vmapped call
per batch). Measured, with compilation (AOT ``lower().compile()``) separate from steady state:

* energy + forces (+ charges) of the whole file: ``batched_energy_forces_charges``;
* energy + parameter gradient: d(sum of all energies)/d(Params), total derivative (QEq charges
  respond), one jitted ``value_and_grad`` per batch shape, gradients summed over batches;
* peak memory: max RSS of the process (``resource``) after each phase, and the JAX device's
  ``memory_stats()`` where the backend reports them (not on CPU);
* LAMMPS: the same energies and forces via ``tests/lammps_oracle.lammps_evaluate``, one
  structure after another; this includes creating a LAMMPS instance and reading the force field
  per structure (LAMMPS has no batched mode), so it is the cost of a single-point loop. The same
  loop over a lone atom estimates that fixed cost (``lammps_lone_atom_loop_s``); the difference
  approximates LAMMPS's compute time alone.

Usage: python benchmarks/bench_energy.py [--datasets PATH] [--out benchmarks/results/energy.json]
[--repeats 3]. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import reaxopt  # noqa: F401  (x64)
from reaxopt.energy.total import energy_terms
from reaxopt.evaluate import batch_structures, batched_energy_forces_charges
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def max_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def device_memory() -> dict | None:
    """The default device's memory statistics (bytes), or None where the backend has none."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001  (backends without the query raise)
        return None
    if not stats:
        return None
    return {k: int(v) for k, v in stats.items() if k in ("peak_bytes_in_use", "bytes_in_use",
                                                          "bytes_limit")}


def _energy_sum(params, positions, systems, topology):
    """Sum of the batch's energies (kcal/mol); total derivative in ``params``."""
    def one(x, system):
        terms, _ = energy_terms(x, system, params, topology)
        return sum(terms.values())

    return jnp.sum(jax.vmap(one)(positions, systems))


_energy_sum_grad = jax.jit(jax.value_and_grad(_energy_sum), static_argnames="topology")


def _timed(fn, repeats: int) -> tuple[float, list[float]]:
    """(median seconds, all seconds) of ``fn()`` (which blocks until its results are ready)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def bench_dataset(folder: Path, repeats: int) -> dict:
    """All measurements for one data set (ffield_lit, geo)."""
    ffield = folder / "ffield_lit"
    structures = read_geometries(folder / "geo")
    params, topology = build_forcefield(read_ffield(ffield))

    start = time.perf_counter()
    batches = batch_structures(structures, params, topology)
    host_prep = time.perf_counter() - start
    shapes = [{"batch": len(members), "atoms": int(x.shape[1]),
               "nonbonded_pairs": int(s.pairs.mask.shape[1]),
               "bond_pairs": int(s.lists.pairs.mask.shape[1]),
               "angles": int(s.lists.angle_mask.shape[1]),
               "torsions": int(s.lists.torsion_mask.shape[1]),
               "hbonds": int(s.lists.hbond_mask.shape[1])}
              for members, x, s in batches]
    padded_structures = sum(len(m) for m, _, _ in batches)

    # energy + forces: compile each batch shape, then time the whole file
    start = time.perf_counter()
    forces_fns = [batched_energy_forces_charges.lower(x, s, params, topology=topology).compile()
                  for _, x, s in batches]
    forces_compile = time.perf_counter() - start
    device_batches = [(m, jax.device_put(x), jax.device_put(s)) for m, x, s in batches]

    def run_forces():
        return jax.block_until_ready([fn(x, s, params)
                                      for fn, (_, x, s) in zip(forces_fns, device_batches)])

    outputs = run_forces()  # warm-up
    forces_steady, forces_times = _timed(run_forces, repeats)
    rss_after_forces = max_rss_mib()

    # energy + parameter gradient
    start = time.perf_counter()
    grad_fns = [_energy_sum_grad.lower(params, x, s, topology=topology).compile()
                for _, x, s in batches]
    grad_compile = time.perf_counter() - start

    def run_grad():
        results = [fn(params, x, s) for fn, (_, x, s) in zip(grad_fns, device_batches)]
        total = jax.tree_util.tree_map(lambda *g: sum(g), *[g for _, g in results])
        return jax.block_until_ready(total)

    gradient = run_grad()
    grad_steady, grad_times = _timed(run_grad, repeats)
    rss_after_grad = max_rss_mib()
    finite_gradient = all(bool(np.all(np.isfinite(np.asarray(leaf))))
                          for leaf in jax.tree_util.tree_leaves(gradient))

    # LAMMPS, one structure after another, and the agreement with ours
    from lammps_oracle import lammps_evaluate

    ours = {}
    for (members, _, _), (energy, _, forces, charges) in zip(batches, outputs):
        for b, k in enumerate(members):
            ours[k] = (float(energy[b]), np.asarray(forces[b])[:structures[k].n_atoms])
    start = time.perf_counter()
    references = [lammps_evaluate(ffield, s.symbols, s.positions, s.cell, s.total_charge)
                  for s in structures]
    lammps_time = time.perf_counter() - start
    # the loop's fixed cost per call (instance, force-field file, setup): a lone atom each time
    lone = structures[0].symbols[0]
    start = time.perf_counter()
    for _ in structures:
        lammps_evaluate(ffield, [lone], np.zeros((1, 3)))
    lammps_overhead = time.perf_counter() - start
    energy_dev = max(abs(ours[k][0] - r["energy"]) for k, r in enumerate(references))
    force_dev = max(float(np.max(np.abs(ours[k][1] - r["forces"])))
                    for k, r in enumerate(references))

    return {
        "dataset": folder.name,
        "structures": len(structures),
        "atoms": int(sum(s.n_atoms for s in structures)),
        "batches": shapes,
        "padded_structures": padded_structures,
        "host_preparation_s": host_prep,
        "energy_forces": {"compile_s": forces_compile, "steady_s": forces_steady,
                          "steady_all_s": forces_times},
        "energy_param_gradient": {"compile_s": grad_compile, "steady_s": grad_steady,
                                  "steady_all_s": grad_times, "finite": finite_gradient},
        "lammps_energy_forces_s": lammps_time,
        "lammps_lone_atom_loop_s": lammps_overhead,
        "lammps_minus_lone_atom_loop_s": lammps_time - lammps_overhead,
        "ratio_ours_steady_over_lammps": forces_steady / lammps_time,
        "ratio_gradient_over_lammps": grad_steady / lammps_time,
        "ratio_gradient_over_energy_forces": grad_steady / forces_steady,
        "max_rss_mib": {"after_energy_forces": rss_after_forces,
                        "after_gradient": rss_after_grad},
        "device_memory": device_memory(),
        "max_deviation_from_lammps": {"energy_kcal_mol": energy_dev,
                                      "forces_kcal_mol_A": force_dev},
    }


def print_table(results: list[dict]) -> None:
    header = (f"{'dataset':<10} {'n':>4} {'batches':>7} {'compile E+F':>11} {'E+F':>8} "
              f"{'compile dE/dp':>13} {'E+dE/dp':>8} {'LAMMPS E+F':>10} {'E+F/LMP':>8} "
              f"{'grad/LMP':>8} {'LMP-fixed':>9} {'maxRSS MiB':>10}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['dataset']:<10} {r['structures']:>4} {len(r['batches']):>7} "
              f"{r['energy_forces']['compile_s']:>10.1f}s {r['energy_forces']['steady_s']:>7.3f}s "
              f"{r['energy_param_gradient']['compile_s']:>12.1f}s "
              f"{r['energy_param_gradient']['steady_s']:>7.3f}s "
              f"{r['lammps_energy_forces_s']:>9.2f}s {r['ratio_ours_steady_over_lammps']:>8.3f} "
              f"{r['ratio_gradient_over_lammps']:>8.3f} "
              f"{r['lammps_minus_lone_atom_loop_s']:>8.2f}s "
              f"{r['max_rss_mib']['after_gradient']:>10.0f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--names", nargs="+", default=["cobalt", "disulfide"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "energy.json")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    results = [bench_dataset(args.datasets / name, args.repeats) for name in args.names]
    report = {"platform": platform.platform(), "python": platform.python_version(),
              "jax": jax.__version__, "backend": jax.default_backend(),
              "devices": [str(d) for d in jax.devices()], "repeats": args.repeats,
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
