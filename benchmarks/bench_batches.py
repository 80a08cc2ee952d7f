"""Benchmark of issue 4's batching: the fit's loss + parameter gradient under three clusterings.

For each shared training set (cobalt, disulfide: ffield_lit, geo, trainset.in and params, read
through configs/<name>.yaml without its validation set) the loss is built exactly as ``reaxopt
fit`` builds it (``reaxopt.fit.build_problem``: lists with the fit's bond margin and a skin for
the structures it minimises; the trainset's items, FORCES included) and evaluated with its
parameter gradient (``reaxopt.fit.make_evaluator``) at the input geometry, for

* K = 1: every structure padded to the largest (one compilation);
* automatic K (``AutoK``, the fit's default);
* one structure per cluster (K = number of structures S; clusters of identical padded shape
  share one compilation through JAX's cache). Compiling every shape takes hours on a CPU, so
  this is measured on a subset of ``--subset`` structures spread over the cost range, each its
  own cluster, with a stand-in objective of the same predictions (sum of squared energies,
  forces and charges: the trainset's items refer to structures outside the subset), and
  extrapolated to the D distinct padded shapes of the whole set: compile time = the subset's +
  (D - its distinct shapes) x the mean compile time of a new shape (its cluster's first call,
  compiled one by one, less a steady call); steady time from a least-squares fit time = a + b *
  cost over the subset's clusters (each alone) summed over all S structures; peak memory = the
  subset's peak + (D - its shapes) x the resident memory one more compiled shape keeps (slope
  of RSS over the one-by-one compilations; an upper bound where the allocator would reuse freed
  compile memory). The output marks the extrapolated numbers.

Each case runs in its own process (``--worker``), so that peak RSS (``ru_maxrss``) and JAX's
compilation cache belong to that case alone. Measured: host build time (lists, clustering),
compile time (the first evaluation minus a steady one, noisy where a steady evaluation takes
seconds; and XLA's own backend-compile seconds, "XLA s"), steady-state seconds of one loss +
gradient evaluation (median of ``--repeats``, at other parameter values), peak RSS, padded cost
and compile count; then ratios against automatic K.

    python benchmarks/bench_batches.py [--names cobalt disulfide] [--subset 5] [--repeats 3]
        [--cases k1 auto per_structure] [--out benchmarks/results/batches.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_energy import max_rss_mib  # (beside this script)

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT_GIB = 14  # a case that needs more fails alone instead of starving the machine


def current_rss_mib() -> float:
    """Resident memory of this process now, MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024.0 ** 2


class CompileClock:
    """Sums JAX's backend-compile seconds and counts compilations (``jax.monitoring``)."""

    def __init__(self):
        import jax

        self.seconds, self.count = 0.0, 0
        jax.monitoring.register_event_duration_secs_listener(self._record)

    def _record(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self.seconds += duration
            self.count += 1


def _inputs(name: str):
    """(inputs, theta map) of configs/<name>.yaml without its validation set."""
    from reaxopt.config import load_config
    from reaxopt.inputs import load_inputs
    from reaxopt.model import theta_map

    config = dataclasses.replace(load_config(ROOT / "configs" / f"{name}.yaml"), validation=None)
    inputs = load_inputs(config)
    return inputs, theta_map(inputs.params)


def fit_case(name: str, clusters, packed: bool = False):
    """(model, evaluate(theta), theta0, theta map): the fit's loss and gradient, K clusters
    (``packed``: as the fit evaluates it, all structures in one packed system)."""
    import numpy as np

    from reaxopt.fit import build_problem, make_evaluator
    from reaxopt.model import ModelOptions

    inputs, tmap = _inputs(name)
    problem = build_problem(inputs, ModelOptions(clusters=clusters, packed=packed))
    theta0 = np.clip(problem.theta_start, tmap.lower, tmap.upper)
    evaluate = make_evaluator(problem, inputs.config.optimizer.regularization, theta0)

    def run(theta):
        if not np.isfinite(evaluate(theta).loss):
            raise RuntimeError("non-finite loss")

    return problem.model, run, theta0, tmap


def real_sizes(model) -> list:
    """Per structure (model order), its real interaction counts."""
    import jax
    import numpy as np

    from reaxopt.cluster.padding import system_interaction_sizes, unstack_tree

    sizes = [None] * model.n_structures
    for (_, system), members in zip(model.batches, model.members):
        host = jax.tree_util.tree_map(np.asarray, system)
        for b, k in enumerate(members):
            sizes[int(k)] = system_interaction_sizes(unstack_tree(host, b))
    return sizes


def per_structure_case(name: str, subset: int):
    """(model, evaluate(theta), theta0, theta map, params, costs and padded shapes of every
    structure, picks): ``subset`` structures spread over the cost range, one cluster each,
    stand-in objective."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from reaxopt.cluster.clustering import CostModel, round_up
    from reaxopt.forcefield import build_forcefield
    from reaxopt.loss import used_structures
    from reaxopt.model import (ModelOptions, build_model, clustered_value_and_grad,
                               loosest_params)

    inputs, tmap = _inputs(name)
    structures = used_structures(inputs.training)
    params, topology = build_forcefield(inputs.ffield)
    loosest = loosest_params(tmap, params)
    everything = build_model(structures, params, topology, ModelOptions(clusters=1),
                             cutoff_params=loosest)
    sizes = np.array([s.as_tuple() for s in real_sizes(everything)])
    costs = CostModel().cost(sizes)
    shapes = [tuple(int(v) for v in row) for row in round_up(sizes)]
    order = np.argsort(costs, kind="stable")
    spread = np.unique(np.linspace(0, len(order) - 1, subset).round().astype(int))
    picks = sorted(order[spread].tolist())
    model = build_model([structures[k] for k in picks], params, topology,
                        ModelOptions(clusters=len(picks)), cutoff_params=loosest)

    def objective(theta, predictions):
        forces = jnp.where(predictions.atom_mask[..., None], predictions.forces, 0.0)
        return (jnp.sum(predictions.energy ** 2) + jnp.sum(forces ** 2)
                + jnp.sum(predictions.charges ** 2)), None

    value_and_grad = clustered_value_and_grad(objective)
    theta0 = np.clip(tmap.from_params(params), tmap.lower, tmap.upper)

    def run(theta):
        (value, _), gradient = value_and_grad(jnp.asarray(theta), model, tmap, params)
        jax.block_until_ready(gradient)
        if not np.isfinite(float(value)):
            raise RuntimeError("non-finite objective")

    return model, run, theta0, tmap, params, costs, picks, shapes


def cluster_seconds(model, params, repeats: int) -> list[float]:
    """Median seconds of each cluster's forward + pullback alone (the fit's compiled calls)."""
    import jax
    import jax.numpy as jnp

    from reaxopt.model import _cluster_forward, _pullback

    params = jax.tree_util.tree_map(jnp.asarray, params)
    seconds = []
    for positions, system in model.batches:
        outputs, vjp = _cluster_forward(positions, system, params, topology=model.topology)
        cotangent = jax.tree_util.tree_map(jnp.ones_like, outputs)
        jax.block_until_ready(_pullback(vjp, cotangent))  # warm (compiled by the evaluation)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            outputs, vjp = _cluster_forward(positions, system, params, topology=model.topology)
            jax.block_until_ready(_pullback(vjp, cotangent))
            times.append(time.perf_counter() - start)
        seconds.append(statistics.median(times))
    return seconds


def steady_seconds(run, theta0, tmap, repeats: int) -> tuple[float, list[float]]:
    """(median, all) seconds of ``run(theta)`` at ``repeats`` parameter sets near theta0 (1 %
    of each bound range, seeded), after its first call compiled it."""
    import numpy as np

    rng = np.random.default_rng(0)
    span = tmap.upper - tmap.lower
    times = []
    for _ in range(repeats):
        theta = np.clip(theta0 + 0.01 * span * rng.standard_normal(len(theta0)), tmap.lower,
                        tmap.upper)
        start = time.perf_counter()
        run(theta)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def worker(name: str, clusters, subset: int | None, repeats: int) -> dict:
    """Measure one case in this process (see the module docstring)."""
    import numpy as np

    import reaxopt  # noqa: F401  (x64)

    clock = CompileClock()
    start = time.perf_counter()
    if subset is None:
        model, run, theta0, tmap = fit_case(name, clusters)
    else:
        model, run, theta0, tmap, params, costs, picks, shapes = per_structure_case(name,
                                                                                  subset)
    build_s = time.perf_counter() - start
    rss_built = max_rss_mib()
    start = time.perf_counter()
    if subset is not None:  # compile cluster by cluster, to see what each one costs
        first_calls, rss_steps = compile_one_by_one(model, params)
    run(theta0)
    first_s = time.perf_counter() - start
    rss_compiled = current_rss_mib()
    compile_backend_s, compiles = clock.seconds, clock.count
    steady, times = steady_seconds(run, theta0, tmap, repeats)
    result = {
        "clusters": len(model.batches),
        "structures": model.n_structures,
        "padded_cost": model.clustering.padded_cost,
        "unpadded_cost": model.clustering.unpadded_cost,
        "padded_over_unpadded": model.clustering.ratio,
        "build_s": build_s,
        "first_evaluation_s": first_s,
        "compile_s": first_s - steady,
        "backend_compile_s": compile_backend_s,
        "backend_compilations": compiles,
        "steady_s": steady,
        "steady_all_s": times,
        "recompilations_in_steady_state": clock.count - compiles,
        "rss_after_build_mib": rss_built,
        "rss_after_first_evaluation_mib": rss_compiled,
        "peak_rss_mib": max_rss_mib(),
    }
    if subset is not None:
        alone = cluster_seconds(model, params, repeats)
        subset_costs = np.array([costs[picks[int(m[0])]] for m in model.members])
        design = np.stack([np.ones_like(subset_costs), subset_costs], axis=1)
        (per_call, per_unit), *_ = np.linalg.lstsq(design, np.array(alone), rcond=None)
        steps = np.arange(1, len(rss_steps))
        kept = (np.polyfit(steps, rss_steps[1:], 1)[0] if len(steps) > 2
                else (rss_steps[-1] - rss_steps[0]) / max(1, len(steps)))
        result.update({"subset": picks, "subset_costs": subset_costs.tolist(),
                       "subset_seconds_alone": alone, "seconds_per_call": float(per_call),
                       "seconds_per_cost_unit": float(per_unit), "all_costs": costs.tolist(),
                       "subset_first_call_s": first_calls,
                       "subset_compile_s_each": [f - a for f, a in zip(first_calls, alone)],
                       "rss_after_each_compile_mib": rss_steps,
                       "distinct_shapes": len(set(shapes)),
                       "subset_new_shape": _new_shapes([shapes[picks[int(m[0])]]
                                                        for m in model.members]),
                       "rss_kept_per_compiled_structure_mib": float(kept)})
    return result


def _new_shapes(shapes: list) -> list[bool]:
    """For each shape in order, whether it is the first of its kind (a new compilation)."""
    return [shape not in shapes[:i] for i, shape in enumerate(shapes)]


def compile_one_by_one(model, params) -> tuple[list[float], list[float]]:
    """(seconds of each cluster's first forward + pullback, resident MiB before the first and
    after each): what one more compiled structure costs in time and memory."""
    import jax
    import jax.numpy as jnp

    from reaxopt.model import _cluster_forward, _pullback

    params = jax.tree_util.tree_map(jnp.asarray, params)
    seconds, rss = [], [current_rss_mib()]
    for positions, system in model.batches:
        start = time.perf_counter()
        outputs, vjp = _cluster_forward(positions, system, params, topology=model.topology)
        jax.block_until_ready(_pullback(vjp, jax.tree_util.tree_map(jnp.ones_like, outputs)))
        seconds.append(time.perf_counter() - start)
        del outputs, vjp
        rss.append(current_rss_mib())
    return seconds, rss


def _spawn(name: str, clusters, subset, repeats: int, timeout: float) -> dict:
    """Run one case in a fresh process with a memory cap; its JSON result or its failure."""
    command = [sys.executable, __file__, "--worker", name, "--clusters", str(clusters),
               "--repeats", str(repeats)]
    if subset is not None:
        command += ["--subset", str(subset)]
    limit = MEMORY_LIMIT_GIB * 1024 ** 3

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=cap, env={**os.environ, "REAXOPT_CACHE_DIR": "off"})
    except subprocess.TimeoutExpired:
        return {"failed": f"did not finish within {timeout:.0f} s"}
    if done.returncode != 0:
        return {"failed": f"exit status {done.returncode} after "
                          f"{time.perf_counter() - start:.0f} s (memory cap "
                          f"{MEMORY_LIMIT_GIB} GiB): {done.stderr.strip()[-600:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def extrapolate(per: dict, structures: int) -> dict:
    """One structure per cluster over the whole set, from the subset's measurements. Clusters
    of identical padded shape share one compilation (JAX's cache), so compile time and the
    memory of compiled code scale with the number of distinct shapes."""
    n = len(per["subset"])
    new = [c for c, fresh in zip(per["subset_compile_s_each"], per["subset_new_shape"]) if fresh]
    more_shapes = per["distinct_shapes"] - len(new)
    steady = sum(per["seconds_per_call"] + per["seconds_per_cost_unit"] * c
                 for c in per["all_costs"])
    return {"extrapolated": True, "from_structures": n, "clusters": structures,
            "compilations": per["distinct_shapes"],
            "compile_s": per["compile_s"] + more_shapes * statistics.mean(new),
            "backend_compile_s": per["backend_compile_s"] * per["distinct_shapes"] / len(new),
            "steady_s": steady,
            "peak_rss_mib": per["peak_rss_mib"]
            + more_shapes * max(0.0, per["rss_kept_per_compiled_structure_mib"]),
            "subset_measured": per}


def ratios_over_auto(cases: dict) -> dict:
    """Each case's compile time (both measures), steady time and peak RSS over automatic K's."""
    auto, ratios = cases["auto"], {}
    for label in ("k1", "per_structure"):
        case = cases[label]
        if "failed" in case or "failed" in auto:
            continue
        ratios[label] = {key: case[key] / auto[key]
                         for key in ("compile_s", "backend_compile_s", "steady_s",
                                     "peak_rss_mib") if auto.get(key)}
    return ratios


CASES = ("k1", "auto", "per_structure")


def bench(name: str, subset: int, repeats: int, timeout: float, run: tuple = CASES,
          previous: dict | None = None) -> dict:
    """Every case of one data set: those in ``run`` measured now, the others taken from
    ``previous`` (an earlier result for this data set)."""
    old = (previous or {}).get("cases", {})
    cases = {}
    for label, clusters in (("k1", 1), ("auto", "auto")):
        cases[label] = (_spawn(name, clusters, None, repeats, timeout) if label in run
                        else old.get(label, {"failed": "not run"}))
    if "per_structure" in run:
        per = _spawn(name, "per_structure", subset, repeats, timeout)
        structures = cases["auto"].get("structures") or cases["k1"].get("structures")
        cases["per_structure"] = (per if "failed" in per or structures is None
                                  else extrapolate(per, structures))
    else:
        cases["per_structure"] = old.get("per_structure", {"failed": "not run"})
    return {"dataset": name, "cases": cases, "ratios_over_auto": ratios_over_auto(cases)}


def print_table(results: list[dict]) -> None:
    header = (f"{'dataset':<10} {'case':<14} {'K':>4} {'padded/unpadded':>15} {'compile s':>10} "
              f"{'XLA s':>8} {'steady s':>9} {'peak RSS MiB':>12}")
    print(header)
    print("-" * len(header))
    for r in results:
        for label, case in r["cases"].items():
            if "failed" in case:
                print(f"{r['dataset']:<10} {label:<14} failed: {case['failed'][:80]}")
                continue
            ratio = case.get("padded_over_unpadded")
            mark = " (extrapolated)" if case.get("extrapolated") else ""
            print(f"{r['dataset']:<10} {label:<14} {case['clusters']:>4} "
                  f"{'' if ratio is None else f'{ratio:.3f}':>15} {case['compile_s']:>10.1f} "
                  f"{case['backend_compile_s']:>8.1f} {case['steady_s']:>9.3f} "
                  f"{case['peak_rss_mib']:>12.0f}{mark}")
        for label, ratio in r["ratios_over_auto"].items():
            print(f"{'':<10} {label + '/auto':<14} "
                  + ", ".join(f"{k} x{v:.2f}" for k, v in ratio.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=["cobalt", "disulfide"])
    parser.add_argument("--subset", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds per case")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "batches.json")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES),
                        help="cases to measure; the others are kept from --out if it exists")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--clusters", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        sys.path.insert(0, str(ROOT))
        clusters = args.clusters if args.clusters in ("auto", "per_structure") else int(
            args.clusters)
        subset = args.subset if clusters == "per_structure" else None
        print(json.dumps(worker(args.worker, clusters, subset, args.repeats)))
        return 0
    from reaxopt.io.files import write_text_atomic

    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    earlier = {}
    if set(args.cases) != set(CASES) and args.out.exists():
        earlier = {r["dataset"]: r for r in json.loads(args.out.read_text())["results"]}
    results = []
    for name in args.names:  # the report is rewritten after each data set
        results.append(bench(name, args.subset, args.repeats, args.timeout, tuple(args.cases),
                             earlier.get(name)))
        report = {"platform": platform.platform(), "python": platform.python_version(),
                  "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                  "wall_s": time.perf_counter() - start, "subset": args.subset,
                  "repeats": args.repeats, "results": results}
        write_text_atomic(args.out, json.dumps(report, indent=1) + "\n")
    print_table(results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
