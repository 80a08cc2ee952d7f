"""The fitting driver on a small subset of the quickstart data: 14 structures, 5 parameters.

Every run here shares one compiled loss and gradient (same structures, same shapes), so the
module pays for one compilation.
"""

import csv
import dataclasses
import functools
import io
import json
import math
import os
import re
import signal
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.optimize

import reaxopt  # noqa: F401  (float64)
from reaxopt.config import DataFiles, load_config
from reaxopt.fit import (BAD_LOSS, Evaluation, FitInterrupted, RunLog, build_problem,
                         make_evaluator, optimizer_message, run_fit, trust_update)
from reaxopt.fit.problem import make_scorer
from reaxopt.fit.local import local_step
from reaxopt.fit.starts import random_search
from reaxopt.relaxation import Relaxed
from reaxopt.inputs import load_inputs
from reaxopt.io.ffield import read_ffield
from reaxopt.io.params import get_value
from reaxopt.report.outputs import HISTORY_COLUMNS, REPORT_COLUMNS

# the parameter sensitivity every fit reports has its own tests (test_sensitivity.py)
run_fit = functools.partial(run_fit, sensitivity=False)

ROOT = Path(__file__).resolve().parents[1]
CHO = ROOT / "datasets" / "cho"
FAMILIES = (("water_stretch_OH", 5), ("water_angle_HOH", 4), ("methane_stretch_CH", 3))
LONG_STRETCH = ("formaldehyde_stretch_CO", 3, 2)  # family, first member, count
PARAMS = ("bond H-O De_s", "bond H-O p_bo1", "bond H-O p_bo2", "angle H-O-H theta_00",
          "angle H-O-H p_val1")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """A config over 14 small structures (a quarter held out, one minimised) and 5 O-H
    parameters."""
    from ase.io import read, write

    folder = tmp_path_factory.mktemp("fit")
    frames = read(CHO / "cho.extxyz", ":")
    picked = []
    for family, n in FAMILIES:
        members = [a for a in frames if a.info["family"] == family]
        picked += members[::2][:n]
    # formaldehyde with its C-O bond stretched to 1.32 and 1.44 Å: its O...H pairs (2.12 and
    # 2.23 Å) cross LAMMPS's bond-order cutoff as the H-O bond's p_bo2 rises from 5.05 to 5.5
    # and 5.15, so the fit meets bond-order thresholds
    family, first, n = LONG_STRETCH
    picked[-1:-1] = [a for a in frames if a.info["family"] == family][first:first + n]
    # one structure asks for a geometry optimisation (FIRE, at most 300 steps)
    picked[-1].info.update(run_type="minimize", max_iterations=300)
    write(folder / "small.extxyz", picked, format="extxyz")
    lines = [line for line in (CHO / "params").read_text().splitlines()
             if any(line.rstrip().endswith(f"! {label}") or f"! {label} " in line
                    for label in PARAMS)]
    assert len(lines) == 5
    (folder / "params").write_text("\n".join(lines) + "\n")
    (folder / "fit.yaml").write_text(f"""\
force_field: {CHO / 'ffield_cho'}
params: params
structures:
  - path: small.extxyz
    energy_unit: kcal/mol
    weight_forces: 0.05
validation:
  fraction: 0.25
  seed: 0
output_dir: out
optimizer:
  steps: 2
  max_iterations: 4
minimize:
  carry: true
""")
    return load_config(folder / "fit.yaml")


def _with(config, output_dir, **optimizer):
    return dataclasses.replace(config, output_dir=Path(output_dir),
                               optimizer=dataclasses.replace(config.optimizer, **optimizer))


class _Terminal(io.StringIO):
    """A progress stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def terminal():
    return _Terminal()


@pytest.fixture(scope="module")
def uninterrupted(config, tmp_path_factory, terminal):
    return run_fit(_with(config, tmp_path_factory.mktemp("a")), stream=terminal)


def test_a_terminal_shows_a_progress_bar_below_the_lines(uninterrupted, terminal):
    shown = terminal.getvalue()
    logged = (uninterrupted.output_dir / "run.log").read_text()
    # every log line reaches the terminal, in order; the bar never reaches run.log
    position = 0
    for line in logged.splitlines():
        position = shown.index(line, position) + len(line)
    assert "\r" not in logged and "fit:" not in logged and "\r" in shown
    # the bar counts the outer steps (1 trial x 2 steps) and says where the fit is
    assert re.search(r"fit:  50%.*\| 1/2 .*trial 1 step 2 iter 1 loss [0-9.e+]+ best", shown)
    assert re.search(r"fit: 100%.*\| 2/2 ", shown)
    # a stream that is not a terminal (a Slurm output file) gets the lines alone
    lines = io.StringIO()
    log = RunLog(None, lines)
    log.start_bar(2, 0)
    log("a line")
    log.progress(1, "status")
    log.close_bar(2)
    assert lines.getvalue() == "a line\n"


def test_fit_lowers_the_loss_and_writes_outputs(uninterrupted, config):
    out, summary = uninterrupted.output_dir, uninterrupted.summary
    # the optimizer lowered the training loss; the best force field (chosen on validation)
    # is no worse on validation than the start
    with open(out / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert min(float(h["loss"]) for h in history) < 0.9 * summary["loss"]["initial"]
    assert summary["validation_loss"]["final"] <= summary["validation_loss"]["initial"]
    for name in ("ffield", "report.csv", "report.txt", "history.csv", "summary.json",
                 "config.yaml", "run.log", "checkpoint.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text()) == summary
    for part in ("training", "validation"):
        rmse = summary[part]["rmse"]
        assert set(rmse) == {"energy", "forces", "charge", "geometry", "cell", "heatfo"}
        assert all(set(v) == {"initial", "fitted"} for v in rmse.values())
        assert rmse["energy"]["initial"] > 0 and rmse["forces"]["fitted"] > 0
        assert rmse["charge"] == {"initial": None, "fitted": None}
    assert summary["wall_seconds"] > summary["compile_seconds"] > 0
    with open(out / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == REPORT_COLUMNS
    assert {r["set"] for r in rows} == {"training", "validation"}
    # contribution = scale * (fitted - reference)^2 for these items (no angles)
    for r in rows[:5]:
        assert float(r["contribution"]) == pytest.approx(
            float(r["scale"]) * (float(r["fitted"]) - float(r["reference"])) ** 2, rel=1e-6)
    assert tuple(history[0]) == HISTORY_COLUMNS and len(history) >= 3
    # the resolved config reads back
    assert load_config(out / "config.yaml").optimizer == config.optimizer


def test_written_ffield_reloads_with_the_fitted_values(uninterrupted, config):
    ff = read_ffield(uninterrupted.output_dir / "ffield")
    inputs = load_inputs(config)
    fitted = [p["fitted"] for p in uninterrupted.summary["parameters"]]
    assert [get_value(ff, spec) for spec in inputs.params] == pytest.approx(fitted, rel=1e-9)
    assert fitted != pytest.approx([p["initial"] for p in uninterrupted.summary["parameters"]])


def test_lammps_reproduces_the_fitted_energy_difference(uninterrupted, config):
    from lammps_oracle import lammps_evaluate

    with open(uninterrupted.output_dir / "report.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["kind"] == "energy")
    first, second = row["item"].split(" - ")
    structures = {s.name: s for s in load_inputs(config).training.structures}
    energies = [lammps_evaluate(uninterrupted.output_dir / "ffield", structures[n].symbols,
                                structures[n].positions)["energy"] for n in (first, second)]
    assert energies[0] - energies[1] == pytest.approx(float(row["fitted"]), abs=1e-5)


def test_gradient_matches_central_differences(config):
    problem = build_problem(load_inputs(config))
    assert problem.model.with_forces  # the config fits forces
    theta0 = np.clip(problem.theta_start, problem.theta_map.lower, problem.theta_map.upper)
    evaluate = make_evaluator(problem, 0.0, theta0)
    gradient = evaluate(theta0).gradient
    span = problem.theta_map.upper - problem.theta_map.lower
    for k in (0, 2, 4):
        h = 1e-5 * span[k]
        plus, minus = theta0.copy(), theta0.copy()
        plus[k] += h
        minus[k] -= h
        numeric = (evaluate(plus).loss - evaluate(minus).loss) / (2 * h)
        assert gradient[k] == pytest.approx(numeric, rel=1e-5, abs=1e-6 * abs(numeric) + 1e-8)


def test_scorer_gives_the_evaluators_loss(config):
    """The global stage's value-only loss equals the evaluator's, with regularization, at two
    points; a non-finite loss scores inf."""
    problem = build_problem(load_inputs(config))
    lower, upper = problem.theta_map.lower, problem.theta_map.upper
    theta0 = np.clip(problem.theta_start, lower, upper)
    evaluate = make_evaluator(problem, 0.3, theta0)
    score = make_scorer(problem, 0.3, theta0)
    for theta in (theta0, lower + 0.37 * (upper - lower)):
        expected = evaluate(theta).loss
        assert score(theta) == pytest.approx(expected, rel=1e-10)
    assert score(np.full_like(theta0, np.nan)) == np.inf


def test_minimised_structure_is_relaxed_for_the_loss(config):
    from reaxopt.minimize import relax

    problem = build_problem(load_inputs(config))
    row = next(k for k, s in enumerate(problem.model_structures) if s.run_type == "minimize")
    n = problem.model.n_structures
    relaxed, steps, rms = relax(problem.model, problem.base_params, [row], [300] * n, 0.5)
    assert rms[row] < 0.5 and 0 < steps[row] < 300
    assert steps.sum() == steps[row]
    shifts = [np.abs(np.asarray(old[0]) - np.asarray(new[0])).max(axis=(1, 2))
              for old, new in zip(problem.model.batches, relaxed.batches)]
    moved = np.concatenate(shifts)
    assert np.sum(moved > 0) == 1 and moved.max() > 0.01
    # the loss sees the relaxed geometry: its force items give FIRE's final RMS force
    theta0 = np.clip(problem.theta_start, problem.theta_map.lower, problem.theta_map.upper)
    ev = make_evaluator(problem, 0.0, theta0)(theta0, Relaxed(relaxed))
    name = problem.names[row].split(":", 1)[1]
    label = "training" if problem.names[row].startswith("training") else "validation"
    info = problem.training_info if label == "training" else problem.validation_info
    residuals = ev.training_residuals if label == "training" else ev.validation_residuals
    computed = [i.reference + r for i, r in zip(info, residuals)
                if i.kind == "forces" and i.structures == (name,)]
    assert np.sqrt(np.mean(np.square(computed))) == pytest.approx(rms[row], rel=1e-6)

    # the fit relaxes such structures in a model of their own and places them back: the same
    # geometry and energy as relaxing them in place (lists rebuilt where atoms moved)
    from reaxopt.minimize import geometries, place_geometries
    from reaxopt.model import build_model

    alone = build_model([problem.model_structures[row]], problem.base_params,
                        problem.model.topology)
    alone, _, rms_alone = relax(alone, problem.base_params, [0], [300], 0.5)
    assert rms_alone[0] == pytest.approx(rms[row], rel=1e-6)
    placed = place_geometries(problem.model, [row], geometries(alone))
    apart, in_place = placed.predict(problem.base_params), relaxed.predict(problem.base_params)
    np.testing.assert_allclose(apart.positions[row], in_place.positions[row], atol=1e-9)
    assert float(apart.energy[row]) == pytest.approx(float(in_place.energy[row]), rel=1e-10)
    # lists (and their anchors) rebuilt only if an atom left the skin's reach
    c, slot = next((c, list(m).index(row)) for c, m in enumerate(placed.members) if row in m)
    n_row = problem.model.n_atoms[row]
    start = np.asarray(problem.model.anchors[c][slot, :n_row])
    moved = np.linalg.norm(np.asarray(placed.batches[c][0][slot, :n_row]) - start, axis=1).max()
    expected = placed.batches[c][0][slot] if moved > 0.5 * placed.skins[row] else start
    np.testing.assert_array_equal(np.asarray(placed.anchors[c][slot, :n_row]),
                                  np.asarray(expected)[:n_row])


def test_relaxer_carries_geometries_and_remembers_recent_relaxations(config):
    from reaxopt.relaxation import REMEMBERED, make_relaxer

    problem = build_problem(load_inputs(config))
    lines: list[str] = []
    relaxer = make_relaxer(problem, config, lines.append)
    row = next(k for k, s in enumerate(problem.model_structures) if s.run_type == "minimize")
    assert relaxer.minimized == [row]
    theta0 = np.clip(problem.theta_start, problem.theta_map.lower, problem.theta_map.upper)
    first = relaxer.relaxed(theta0, "a")
    assert len(lines) == 1 and lines[0].startswith("relaxed 1 structures (a) in")
    # asked again, by parameters or by the geometry it holds: the same relaxation, no work
    assert relaxer.relaxed(theta0, "b") is first
    assert relaxer.placed(theta0, first.geometries, "c") is first
    assert len(lines) == 1
    (x, cell), = first.geometries
    np.testing.assert_array_equal(np.asarray(first.model.predict(problem.base_params)
                                             .positions[row, :len(x)]), x)
    # a relaxation from carried geometries starts there: the relaxed molecule moved rigidly
    # by 0.3 Å feels the same (converged) forces, so FIRE takes no step and leaves it there
    moved = ((x + np.array([0.3, -0.2, 0.1]), cell),)
    carried = relaxer.relaxed(theta0, "d", start=moved)
    assert "from the carried geometries" in lines[-1] and "up to 0 steps" in lines[-1]
    np.testing.assert_array_equal(carried.geometries[0][0], moved[0][0])
    # placed under other parameters: not relaxed, the geometry as given (no geometry item
    # measures it, so there is no response to compute: tests/test_response.py covers that)
    other = theta0 + 0.01 * (problem.theta_map.upper - problem.theta_map.lower)
    placed = relaxer.placed(other, first.geometries, "e")
    assert lines[-1].startswith("placed 1 carried geometries (e) in")
    assert placed is not first and placed.response is None
    np.testing.assert_array_equal(placed.geometries[0][0], x)
    # the loss's packed system holds the bond-order gates of the parameters it was placed or
    # relaxed under (reaxopt.energy.gates), recorded at its positions
    from reaxopt.packed import gated

    for relaxed_at, theta in ((first, theta0), (placed, other)):
        packed = relaxed_at.model.packed
        params = problem.theta_map.to_params(theta, problem.base_params)
        expected = gated(dataclasses.replace(packed, gates=None), params, problem.model.topology)
        assert packed.gates is not None
        for held, recorded in zip(jax.tree_util.tree_leaves(packed.gates),
                                  jax.tree_util.tree_leaves(expected.gates)):
            np.testing.assert_array_equal(np.asarray(held), np.asarray(recorded))
    # the least recently used go first: after enough others, the first is relaxed again
    for k in range(REMEMBERED):
        relaxer.relaxed(theta0 + 1e-3 * (k + 1), f"filler {k}")
    count = len(lines)
    relaxer.relaxed(theta0, "f")
    assert len(lines) == count + 1 and lines[-1].startswith("relaxed 1 structures (f)")


def test_newton_steps_finish_relaxations_stopped_at_their_step_limit(config):
    """minimize.steps 3 stops FIRE far from the minimum; newton_steps finish the job."""
    from reaxopt.minimize import restraint_terms
    from reaxopt.relaxation import make_relaxer
    from reaxopt.structure import Restraint

    problem = build_problem(load_inputs(config))
    theta0 = np.clip(problem.theta_start, problem.theta_map.lower, problem.theta_map.upper)
    rms = {}
    for newton in (0, 8):
        lines: list[str] = []
        run = dataclasses.replace(config, minimize=dataclasses.replace(
            config.minimize, steps=3, newton_steps=newton))
        # with a bond restraint, which FIRE and the Newton steps add to ReaxFF's forces
        restraints = [[Restraint("bond", (0, 1), 1.3, 500.0, 1.0)]
                      if s.run_type == "minimize" else [] for s in problem.model_structures]
        relaxed = make_relaxer(dataclasses.replace(problem, model_structures=[
            dataclasses.replace(s, max_iterations=None, restraints=r)
            for s, r in zip(problem.model_structures, restraints)]), run,
            lines.append).relaxed(theta0, "a")
        row = next(k for k, s in enumerate(problem.model_structures)
                   if s.run_type == "minimize")
        predictions = relaxed.model.predict(problem.base_params)
        n = int(np.sum(predictions.atom_mask[row]))
        pulled = restraint_terms(relaxed.model, restraints)[1][row, :n]
        assert np.max(np.abs(pulled)) > 1.0
        total = np.asarray(predictions.forces[row, :n]) + pulled
        rms[newton] = float(np.sqrt(np.mean(total ** 2)))
        assert ("force-constant evaluations) for 1 " in lines[0]) == bool(newton), lines[0]
        # a restrained structure responds to the parameters (its energy moves with x*)
        assert list(np.asarray(relaxed.response.rows)) == [row]
    assert rms[0] > config.minimize.rms_force > rms[8]


def test_identical_structures_relax_once_and_share_geometry_and_response(config, tmp_path):
    """A molecule in both the training and the validation set relaxes once: both model rows get
    that one relaxation's geometry and response, the same as the molecule relaxed alone."""
    from ase.io import read, write

    from reaxopt.relaxation import make_relaxer
    from reaxopt.structure import Restraint

    folder = config.path.parent
    minimized = read(folder / "small.extxyz", ":")[-1]
    assert minimized.info["run_type"] == "minimize"
    write(tmp_path / "copy.extxyz", [minimized], format="extxyz")
    alone = dataclasses.replace(config, split=None)
    both = dataclasses.replace(alone, validation=DataFiles(structures=(dataclasses.replace(
        config.training.structures[0], path=tmp_path / "copy.extxyz"),)))
    relaxed, logs = {}, {}
    for label, run in (("both", both), ("alone", alone)):
        problem = build_problem(load_inputs(run))
        # the same restraint on every copy: restrained structures respond to the parameters
        problem = dataclasses.replace(problem, model_structures=[
            dataclasses.replace(s, restraints=[Restraint("bond", (0, 1), 1.3, 500.0, 1.0)]
                                if s.run_type == "minimize" else [])
            for s in problem.model_structures])
        rows = [k for k, s in enumerate(problem.model_structures) if s.run_type == "minimize"]
        theta0 = np.clip(problem.theta_start, problem.theta_map.lower, problem.theta_map.upper)
        logs[label] = []
        relaxed[label] = (rows, make_relaxer(problem, run, logs[label].append).relaxed(
            theta0, "a"))
    rows, both_relaxed = relaxed["both"]
    assert len(rows) == 2 and logs["both"][0].startswith(
        "relaxed 1 structures (a; 1 identical copies share these)")
    assert logs["alone"][0].startswith("relaxed 1 structures (a) in ")
    (_,), alone_relaxed = relaxed["alone"]  # one minimised row
    expected = alone_relaxed.geometries[0][0]
    assert len(both_relaxed.geometries) == 2
    for positions, _ in both_relaxed.geometries:
        np.testing.assert_allclose(positions, expected, atol=1e-10)
    response, single = both_relaxed.response, alone_relaxed.response
    assert sorted(np.asarray(response.rows).tolist()) == rows
    n = 3 * len(expected)
    for j in range(2):
        np.testing.assert_allclose(np.asarray(response.inverse_force_constants[j, :n, :n]),
                                   np.asarray(single.inverse_force_constants[0, :n, :n]),
                                   atol=1e-10)
        np.testing.assert_allclose(np.asarray(response.start_forces[j, :n // 3]),
                                   np.asarray(single.start_forces[0, :n // 3]), atol=1e-10)


def test_fit_log_reports_the_relaxation(uninterrupted):
    log = (uninterrupted.output_dir / "run.log").read_text()
    assert "relaxed 1 structures (starting force field)" in log
    # relaxed again at each step's end under its parameters (the step-end evaluation, and the
    # geometry the next step starts from), from the geometry relaxed at the step's start: the
    # structure the fitted parameters barely move needs no step from there (43 from the input)
    import re

    assert re.search(r"relaxed 1 structures \(starting force field\) in [\d.]+ s: up to 43 steps"
                     r".*; all below 0.5 kcal/mol/Å RMS force \(largest 0.\d+\)$", log,
                     re.MULTILINE)
    assert re.search(r"relaxed 1 structures \(trial 1 step 1 end, from the carried geometries\) "
                     r"in [\d.]+ s: up to 0 steps", log)
    # an accepted step end is relaxed again from the inputs, as a zero-step run of its ffield
    # would be, and the force field is selected on that loss
    assert re.search(r"relaxed 1 structures \(trial 1 step 1 end, from the input geometries\) "
                     r"in [\d.]+ s: up to 43 steps", log)
    honest = [float(v) for v in re.findall(r"; from the input geometries: loss ([\d.e+-]+)", log)]
    accepted = log.count("; accepted (in-step loss")
    assert accepted >= 1 and len(honest) == accepted
    lowest = uninterrupted.state.lowest_training
    assert lowest["step"] >= 1 and min(honest) == pytest.approx(lowest["loss"], rel=1e-5)
    # the first step reuses the starting relaxation, the second step 1's end: nothing placed
    assert "relaxed 1 structures (trial 1 step 2)" not in log
    assert "carried geometries (trial" not in log
    # each step is judged by its re-relaxed loss (trust region); step 2 gets step 1's radius
    radii = re.findall(r"of radius ([\d.e-]+); next radius ([\d.e-]+)\)", log)
    assert len(radii) == 2 and radii[0][0] == "0.1" and radii[1][0] == radii[0][1]
    assert "accepted (in-step loss" in log
    # each step's line gives the process's memory (resident now and peak), for batch jobs
    memory = re.findall(r"step \d/2 done: .*; memory now ([\d.]+) GiB, peak ([\d.]+) GiB$", log,
                        re.MULTILINE)
    assert len(memory) == 2
    assert all(0.05 < float(now) <= float(peak) < 64 for now, peak in memory)


def test_without_carry_every_relaxation_starts_from_the_inputs(config, tmp_path):
    import re

    run = dataclasses.replace(_with(config, tmp_path, steps=2, max_iterations=2),
                              minimize=dataclasses.replace(config.minimize, carry=False))
    with pytest.raises(FitInterrupted):
        run_fit(run, stream=False, stop_after_steps=1)
    # the checkpoint holds the relaxation of the current parameters: a resume places it
    (positions, cell), = json.loads((tmp_path / "checkpoint.json").read_text()
                                    )["trials"][0]["geometries"]
    assert np.shape(positions) == (5, 3) and np.shape(cell) == (3, 3)
    run_fit(run, resume=True, stream=False)
    log = (tmp_path / "run.log").read_text()
    # the same 43 FIRE steps as the start's relaxation (the parameters barely act on it)
    ends = re.findall(r"relaxed 1 structures \(trial 1 step (\d) end\) in [\d.]+ s: up to "
                      r"(\d+) steps", log)
    assert ends == [("1", "43"), ("2", "43")]
    assert "from the carried geometries" not in log
    assert "placed 1 carried geometries (trial 1 step 2)" in log


def test_unconverged_relaxations_are_named_worst_first():
    from reaxopt.relaxation import unconverged_note

    names = ["a", "b", "c", "d"]
    assert unconverged_note([0.1, 0.3, 0.2, 0.4], names, 0.5) == \
        "all below 0.5 kcal/mol/Å RMS force (largest 0.4)"
    assert unconverged_note([0.1, 4.16, 0.5, 5.36], names, 0.5) == \
        "3 of 4 above 0.5 kcal/mol/Å RMS force: d 5.36, b 4.16, c 0.5"
    assert unconverged_note([0.1, 4.16, 0.5, 5.36], names, 0.5, shown=1) == \
        "3 of 4 above 0.5 kcal/mol/Å RMS force: d 5.36 and 2 more"


def test_optimizer_message_spells_out_a_failed_line_search():
    # a gradient of the wrong sign: no point along L-BFGS-B's direction lowers sum(x⁴) (for
    # x·x, scipy 1.17 reports a converged start instead)
    def wrong_gradient(x):
        return float(np.sum(x ** 4)), -4.0 * x ** 3

    failed = scipy.optimize.minimize(wrong_gradient, np.array([1.0, 2.0]), jac=True,
                                     method="L-BFGS-B")
    assert not failed.success and failed.x.tolist() == [1.0, 2.0]
    assert optimizer_message(failed).startswith("ABNORMAL: the line search found no point")
    converged = scipy.optimize.minimize(lambda x: (x @ x, 2.0 * x), np.array([1.0, 2.0]),
                                        jac=True, method="L-BFGS-B")
    assert optimizer_message(converged) == " ".join(converged.message.split())
    assert optimizer_message(converged).startswith("CONVERGENCE")


def test_random_search_starts_from_the_lowest_loss_sample():
    """x·x over [-1, 1]²: the search keeps the start unless a uniform sample scores lower (one
    non-finite sample never wins) and draws its samples from the seeded generator, scoring the
    start first."""
    lower, upper = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    samples = np.random.default_rng(7).uniform(lower, upper, (3, 2))
    scored = []

    def score(theta):
        scored.append(theta.tolist())
        return math.nan if np.all(theta == samples[1]) else float(theta @ theta)

    start = np.array([0.9, -0.95])
    picked, best = random_search(start, 3, lower, upper, np.random.default_rng(7), score)
    losses = [start @ start, math.inf] + [x @ x for x in samples[[0, 2]]]
    expected = [start, samples[1], samples[0], samples[2]][int(np.argmin(losses))]
    # the samples are the seeded generator's first draws, scored after the start
    assert scored == [start.tolist()] + samples.tolist()
    assert picked.tolist() == expected.tolist() and picked.tolist() != start.tolist()
    assert best == min(losses)
    # a start at the minimum is kept
    origin = np.zeros(2)
    kept, zero = random_search(origin, 3, lower, upper, np.random.default_rng(7), score)
    assert kept.tolist() == [0.0, 0.0] and zero == 0.0


def test_trust_update_accepts_rejects_and_resizes():
    # (accept, next radius) from radius, start, in-step end, re-relaxed end, step length
    assert trust_update(0.1, 100.0, 50.0, 101.0, 0.08) == (False, 0.02)  # worse: reject
    assert trust_update(0.1, 100.0, 50.0, math.nan, 0.08) == (False, 0.02)
    assert trust_update(0.1, 100.0, 50.0, 100.0, 0.0) == (False, 0.025)  # no move, no gain
    # converged where it started: nothing tried, nothing to judge (the trial then ends)
    assert trust_update(0.1, 100.0, 100.0, 100.0, 0.0, converged=True) == (True, 0.1)
    assert trust_update(0.1, 100.0, 100.0, 100.5, 0.0, converged=True) == (True, 0.1)
    # stopped where it started without converging (a failed line search): try smaller
    assert trust_update(0.1, 100.0, 100.0, 100.0, 0.0) == (False, 0.025)
    assert trust_update(0.1, 100.0, 50.0, 90.0, 0.08) == (True, 0.04)  # ratio 0.2: halve step
    assert trust_update(0.1, 100.0, 50.0, 60.0, 0.05) == (True, 0.1)  # ratio 0.8 inside: keep
    assert trust_update(0.1, 100.0, 50.0, 60.0, 0.095) == (True, 0.2)  # at boundary: double
    assert trust_update(0.8, 100.0, 50.0, 40.0, 0.8) == (True, 1.0)  # at most the whole range
    assert trust_update(0.1, 100.0, 100.0, 90.0, 0.05) == (True, 0.1)  # gain not predicted


def _final(result):
    return np.array(result.state.best["theta"]), result.summary["loss"]["final"]


@pytest.fixture
def validation_worsens(monkeypatch):
    """Made-up losses over the real evaluation: training |u - 1|², validation |u - u₀ + 0.05|²
    (u: the parameters scaled to their bounds, u₀ the start): validation only gets worse as
    the fit moves towards u = 1."""
    import reaxopt.fit.run as fit_module

    real = fit_module.make_evaluator

    def made_up(problem, regularization, theta_reference):
        evaluate = real(problem, regularization, theta_reference)
        lower, span = problem.theta_map.lower, problem.theta_map.upper - problem.theta_map.lower
        start = (np.asarray(theta_reference) - lower) / span

        def stub(theta, relaxed=None):
            u = (np.asarray(theta) - lower) / span
            return dataclasses.replace(evaluate(theta, relaxed),
                                       loss=float(np.sum((u - 1.0) ** 2)),
                                       gradient=2.0 * (u - 1.0) / span,
                                       validation_loss=float(np.sum((u - start + 0.05) ** 2)))
        return stub

    monkeypatch.setattr(fit_module, "make_evaluator", made_up)


def test_lowest_training_loss_force_field_is_written_when_validation_selects_another(
        config, tmp_path, validation_worsens):
    """Validation selects the start while training is lowest at the last step's end."""
    result = run_fit(_with(config, tmp_path, steps=2, max_iterations=10), stream=False)
    summary, lowest = result.summary, result.summary["lowest_training"]
    assert summary["best"]["step"] == 0 and lowest["step"] == 2
    assert lowest["loss"] < summary["loss"]["final"] == summary["loss"]["initial"]
    assert lowest["validation_loss"] > summary["validation_loss"]["final"]
    assert "lowest training loss force field (trial 1 step 2)" in (
        tmp_path / "run.log").read_text()
    written = (tmp_path / "ffield_lowest_training").read_text()
    assert written != (tmp_path / "ffield").read_text()
    assert written.splitlines()[1:] != (config.force_field.read_text().splitlines()[1:])


def test_early_stopping_ends_a_trial_whose_validation_loss_stops_falling(
        config, tmp_path, validation_worsens):
    # the start's validation loss is the trial's lowest: with a patience of 2 outer steps the
    # trial ends after its second step, of the 4 it was given
    result = run_fit(_with(config, tmp_path, steps=4, max_iterations=10, early_stopping=2),
                     stream=False)
    log = (tmp_path / "run.log").read_text()
    assert "trial 1 step 2/4 done" in log and "trial 1 step 3 " not in log
    assert "trial 1: no validation loss below " in log and "for 2 outer steps" in log
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["trials"][0]["end_reason"] == "early stopping"
    assert saved["trials"][0]["stale_steps"] == 2
    assert result.summary["best"]["step"] == 0  # the start, still selected on validation


def test_patience_counts_outer_steps_since_the_lowest_validation_loss():
    from reaxopt.fit.observers import patience_update

    assert patience_update(None, 0, 5.0) == (5.0, 0)  # the first one seen
    assert patience_update(5.0, 0, 4.0) == (4.0, 0)  # lower: the count starts again
    assert patience_update(4.0, 0, 4.5) == (4.0, 1)
    assert patience_update(4.0, 1, 4.0) == (4.0, 2)  # equal is not lower
    assert patience_update(4.0, 2, math.inf) == (4.0, 3)  # nothing seen (a rejected step)


def test_trial_ends_when_a_step_no_longer_lowers_the_loss(config, tmp_path):
    import re

    result = run_fit(_with(config, tmp_path, steps=8, max_iterations=300, trust_radius=1.0,
                           tolerance=1e-9), stream=False)
    log = (tmp_path / "run.log").read_text()
    found = re.search(r"trial 1: step (\d) lowered the loss by ([\d.e+-]+) \(tolerance 1e-09 "
                      r"relative\), converged: the trial ends", log)
    assert found, log[-2000:]
    ends = [row for row in result.state.history if row["event"] == "step end"]
    assert len(ends) == int(found.group(1)) < 8
    previous = ends[-2]["loss"] if len(ends) > 1 else None
    assert previous is not None and 0 <= previous - ends[-1]["loss"] <= 1e-9 * ends[-1]["loss"]


def test_resume_after_stop_matches_uninterrupted(uninterrupted, config, tmp_path):
    stopped = _with(config, tmp_path)
    with pytest.raises(FitInterrupted):
        run_fit(stopped, stream=False, stop_after_steps=1)
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["trials"][0]["step"] == 1 and not saved["finished"]
    # the relaxed geometry of the one minimised structure, carried to the next step
    (positions, cell), = saved["trials"][0]["geometries"]
    assert np.shape(positions) == (5, 3) and np.shape(cell) == (3, 3)
    resumed = run_fit(stopped, resume=True, stream=False)
    log = (tmp_path / "run.log").read_text()
    assert "placed 1 carried geometries (trial 1 step 2)" in log
    # the starting force field's relaxation is placed from the checkpoint, not repeated
    assert log.count("relaxed 1 structures (starting force field)") == 1
    assert "placed 1 carried geometries (starting force field, as relaxed before)" in log
    theta, final = _final(resumed)
    np.testing.assert_array_equal(theta, _final(uninterrupted)[0])
    assert final == _final(uninterrupted)[1]
    assert (tmp_path / "ffield").read_text() == (uninterrupted.output_dir / "ffield").read_text()
    assert "resuming" in (tmp_path / "run.log").read_text()


class _SignalAt:
    """A progress stream that sends this process SIGTERM when a given line is written."""

    def __init__(self, text: str):
        self.text, self.sent = text, False

    def write(self, line: str) -> None:
        if not self.sent and self.text in line:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def flush(self) -> None:
        pass


def test_sigterm_saves_checkpoint_and_resume_matches(uninterrupted, config, tmp_path):
    run = _with(config, tmp_path)
    with pytest.raises(FitInterrupted) as caught:
        run_fit(run, stream=_SignalAt("step 2 iter    2"))
    assert caught.value.exit_code == 143
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["trials"][0]["step"] == 1  # the last completed outer step
    assert "SIGTERM" in (tmp_path / "run.log").read_text()
    resumed = run_fit(run, resume=True, stream=False)
    np.testing.assert_array_equal(_final(resumed)[0], _final(uninterrupted)[0])


def test_resume_with_more_steps_continues_a_finished_run(uninterrupted, config, tmp_path):
    short = _with(config, tmp_path, steps=1)
    run_fit(short, stream=False)
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    (trial,) = saved["trials"]
    assert saved["finished"] and trial["end_reason"] is None  # it ran out of steps
    assert trial["step"] == 1 and len(trial["geometries"]) == 1
    # given its second step afterwards, the trial ends where the two-step run does
    longer = _with(config, tmp_path, steps=2)
    resumed = run_fit(longer, resume=True, stream=False)
    log = (tmp_path / "run.log").read_text()
    assert "the run had finished 1 trial(s); trial(s) 1 ran out of steps and continue up to " \
        "optimizer.steps = 2" in log
    assert "trial 1: continuing after its step 1 (radius " in log
    assert "placed 1 carried geometries (trial 1 step 2)" in log
    np.testing.assert_array_equal(_final(resumed)[0], _final(uninterrupted)[0])
    assert _final(resumed)[1] == _final(uninterrupted)[1]
    assert [(r["trial"], r["step"], r["loss"]) for r in resumed.state.history] == \
        [(r["trial"], r["step"], r["loss"]) for r in uninterrupted.state.history]
    assert (tmp_path / "ffield").read_text() == (uninterrupted.output_dir / "ffield").read_text()
    # nothing left to continue: the outputs are written again, the history unchanged
    again = run_fit(longer, resume=True, stream=False)
    assert "no trial ran out of steps below optimizer.steps" in (tmp_path / "run.log").read_text()
    assert again.state.history == resumed.state.history


def test_only_trials_that_ran_out_of_steps_are_extended():
    from reaxopt.fit import RunState, Trial

    assert Trial(1, [0.5], step=3).has_steps(5)
    assert not Trial(1, [0.5], step=5).has_steps(5)
    assert not Trial(1, [0.5], step=3, end_reason="trust radius").has_steps(5)
    assert not Trial(1, [0.5], step=2, end_reason="converged").has_steps(5)
    # a checkpoint written before trial ends were kept still loads, its ended trial as ended
    old = RunState.from_json({"version": 1, "trial": 0, "step": 4, "theta": [0.5],
                              "trial_done": True})
    assert [(t.number, t.step, t.end_reason) for t in old.trials] == [(1, 4, "ended")]


def test_version_1_checkpoints_load_as_trials():
    """Version 1 kept the trial in progress at the top level and the ended ones in
    trial_ends; a trial that ran out of steps ('steps') goes on when given more."""
    from reaxopt.fit import RunState

    end = {"trial": 1, "reason": "steps", "steps": 3, "theta": [0.1], "radius": 0.2,
           "geometries": None, "trial_best_selection": 7.0, "stale_steps": 1}
    data = {"version": 1, "labels": ["a"], "trial": 1, "step": 2, "theta": [0.3],
            "radius": 0.05, "geometries": None, "end_reason": None, "trial_ends": [end],
            "best": None, "history": [], "finished": False}
    state = RunState.from_json(data)
    first, second = state.trials
    assert (first.number, first.theta, first.step, first.radius, first.end_reason,
            first.best_selection, first.stale_steps) == (1, [0.1], 3, 0.2, None, 7.0, 1)
    assert (second.number, second.theta, second.step, second.radius) == (2, [0.3], 2, 0.05)
    assert RunState.from_json(state.to_json()) == state


def test_progress_counts_the_outer_steps_of_all_trials():
    from reaxopt.fit import RunState, Trial

    state = RunState(labels=[])
    assert state.steps_done(5, 3) == 0
    # trial 1 ran out at 3 of 5 steps (a resume extends it), trial 2 converged after 2: done
    state.trials = [Trial(1, [0.5], step=3), Trial(2, [0.5], step=2, end_reason="converged")]
    assert state.steps_done(5, 3) == 3 + 5
    # the resume continues trial 1, now at its step 4
    state.trials[0].step = 4
    assert state.steps_done(5, 3) == 4 + 5


class _SwallowedSignalAt(_SignalAt):
    """Sends SIGTERM inside a try/except that swallows the handler's exception, as JAX does
    when the signal arrives while it reads its persistent compilation cache."""

    def write(self, line: str) -> None:
        try:
            super().write(line)
        except FitInterrupted:
            pass


def test_a_swallowed_sigterm_still_stops_the_fit(config, tmp_path):
    run = _with(config, tmp_path)
    with pytest.raises(FitInterrupted) as caught:
        run_fit(run, stream=_SwallowedSignalAt("step 2 iter    2"))
    assert caught.value.exit_code == 143
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["trials"][0]["step"] == 1 and not saved["finished"]
    assert "trial 1 step 2 iter    3" not in (tmp_path / "run.log").read_text()


def test_zero_steps_evaluates_the_given_force_field(config, tmp_path):
    result = run_fit(_with(config, tmp_path, steps=0), stream=False)
    assert result.summary["loss"]["final"] == result.summary["loss"]["initial"]
    assert result.state.history == []
    for p in result.summary["parameters"]:
        assert p["fitted"] == p["initial"]
    rmse = result.summary["validation"]["rmse"]["energy"]
    assert rmse["fitted"] == rmse["initial"] > 0


def test_non_finite_loss_steers_the_optimizer_away():
    """A stub problem: a quadratic in [0, 2] whose loss is NaN above 1.5."""
    met = []

    def evaluate(theta):
        x = float(theta[0])
        value = (x - 1.8) ** 2 if x <= 1.5 else math.nan
        gradient = np.array([2 * (x - 1.8)])
        return Evaluation(np.array(theta), value, gradient, value, None, np.zeros(1), None,
                          [] if x <= 1.5 else ["blown_up"], math.isfinite(value))

    outcome = local_step(evaluate, np.array([0.2]), np.array([0.0]), np.array([2.0]),
                         _optimizer_options(), on_non_finite=met.append)
    result = outcome.result
    assert math.isfinite(result.fun) and result.fun < BAD_LOSS
    assert 0.0 <= result.x[0] * 2.0 <= 1.5 + 1e-9
    assert met and all(ev.bad_structures == ["blown_up"] for ev in met)
    # the nearest non-finite point, in scaled units from the start u = 0.1
    assert outcome.non_finite == pytest.approx(min(float(ev.theta[0]) / 2.0 for ev in met) - 0.1)


def test_outer_step_stays_within_the_trust_radius():
    """The quadratic (x - 1.8)² on [0, 2] from x = 0.2: with radius 0.1 of the range the step
    ends at the box edge x = 0.2 + 0.1 * 2 = 0.4."""
    def evaluate(theta):
        x = float(theta[0])
        return Evaluation(np.array(theta), (x - 1.8) ** 2, np.array([2 * (x - 1.8)]),
                          (x - 1.8) ** 2, None, np.zeros(1), None, [], True)

    seen = []
    outcome = local_step(evaluate, np.array([0.2]), np.array([0.0]), np.array([2.0]),
                         _optimizer_options(), radius=0.1,
                         on_iteration=lambda ev, k: seen.append(k))
    assert outcome.result.x[0] * 2.0 == pytest.approx(0.4, abs=1e-12)
    assert seen == list(range(1, outcome.iterations + 1)) and outcome.non_finite is None
    assert outcome.start_loss == pytest.approx(1.6 ** 2)


def _optimizer_options(**options):
    from reaxopt.config import OptimizerConfig

    return OptimizerConfig(**{"max_iterations": 30, **options})


def test_cli_fit_writes_outputs_and_reports_bad_resume(config, monkeypatch):
    from click.testing import CliRunner

    from reaxopt.cli import main

    monkeypatch.setenv("REAXOPT_CACHE_DIR", "off")
    runner = CliRunner()
    missing = runner.invoke(main, ["fit", str(config.path), "--resume"])
    assert missing.exit_code == 2 and "no checkpoint" in missing.output
    result = runner.invoke(main, ["fit", str(config.path)])
    assert result.exit_code == 0, result.output
    assert " iter " in result.output and "done in" in result.output
    assert (config.output_dir / "summary.json").is_file()


def test_resume_refuses_saved_geometries_of_other_structures(tmp_path):
    from reaxopt.errors import InputError
    from reaxopt.fit import RunState, Trial
    from reaxopt.fit.state import check_saved_geometries

    two_atoms = [[[[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.eye(3).tolist()]]
    state = RunState(trials=[Trial(1, [0.0], geometries=two_atoms)], start_geometries=two_atoms)
    check_saved_geometries(state, [2], tmp_path / "checkpoint.json")
    for counts in ([3], [2, 2], []):
        with pytest.raises(InputError, match="do not match"):
            check_saved_geometries(RunState(start_geometries=two_atoms), counts,
                                   tmp_path / "checkpoint.json")


def test_model_batches_hold_every_structure_once(config):
    """clusters = 2: two padded shapes from the clustering; rows map back to the structures."""
    from reaxopt.forcefield import build_forcefield
    from reaxopt.model import ModelOptions, build_model

    inputs = load_inputs(config)
    structures = inputs.training.structures + inputs.validation.structures
    params, topology = build_forcefield(inputs.ffield)
    model = build_model(structures, params, topology, ModelOptions(clusters=2))
    assert len(model.batches) == 2 and len(model.sizes) == 2
    stacked = np.concatenate([np.asarray(b[0]) for b in model.batches])
    masks = np.concatenate([np.asarray(b[1].atom_mask) for b in model.batches])
    order = np.asarray(model.order)
    assert sorted(order.tolist()) == list(range(len(structures)))
    for k, s in enumerate(structures):
        assert masks[order[k]].sum() == s.n_atoms
        np.testing.assert_array_equal(stacked[order[k], :s.n_atoms], s.positions)


def test_single_point_steps_hold_the_gates_and_select_on_lammps_losses(config, tmp_path):
    """Without relaxed structures each step holds its start's bond-order gates; iterates and
    step ends enter the selection only with the loss LAMMPS's gates give."""
    import re

    from ase.io import read, write

    from reaxopt.fit.problem import gated_at, gates_hold_at

    frames = read(config.path.parent / "small.extxyz", ":")
    for atoms in frames:
        atoms.info.pop("run_type", None)
        atoms.info.pop("max_iterations", None)
    write(tmp_path / "single.extxyz", frames, format="extxyz")
    training = config.training
    files = (dataclasses.replace(training.structures[0], path=tmp_path / "single.extxyz"),)
    single = dataclasses.replace(config,
                                 training=dataclasses.replace(training, structures=files))
    result = run_fit(_with(single, tmp_path, steps=3, max_iterations=6), stream=False)
    log = (tmp_path / "run.log").read_text()
    assert "relaxed" not in log
    radii = re.findall(r"step 1/3 done: .*accepted \(in-step loss [\d.e+-]+, step [\d.e-]+ of "
                       r"radius ([\d.e-]+);", log)
    assert radii == ["1"], log[-2000:]
    problem = build_problem(load_inputs(single))
    live = make_evaluator(problem, 0.0, problem.theta_start)
    best, lowest = result.state.best, result.state.lowest_training
    theta_best = np.array(best["theta"])
    # the fit crossed thresholds: the starting force field's gates do not hold at its end
    assert not gates_hold_at(problem, gated_at(problem, problem.theta_start), theta_best)
    for chosen in (best, lowest):
        ev = live(np.array(chosen["theta"]))
        assert ev.loss == pytest.approx(chosen["loss"], rel=1e-10)
        assert ev.validation_loss == pytest.approx(chosen["validation_loss"], rel=1e-10)


def test_a_fit_with_the_global_stage_starts_its_trials_from_its_best_points(config, tmp_path):
    from reaxopt.config import SearchConfig

    search = SearchConfig(method="cma", starts=6, evaluations=30, sigma=0.2, popsize=8,
                          hand_over=2)
    run = dataclasses.replace(_with(config, tmp_path, steps=1, trials=2, max_iterations=3),
                              search=search)
    result = run_fit(run, stream=False)
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved["exploration"]["done"] and saved["exploration"]["evaluations"] == 7 + 2 * 8
    starts = [c[0] for c in saved["candidates"]]
    assert len(starts) == 2 and [t["number"] for t in saved["trials"]] == [1, 2]
    log = (tmp_path / "run.log").read_text()
    assert "search: scored 7 starts" in log and "search: CMA-ES generation 2" in log
    for k, (_, loss) in enumerate(saved["candidates"], start=1):
        assert f"trial {k}: starts from the search's point {k} (loss {loss:.6g}" in log
    losses = sorted(loss for _, loss in saved["candidates"])
    assert losses == [loss for _, loss in saved["candidates"]]  # the best first
    assert result.summary["evaluations"] > saved["exploration"]["evaluations"]


def test_a_whole_fit_runs_with_slsqp(config, tmp_path):
    result = run_fit(_with(config, tmp_path, steps=1, method="SLSQP", max_iterations=4),
                     stream=False)
    log = (tmp_path / "run.log").read_text()
    assert "trial 1 step 1/1 done" in log and " iter " in log
    assert result.summary["loss"]["final"] <= result.summary["loss"]["initial"]
    assert json.loads((tmp_path / "summary.json").read_text())["evaluations"] > 1


@pytest.mark.parametrize("method", ["L-BFGS-B", "SLSQP"])
def test_a_step_stops_at_the_same_point_whatever_the_scale_of_the_loss(method):
    """An ill-conditioned quadratic (minimum 0, inside the bounds) scaled by 1e-3 and by 1e6:
    the step's stopping rules are relative, so both scales stop at the same point, with the
    loss below 1e-6 of its start (scipy's own ftol stops the small one early and the large one
    late, and SLSQP fails outright on the large one's gradients)."""
    curvature = np.array([1.0, 30.0, 300.0, 3.0, 1000.0])
    centre = np.array([0.31, 0.62, 0.47, 0.83, 0.24])

    def quadratic(scale):
        def evaluate(theta):
            d = theta - centre
            value = scale * float(np.sum(curvature * d * d))
            return Evaluation(np.array(theta), value, scale * 2.0 * curvature * d, value, None,
                              np.zeros(1), None, [], True)
        return evaluate

    ends = []
    for scale in (1e-3, 1e6):
        outcome = local_step(quadratic(scale), np.full(5, 0.5), np.zeros(5), np.ones(5),
                             _optimizer_options(method=method, max_iterations=200,
                                                tolerance=1e-6))
        assert outcome.converged, outcome.message
        ends.append(np.asarray(outcome.result.x))
        assert outcome.result.fun == pytest.approx(quadratic(scale)(ends[-1]).loss, rel=1e-12)
        assert 0.0 < outcome.result.fun < 1e-6 * outcome.start_loss
    assert np.max(np.abs(ends[0] - ends[1])) < 1e-8
