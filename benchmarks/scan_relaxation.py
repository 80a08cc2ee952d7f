"""How reaxopt's relaxations fare on stiff restrained scans (``datasets/scans/``).

    .venv/bin/python benchmarks/scan_relaxation.py                 # both settings, ~2-4 min
    .venv/bin/python benchmarks/scan_relaxation.py --settings default --only ethane_HCCH

Loads ``datasets/scans/scans.yaml`` through the fit's own path (``load_inputs``,
``build_problem``, ``make_relaxer``), relaxes every structure under ``ffield_cho`` as a zero-step
fit would, and reports per structure: converged or not (RMS force below ``minimize.rms_force``),
the final RMS force (ReaxFF plus the restraint), FIRE's steps, the restraint coordinate's
deviation from its target, the relaxed ReaxFF energy minus LAMMPS's at its restrained minimum
(``datasets/scans/lammps_reference.json``), and reaxopt's energy at LAMMPS's geometry minus
LAMMPS's (which should be ~0: it separates the relaxation from the energy); totals: how many of
N end at or above ``rms_force``, the trainset loss at ``ffield_cho`` (~0 if every relaxation
matched LAMMPS), the number of XLA compilations (``jax.monitoring``) and the seconds.

Each setting runs in its own process (compile counts and times from an empty in-memory cache,
no persistent cache): ``default`` is the config as it is (``minimize.steps`` 300, ``rms_force``
0.5, no Newton steps), ``newton`` adds ``minimize: {steps: 1000, newton_steps: 40}``. The JSON
goes to ``benchmarks/results/scan_relaxation.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANS = ROOT / "datasets" / "scans"
SETTINGS = {"default": {}, "newton": {"steps": 1000, "newton_steps": 40}, "steps300": {"steps": 300}}


class Compilations:
    """Counts XLA backend compilations and their seconds (``jax.monitoring``)."""

    def __init__(self):
        import jax

        self.count, self.seconds = 0, 0.0
        self.names: dict[str, int] = {}
        jax.monitoring.register_event_duration_secs_listener(self._record)

    def _record(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1
            self.seconds += duration
            name = str(kwargs.get("fun_name", "?"))
            count, seconds = self.names.get(name, (0, 0.0))
            self.names[name] = (count + 1, round(seconds + duration, 3))


def run_setting(name: str, only: str | None) -> dict:
    """One setting in this process: the per-structure rows and totals."""
    compilations = Compilations()
    import jax.numpy as jnp
    import numpy as np

    import reaxopt.minimize as minimize_module
    from reaxopt.config import load_config
    from reaxopt.fit.problem import build_problem, make_evaluator
    from reaxopt.inputs import load_inputs
    from reaxopt.minimize import place_geometries, restraint_terms
    from reaxopt.relaxation import make_relaxer
    from reaxopt.restraints import restraint_arrays, restraint_values
    from reaxopt.geometry import wrapped_angle

    started = time.perf_counter()
    load_before = os.getloadavg()
    config = load_config(SCANS / "scans.yaml")
    config = dataclasses.replace(config, minimize=dataclasses.replace(config.minimize,
                                                                      **SETTINGS[name]))
    reference = json.loads((SCANS / "lammps_reference.json").read_text())["structures"]
    reference = {r["name"]: r for r in reference}
    inputs = load_inputs(config)
    if only:
        keep = {r for r in reference if fnmatch.fnmatch(r, only) or r.startswith(only)}
        for picked in list(keep):  # with the lowest point of each scan (the items need it)
            scan = reference[picked]["scan"]
            keep.add(min((r for r in reference.values() if r["scan"] == scan),
                         key=lambda r: r["reference"]["energy"])["name"])
        inputs = _subset(inputs, keep)
    problem = build_problem(inputs)

    # what FIRE and the Newton steps return, per relaxation-model row (the fit logs only totals)
    seen: dict = {}
    relax, newton_refine = minimize_module.relax, minimize_module.newton_refine

    def relax_spy(model, params, rows, max_steps, rms_force, *args, **kwargs):
        seen["in_fire"] = True
        try:
            out = relax(model, params, rows, max_steps, rms_force, *args, **kwargs)
        finally:
            seen["in_fire"] = False
        seen["fire_steps"], seen["fire_rms"] = np.asarray(out[1]), np.asarray(out[2])
        seen["fire_model"] = model.names
        return out

    def newton_spy(*args, **kwargs):
        bound = inspect.signature(newton_refine).bind(*args, **kwargs)
        steps: list = []
        on_step = bound.arguments.get("on_step")

        def counted(largest, evaluated):
            steps.append((largest, evaluated))
            if on_step is not None:
                on_step(largest, evaluated)

        bound.arguments["on_step"] = counted
        rows = bound.arguments["rows"]
        out = newton_refine(*bound.args, **bound.kwargs)
        seen["newton_rms"] = {int(k): float(np.asarray(out[1])[k]) for k in rows}
        seen["newton_steps"] = steps
        return out

    rebuild_lists = minimize_module.rebuild_lists
    rebuilds: dict[str, int] = {}  # FIRE's pauses for a list rebuild, per structure

    def rebuild_spy(model, batch, slots, positions):
        for slot in slots if seen.get("in_fire") else ():
            name = model.names[int(model.members[batch][slot])]
            rebuilds[name] = rebuilds.get(name, 0) + 1
        return rebuild_lists(model, batch, slots, positions)

    minimize_module.relax, minimize_module.newton_refine = relax_spy, newton_spy
    minimize_module.rebuild_lists = rebuild_spy
    log_lines: list[str] = []
    try:
        relaxer = make_relaxer(problem, config, log_lines.append)
        theta = np.clip(problem.theta_start, problem.theta_map.lower, problem.theta_map.upper)
        t_relax = time.perf_counter()
        relaxed = relaxer.relaxed(theta, "benchmark")
        relax_seconds = time.perf_counter() - t_relax
    finally:
        minimize_module.relax, minimize_module.newton_refine = relax, newton_refine
        minimize_module.rebuild_lists = rebuild_lists
    evaluate = make_evaluator(problem, config.optimizer.regularization, theta)
    evaluation = evaluate(theta, relaxed)
    compiles_fit_path = (compilations.count, compilations.seconds)
    seconds_fit_path = time.perf_counter() - started

    # per structure: forces with the restraint, the restraint coordinate, energies
    params = problem.theta_map.to_params(jnp.asarray(theta), problem.base_params)
    structures = problem.model_structures
    names = [s.name for s in structures]
    restraints = [s.restraints for s in structures]
    model = dataclasses.replace(relaxed.model, with_forces=True)
    predictions = model.predict(params)
    energy = np.asarray(predictions.energy)
    forces = np.asarray(predictions.forces)
    _, restraint_forces = restraint_terms(model, restraints)
    geometries = relaxed.geometries  # of the minimised rows, in relaxer.minimized order
    at_lammps = place_geometries(dataclasses.replace(problem.model, with_forces=False),
                                 relaxer.minimized,
                                 [(np.asarray(reference[names[k]]["reference"]["positions"]),
                                   np.zeros((3, 3))) for k in relaxer.minimized])
    energy_at_lammps = np.asarray(at_lammps.predict(params).energy)
    fire_row = {n: j for j, n in enumerate(seen["fire_model"])}
    newton_rms = seen.get("newton_rms", {})
    limit = config.minimize.steps
    rows = []
    for j, k in enumerate(relaxer.minimized):
        s = structures[k]
        n = s.n_atoms
        total = forces[k, :n] + restraint_forces[k, :n]
        rms = float(np.sqrt(np.mean(total ** 2)))
        x = np.asarray(geometries[j][0])
        r = s.restraints[0]
        arrays = restraint_arrays([[r]])
        value = float(np.asarray(restraint_values(jnp.asarray(x), jnp.zeros((3, 3)),
                                                  _one(arrays)))[0])
        deviation = value - r.target
        if r.kind == "torsion":
            deviation = math.degrees(float(wrapped_angle(math.radians(deviation))))
        lammps = reference[s.name]["reference"]
        local = fire_row.get(s.name)
        rows.append({
            "name": s.name, "kind": r.kind, "target": r.target,
            "force1": r.force1, "force2": r.force2,
            "converged": rms < config.minimize.rms_force, "rms_force": rms,
            "max_force": float(np.max(np.abs(total))),
            "fire_steps": int(seen["fire_steps"][local]),
            "fire_rms_force": float(seen["fire_rms"][local]),
            "newton_rms_force": (float(newton_rms[local]) if local in newton_rms else None),
            "deviation": deviation, "lammps_deviation": lammps["deviation"],
            # beyond 3 widths of the Gaussian well its force is below e^-9 of its peak
            "restraint_lost": abs(deviation) > 3.0 / math.sqrt(r.force2),
            "list_rebuilds": rebuilds.get(s.name, 0),
            "restraint_energy": float(r.force1 * (1 - math.exp(-r.force2 * deviation ** 2))),
            "energy": float(energy[k]), "energy_minus_lammps": float(energy[k] - lammps["energy"]),
            "energy_at_lammps_geometry_minus_lammps": float(energy_at_lammps[k]
                                                            - lammps["energy"]),
        })
    above = [row for row in rows if not row["converged"]]
    lost = [row for row in rows if row["restraint_lost"]]
    worst = sorted(rows, key=lambda row: -row["rms_force"])[:5]
    kinds = {}
    for kind in ("bond", "angle", "torsion"):
        picked = [row for row in rows if row["kind"] == kind]
        if picked:
            kinds[kind] = {
                "structures": len(picked),
                "above_rms_force": sum(not row["converged"] for row in picked),
                "restraint_lost": sum(row["restraint_lost"] for row in picked),
                "largest_rms_force": max(row["rms_force"] for row in picked),
                "largest_abs_energy_minus_lammps": max(abs(row["energy_minus_lammps"])
                                                       for row in picked),
                "largest_abs_deviation": max(abs(row["deviation"]) for row in picked)}
    return {
        "setting": name,
        "load_average_at_start": load_before,
        "minimize": dataclasses.asdict(config.minimize),
        "structures": len(rows),
        "above_rms_force": len(above),
        "restraint_lost": len(lost),
        "converged_with_restraint_lost": sum(row["converged"] for row in lost),
        "converged_and_within_0.1_of_lammps": sum(
            row["converged"] and abs(row["energy_minus_lammps"]) <= 0.1 for row in rows),
        "worst": [(row["name"], row["rms_force"]) for row in worst],
        "by_kind": kinds,
        "loss": evaluation.data_loss,
        "loss_items": int(len(evaluation.training_residuals)),
        "largest_abs_energy_minus_lammps": max(abs(row["energy_minus_lammps"]) for row in rows),
        "largest_abs_energy_at_lammps_geometry_minus_lammps": max(
            abs(row["energy_at_lammps_geometry_minus_lammps"]) for row in rows),
        "fire_steps_max": max(row["fire_steps"] for row in rows),
        "fire_at_step_limit": sum(row["fire_steps"] >= limit for row in rows),
        "list_rebuilds": sum(rebuilds.values()),
        "newton_steps": len(seen.get("newton_steps", [])),
        "newton_force_constant_evaluations": sum(e for _, e in seen.get("newton_steps", [])),
        "compilations_fit_path": compiles_fit_path[0],
        "compile_seconds_fit_path": round(compiles_fit_path[1], 2),
        "compilations_total": compilations.count,
        "compilations_by_function": {  # name: [count, seconds], the slowest first
            name: list(value) for name, value in sorted(compilations.names.items(),
                                                        key=lambda item: -item[1][1])},
        "seconds_relaxation": round(relax_seconds, 2),
        "seconds_fit_path": round(seconds_fit_path, 2),
        "seconds_total": round(time.perf_counter() - started, 2),
        "log": log_lines,
        "rows": rows,
    }


def _one(arrays):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), arrays)


def _subset(inputs, keep: set):
    """``inputs`` with the training structures and energy items of ``keep`` only."""
    data = inputs.training
    trainset = dataclasses.replace(data.trainset, energy=tuple(
        item for item in data.trainset.energy if all(term.name in keep for term in item.terms)))
    return dataclasses.replace(inputs, training=dataclasses.replace(
        data, geometries=[s for s in data.geometries if s.name in keep], trainset=trainset))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", choices=["both", *SETTINGS], default="both")
    parser.add_argument("--only", default=None,
                        help="structures whose name starts with (or matches) this")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"
                                             / "scan_relaxation.json"))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    if args.one:
        result = run_setting(args.one, args.only)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        return
    names = list(SETTINGS) if args.settings == "both" else [args.settings]
    results = []
    for name in names:
        part = Path(args.out).with_suffix(f".{name}.part.json")
        command = [sys.executable, __file__, "--one", name, "--out", str(part)]
        if args.only:
            command += ["--only", args.only]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        subprocess.run(command, check=True, env=env)
        results.append(json.loads(part.read_text()))
        r = results[-1]
        print(f"{name}: {r['above_rms_force']} of {r['structures']} above rms_force "
              f"{r['minimize']['rms_force']}, {r['restraint_lost']} lost their restraint; "
              f"worst {r['worst'][:3]}; loss {r['loss']:.4g}; "
              f"largest |E - E_lammps| {r['largest_abs_energy_minus_lammps']:.3g}; "
              f"{r['compilations_fit_path']} compilations; relaxation "
              f"{r['seconds_relaxation']} s, fit path {r['seconds_fit_path']} s", flush=True)
    import jax

    for name in names:
        Path(args.out).with_suffix(f".{name}.part.json").unlink()
    out = {
        "description": "reaxopt relaxations of datasets/scans (restrained scans) under "
                       "ffield_cho vs LAMMPS restrained minima (benchmarks/scan_relaxation.py)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg(),
                    "jax": jax.__version__, "python": platform.python_version()},
        "only": args.only,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
