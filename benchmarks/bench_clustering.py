"""Benchmark of issue 4's clustering: counting time, padded cost, and real energy timings.

For each geometry file: the time to count every structure's interactions, then the padded cost
under three strategies, K = 1 (everything padded to the largest structure, one compilation),
automatic K, and one structure per compilation. With ``--energy N`` it also times the real
energy + forces + charges evaluation (``reaxopt.evaluate``) of N structures (spread over the
size range) under the three strategies: the compile time (first call per shape) and the steady
state (a second pass over the same shapes), and the CPU seconds per cost unit that follow (to
check ``AutoK.seconds_per_unit`` and ``AutoK.compile_seconds``).

    python benchmarks/bench_clustering.py                    # both published sets, costs only
    python benchmarks/bench_clustering.py --energy 8 --dataset disulfide
    python benchmarks/bench_clustering.py --ffield F --geo G  # any other pair of files

The published sets are read from ../shared/datasets beside the repository.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import reaxopt  # noqa: F401  (x64)
from reaxopt.cluster.clustering import CostModel, cluster_structures
from reaxopt.cluster.padding import pad_system_sizes, stack_trees
from reaxopt.cluster.sizes import count_interactions, cutoffs_for
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def best_time(function, repeats: int = 3) -> tuple[float, object]:
    """(the fastest of ``repeats`` wall-clock timings in s, the last result)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def strategies(sizes) -> dict:
    """name -> Clustering for K = 1, automatic K and one structure per compilation."""
    return {"k1": cluster_structures(sizes, 1), "auto": cluster_structures(sizes),
            "per_structure": cluster_structures(sizes, len(sizes))}


def spread(sizes, count: int) -> list[int]:
    """``count`` structure indices spread evenly over the range of costs."""
    cost = CostModel().cost(np.array([s.as_tuple() for s in sizes]))
    order = np.argsort(cost, kind="stable")
    picks = np.unique(np.linspace(0, len(order) - 1, count).round().astype(int))
    return sorted(order[picks].tolist())


def time_energies(structures, params, topology, clustering) -> dict:
    """Compile and steady-state seconds of evaluating every structure, one vmapped call per
    cluster (``reaxopt.evaluate.batched_energy_forces_charges``)."""
    import jax

    from reaxopt.evaluate import batched_energy_forces_charges, build_system, pad_system

    built = [build_system(s, params, topology) for s in structures]
    batches = []
    for c, padded in enumerate(clustering.padded):
        shape = pad_system_sizes(padded)
        members = [pad_system(*built[k], shape) for k in clustering.members(c)]
        batches.append((stack_trees([m[0] for m in members]),
                        stack_trees([m[1] for m in members])))

    def one_pass():
        for positions, systems in batches:
            jax.block_until_ready(batched_energy_forces_charges(positions, systems, params,
                                                                topology=topology))

    start = time.perf_counter()
    one_pass()
    first = time.perf_counter() - start
    steady, _ = best_time(one_pass, repeats=2)
    return {"compiles": len(batches), "first_pass_s": first, "steady_pass_s": steady,
            "compile_s": first - steady, "padded_cost": clustering.padded_cost,
            "s_per_unit": steady / clustering.padded_cost}


def run(name: str, ffield: Path, geo: Path, energy: int) -> dict:
    params, topology = build_forcefield(read_ffield(ffield))
    structures = read_geometries(geo)
    cutoffs = cutoffs_for(params, topology)
    seconds, sizes = best_time(lambda: count_interactions(structures, params, topology,
                                                          cutoffs=cutoffs))
    report = {"dataset": name, "structures": len(structures),
              "periodic": sum(s.cell is not None for s in structures),
              "counting_s": seconds, "strategies": {}}
    for label, result in strategies(sizes).items():
        report["strategies"][label] = {"clusters": result.n_clusters,
                                       "padded_cost": result.padded_cost,
                                       "unpadded_cost": result.unpadded_cost,
                                       "ratio": result.ratio}
    clustering_s, _ = best_time(lambda: cluster_structures(sizes), repeats=1)
    report["auto_clustering_s"] = clustering_s
    if energy:
        picked = spread(sizes, energy)
        subset = [structures[k] for k in picked]
        subset_sizes = [sizes[k] for k in picked]
        report["energy"] = {"structures": [s.name for s in subset]}
        for label, result in strategies(subset_sizes).items():
            report["energy"][label] = time_energies(subset, params, topology, result)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", choices=["cobalt", "disulfide"],
                        help="published set(s) to run (default: both)")
    parser.add_argument("--ffield", type=Path, help="another force field (with --geo)")
    parser.add_argument("--geo", type=Path, help="another geometry file (with --ffield)")
    parser.add_argument("--energy", type=int, default=0, metavar="N",
                        help="also time real energy evaluations of N structures")
    args = parser.parse_args()
    if args.ffield or args.geo:
        jobs = [("custom", args.ffield, args.geo)]
    else:
        jobs = [(d, DATASETS / d / "ffield_lit", DATASETS / d / "geo")
                for d in (args.dataset or ["cobalt", "disulfide"])]
    for name, ffield, geo in jobs:
        print(json.dumps(run(name, ffield, geo, args.energy), indent=1))


if __name__ == "__main__":
    main()
