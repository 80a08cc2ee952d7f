"""Issue 7's table in one run: every row measured for reaxopt, next to JAX-ReaxFF's numbers.

Rows (the published cobalt and disulfide sets from ../shared/datasets, configs/<name>.yaml,
the fit's own loss with its clustering; each measurement in its own process so that its peak
RSS and its compiled code are its own):

* loss_grad: the fit's loss + parameter gradient over the training set (``reaxopt.fit``'s
  evaluator, automatic K): host build (lists, clustering), the first evaluation (compile),
  XLA's backend-compile seconds, steady state (median of --repeats at other parameters), one
  optimizer evaluation as the driver makes it (its evaluator call, host side included; the
  lists are built once per outer step, not per evaluation), peak RSS. Cobalt runs twice with
  one fresh persistent compilation cache directory: cold, then warm (a second run).
* minimize: cobalt's FIRE relaxation of every structure its geo marks (the fit's
  ``reaxopt.minimize.relax``, 100 steps at most): first call (compile) and a second one from
  the input geometry; seconds per FIRE step = second call / the most steps any structure took.
  Twice: batch by batch (``minimize``) and packed (``minimize_packed``, the fit's path, the
  table's row).
* relaxation: one relaxation of disulfide87.yaml's minimised structures as its fit makes
  them (``reaxopt.relaxation.make_relaxer``: FIRE to RMS force 0.05 in up to 300 steps, then
  up to 40 Newton steps, then the geometry response), under ffield_lit: first call (compile)
  and a second one (parameters moved by 1e-9, steady state), with the relaxer's log line
  (distinct structures, Newton steps, force-constant evaluations).
* energy_forces: energy + forces of all 147 cobalt structures, packed (``Model.predict``,
  steady state), against LAMMPS one structure at a time in this machine (tests/lammps_oracle).
* readme_fit: JAX-ReaxFF's README fit of cobalt, 20 outer steps of L-BFGS-B with up to 200
  minimisation steps, run whole (``reaxopt fit``, benchmarks/bench_fit.py; its wall time: start,
  compile, steps, final evaluation and outputs). With --fit-steps below 20, the missing steps
  are projected at the run's mean outer-step time.

Writes benchmarks/results/performance.json and prints the table.

    python benchmarks/bench_performance.py [--rows loss_grad minimize relaxation energy_forces
        readme_fit]
        [--repeats 3] [--fit-steps 20] [--out benchmarks/results/performance.json]
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

import yaml

from bench_batches import (CompileClock, current_rss_mib, fit_case,  # (beside this script)
                           steady_seconds)
from bench_energy import max_rss_mib

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"

JAX_REAXFF = {  # issue 7: JAX-ReaxFF 0.4.30 (float64) on 2 cores, 24 GiB, no GPU
    "cobalt_steady_s": 1.38, "cobalt_driver_evaluation_s": 3.4, "cobalt_compile_cold_s": 83.0,
    "cobalt_compile_warm_s": None, "disulfide_compile_s": 613.0, "cobalt_peak_gib": 4.07,
    "disulfide_peak_gib": 3.38, "cobalt_readme_fit_s": 4.5 * 3600,
    "cobalt_minimize_step_s": 1.1, "cobalt_energy_forces_s": None}
TARGETS = {
    "cobalt_steady_s": 0.14, "cobalt_driver_evaluation_s": 0.2, "cobalt_compile_cold_s": 15.0,
    "cobalt_compile_warm_s": 2.0, "disulfide_compile_s": 60.0, "cobalt_peak_gib": 1.0,
    "disulfide_peak_gib": 1.0, "cobalt_readme_fit_s": 900.0, "cobalt_minimize_step_s": 0.05,
    "cobalt_energy_forces_s": 0.7}


# ------------------------------------------------------------------------------ workers


def backend() -> dict:
    """Which JAX backend and device this worker ran on (cpu, or the GPU's kind)."""
    import jax

    device = jax.devices()[0]
    return {"backend": jax.default_backend(), "device": getattr(device, "device_kind", str(device)),
            "jax": jax.__version__}


def loss_grad_worker(name: str, repeats: int) -> dict:
    """The fit's loss + gradient of ``name`` in this process."""
    import numpy as np

    import reaxopt  # noqa: F401  (x64)
    from reaxopt.cli import _compilation_cache

    _compilation_cache()
    clock = CompileClock()
    start = time.perf_counter()
    model, run, theta0, tmap = fit_case(name, "auto", packed=True)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    run(theta0)
    first_s = time.perf_counter() - start
    compiled_s, compilations = clock.seconds, clock.count
    steady, times = steady_seconds(run, theta0, tmap, repeats)
    return {"clusters": len(model.batches), "structures": model.n_structures,
            "build_s": build_s, "first_evaluation_s": first_s, "compile_s": first_s - steady,
            "backend_compile_s": compiled_s, "backend_compilations": compilations,
            "steady_s": steady, "steady_all_s": times, "peak_rss_mib": max_rss_mib(),
            **backend()}


def minimize_worker(name: str, packed: bool = False) -> dict:
    """The fit's relaxation of every structure ``name``'s geo marks, twice (``packed``: as one
    packed system, as fits do; else batch by batch)."""
    import jax
    import numpy as np

    import reaxopt  # noqa: F401  (x64)
    from bench_batches import _inputs
    from reaxopt.cli import _compilation_cache
    from reaxopt.fit import build_problem
    from reaxopt.minimize import relax
    from reaxopt.model import ModelOptions

    _compilation_cache()
    inputs, tmap = _inputs(name)
    problem = build_problem(inputs, ModelOptions(clusters="auto", packed=packed))
    structures = problem.model_structures
    limits = [s.max_iterations if s.max_iterations is not None else 100 for s in structures]
    rows = [k for k, s in enumerate(structures) if s.run_type != "single_point" and limits[k]]
    cells = [k for k in rows if structures[k].run_type == "cell_opt"]
    params = problem.base_params
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        model, steps, rms = relax(problem.model, params, rows, limits, 0.5, cells)
        jax.block_until_ready(model.batches[0][0])
        timings.append(time.perf_counter() - start)
    most = int(np.max(steps[rows]))
    return {"structures": len(rows), "cell_structures": len(cells),
            "first_call_s": timings[0], "second_call_s": timings[1], "most_steps": most,
            "mean_steps": float(np.mean(steps[rows])),
            "seconds_per_step": timings[1] / max(most, 1), "peak_rss_mib": max_rss_mib(),
            **backend()}


def relaxation_worker(name: str) -> dict:
    """One relaxation of configs/``name``.yaml's minimised structures as its fit makes them,
    twice (the second under parameters moved by 1e-9: the relaxer does not recall it)."""
    import numpy as np

    import reaxopt  # noqa: F401  (x64)
    from reaxopt.cli import _compilation_cache
    from reaxopt.config import load_config
    from reaxopt.fit import build_problem
    from reaxopt.inputs import load_inputs
    from reaxopt.relaxation import make_relaxer

    _compilation_cache()
    config = load_config(ROOT / "configs" / f"{name}.yaml")
    problem = build_problem(load_inputs(config))
    lines: list[str] = []
    relaxer = make_relaxer(problem, config, lines.append)
    theta = np.clip(problem.theta_start, problem.theta_map.lower, problem.theta_map.upper)
    timings = []
    for shift in (0.0, 1e-9):
        start = time.perf_counter()
        relaxer.relaxed(theta + shift, f"call {len(timings) + 1}")
        timings.append(time.perf_counter() - start)
    return {"structures": len(relaxer.minimized), "first_call_s": timings[0],
            "second_call_s": timings[1], "log": lines, "peak_rss_mib": max_rss_mib(),
            **backend()}


def energy_forces_worker(name: str, repeats: int) -> dict:
    """Batched energy + forces of every structure of ``name``'s geo vs LAMMPS one by one."""
    import jax
    import numpy as np

    import reaxopt  # noqa: F401  (x64)
    from lammps_oracle import lammps_evaluate
    from reaxopt.cli import _compilation_cache
    from reaxopt.forcefield import build_forcefield
    from reaxopt.io.ffield import read_ffield
    from reaxopt.io.geometry import read_geometries
    from reaxopt.model import ModelOptions, build_model

    _compilation_cache()
    path = SHARED / name / "ffield_lit"
    structures = read_geometries(SHARED / name / "geo")
    params, topology = build_forcefield(read_ffield(path))
    start = time.perf_counter()
    model = build_model(structures, params, topology, ModelOptions(packed=True))
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(model.predict(params).forces)
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(model.predict(params).forces)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    for s in structures:
        lammps_evaluate(path, s.symbols, s.positions, s.cell, qeq_tolerance=1e-6, maxiter=200)
    lammps_s = time.perf_counter() - start
    return {"structures": len(structures), "clusters": len(model.batches), "build_s": build_s,
            "first_call_s": first_s, "steady_s": statistics.median(times),
            "lammps_s": lammps_s, "lammps_over_reaxopt": lammps_s / statistics.median(times),
            "peak_rss_mib": max_rss_mib()}


WORKERS = {"loss_grad": loss_grad_worker, "minimize": minimize_worker,
           "minimize_packed": lambda name: minimize_worker(name, packed=True),
           "relaxation": relaxation_worker, "energy_forces": energy_forces_worker}


def spawn(kind: str, name: str, repeats: int, cache_dir: str) -> dict:
    """One worker in a fresh process with ``cache_dir`` as its persistent compilation cache."""
    command = [sys.executable, __file__, "--worker", kind, name, "--repeats", str(repeats)]
    env = {**os.environ, "REAXOPT_CACHE_DIR": cache_dir}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"failed": f"exit status {done.returncode} after "
                          f"{time.perf_counter() - start:.0f} s: {done.stderr.strip()[-800:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def readme_fit(steps: int, work: Path) -> dict:
    """``steps`` outer steps of JAX-ReaxFF's README cobalt fit; 20 projected."""
    import bench_fit

    args = argparse.Namespace(clusters="auto", max_iterations=100)
    out_dir = work / "cobalt_readme_fit"
    config = bench_fit.run_config("cobalt", "ffield_lit", steps, args, out_dir)
    settings = yaml.safe_load(config.read_text())
    settings.setdefault("minimize", {})["steps"] = 200
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    cache = tempfile.mkdtemp(prefix="cache_", dir=work)
    process = bench_fit.run_fit_process(config, work / "cobalt_readme_fit.log", cache)
    if process["returncode"] != 0:
        return {"failed": f"reaxopt fit exit status {process['returncode']}"}
    run = bench_fit.parse_run(out_dir)
    per_step = statistics.mean(run["outer_step_seconds"])
    return {**process, **run, "outer_steps_run": steps, "mean_outer_step_s": per_step,
            "projected_20_steps_s": run["wall_seconds"] + (20 - steps) * per_step}


# ------------------------------------------------------------------------------ table


def table(results: dict) -> list[tuple]:
    """(row, JAX-ReaxFF, target, reaxopt) for the README."""
    get = lambda *keys: _dig(results, keys)  # noqa: E731
    gib = lambda mib: None if mib is None else mib / 1024.0  # noqa: E731
    ours = {
        "cobalt_steady_s": get("cobalt", "loss_grad_cold", "steady_s"),
        "cobalt_driver_evaluation_s": get("cobalt", "loss_grad_cold", "steady_s"),
        "cobalt_compile_cold_s": get("cobalt", "loss_grad_cold", "compile_s"),
        "cobalt_compile_warm_s": get("cobalt", "loss_grad_warm", "compile_s"),
        "disulfide_compile_s": get("disulfide", "loss_grad_cold", "compile_s"),
        "cobalt_peak_gib": gib(get("cobalt", "loss_grad_cold", "peak_rss_mib")),
        "disulfide_peak_gib": gib(get("disulfide", "loss_grad_cold", "peak_rss_mib")),
        "cobalt_readme_fit_s": get("cobalt", "readme_fit", "projected_20_steps_s"),
        "cobalt_minimize_step_s": get("cobalt", "minimize_packed", "seconds_per_step"),
        "cobalt_energy_forces_s": get("cobalt", "energy_forces", "steady_s"),
    }
    return [(key, JAX_REAXFF[key], TARGETS[key], ours[key]) for key in TARGETS]


def _dig(tree, keys):
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+",
                        default=["loss_grad", "minimize", "relaxation", "energy_forces",
                                 "readme_fit"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "reaxopt_bench_performance")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "performance.json")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, name = args.worker
        result = (WORKERS[kind](name) if kind.startswith(("minimize", "relaxation"))
                  else WORKERS[kind](name, args.repeats))
        print(json.dumps(result))
        return 0

    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(),
                          "load_average_at_start": os.getloadavg()}
    results["jax_reaxff"], results["targets"] = JAX_REAXFF, TARGETS

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        results["table"] = table(results)
        args.out.write_text(json.dumps(results, indent=1) + "\n")

    def record(name, key, value):
        results.setdefault(name, {})[key] = value
        print(f"{name} {key}: {json.dumps(value)[:600]}", flush=True)
        save()

    if "loss_grad" in args.rows:
        cache = tempfile.mkdtemp(prefix="cache_", dir=args.work)
        record("cobalt", "loss_grad_cold", spawn("loss_grad", "cobalt", args.repeats, cache))
        record("cobalt", "loss_grad_warm", spawn("loss_grad", "cobalt", args.repeats, cache))
        cache = tempfile.mkdtemp(prefix="cache_", dir=args.work)
        record("disulfide", "loss_grad_cold", spawn("loss_grad", "disulfide", args.repeats,
                                                    cache))
    if "minimize" in args.rows:
        cache = tempfile.mkdtemp(prefix="cache_", dir=args.work)
        record("cobalt", "minimize", spawn("minimize", "cobalt", args.repeats, cache))
        cache = tempfile.mkdtemp(prefix="cache_", dir=args.work)
        record("cobalt", "minimize_packed", spawn("minimize_packed", "cobalt", args.repeats,
                                                  cache))
    if "relaxation" in args.rows:
        cache = tempfile.mkdtemp(prefix="cache_", dir=args.work)
        record("disulfide87", "relaxation", spawn("relaxation", "disulfide87", args.repeats,
                                                  cache))
    if "energy_forces" in args.rows:
        cache = tempfile.mkdtemp(prefix="cache_", dir=args.work)
        record("cobalt", "energy_forces", spawn("energy_forces", "cobalt", args.repeats, cache))
    if "readme_fit" in args.rows:
        record("cobalt", "readme_fit", readme_fit(args.fit_steps, args.work))
    save()
    print(f"{'row':28s} {'JAX-ReaxFF':>11s} {'target':>8s} {'reaxopt':>9s}")
    for key, theirs, target, ours in results["table"]:
        show = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        print(f"{key:28s} {show(theirs):>11s} {show(target):>8s} {show(ours):>9s}")
    print(f"wrote {args.out} ({time.strftime('%H:%M:%S')}, RSS {current_rss_mib():.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
