"""Fit the selected ReaxFF parameters: scipy optimizers driven by one jitted loss and gradient.

``run_fit(config, resume=False)`` loads the inputs, builds one model holding the training and
validation structures (so one compiled function gives the training loss, its gradient and the
validation loss), and runs ``optimizer.trials`` trials of ``optimizer.steps`` outer steps, each
one ``scipy.optimize.minimize`` call (L-BFGS-B or SLSQP, within the params bounds, ``jac=True``).
The optimizer works on the parameters scaled to [0, 1] by their bounds.

* Starting points: ``fixed`` the force field's values (clipped into the bounds), ``educated``
  those values plus Gaussian noise of 10 % of each bound range (clipped), ``random`` uniform in
  the bounds; ``random_search`` uniform samples are scored first and the best point (the start
  included) starts the trial. All draws come from one ``numpy`` generator seeded with
  ``optimizer.seed`` whose state is checkpointed, so runs and resumed runs are reproducible.
* Best force field: the accepted iterate (or starting point) with the lowest validation loss
  (ties, e.g. when no fitted parameter acts on the validation data, go to the lower training
  loss); the lowest training loss (regularisation included) when there is no validation data.
* Geometry optimisation (``reaxopt.minimize``): the structures that ask for it are relaxed
  with the current parameters (in a model of their own, clustered apart from the single
  points, then placed into the loss's batches): at a trial's start from their input geometry,
  at each step's end from the geometries relaxed at the step's start (``minimize.carry``; else
  from the inputs every time), so the relaxed geometry follows the parameters instead of
  landing anywhere in a flat valley. The checkpoint holds the geometries relaxed under the
  current parameters and under the starting force field: a resumed run places them instead of
  relaxing again (relaxing is deterministic, so the results are the same). Within a
  step the geometry is fixed (moved by the linearised response where geometry items measure
  it), and so are the bond-order gates (``reaxopt.energy.gates``): LAMMPS's thresholds switch
  terms on and off with a jump as parameters move, which would stop the step's optimizer at
  the first it walks up to. Then only the starting force field and the step ends, each
  evaluated at geometries relaxed under its own parameters, can be selected: an in-step loss
  at another parameter set's geometry (and gates) can be far too optimistic. Selection uses
  what a zero-step run of the candidate's ``ffield`` gives, relaxed from the input geometries:
  with ``minimize.carry`` the steps are judged at carried geometries (their relaxations follow
  the in-step model; from the inputs soft modes stop elsewhere and the loss is rough), and an
  accepted step end is evaluated once more from the inputs for the selection. The outputs are
  evaluated from the inputs too.
* Single points (no structure relaxes): each step holds the bond-order gates of its start too,
  so its optimizer is not stopped at the first threshold it walks up to (the quick start's
  single live step ended at a jump of +15 in the loss after 72 iterations). An iterate is
  exact where the gates it holds are still LAMMPS's; one that is not but looks better than
  the best so far is evaluated again with LAMMPS's gates and considered with that loss. Each
  step's end is evaluated with LAMMPS's gates and judged like a relaxed one's.
* Trust region: the in-step loss is a model of the true one, good near the step's start only
  (with relaxed structures; for single points it is exact up to the jumps of the gates it
  holds). Each step may change every scaled parameter by at most the trust radius
  (``optimizer.trust_radius`` at first with relaxed structures, else the whole range); a step
  whose true training loss (re-relaxed; LAMMPS's gates) is not below its start's is rejected
  (the next step starts from the same point) and the radius shrinks to a quarter of the step
  taken; an accepted step whose true reduction is under a quarter of the in-step one halves
  it, one over three quarters that reached the boundary doubles it (``trust_update``). A
  trial ends when the radius falls below ``MIN_TRUST_RADIUS``.
* A loss or gradient that is not finite (NaN/Inf) is reported as a warning naming the affected
  structures with their non-finite energy terms, and the items (``reaxopt.nonfinite``); the
  optimizer is handed a large finite loss (``BAD_LOSS``) with a zero gradient, so its line
  search steps back, and a step stopped there is rejected with the trust radius below half
  the distance to the non-finite point.
* The output directory (``reaxopt.rundir``): locked for one run; an earlier run's outputs are
  kept unless ``resume`` or ``overwrite``; the checkpoint carries the inputs' fingerprint.
* Progress: one line per optimizer iteration (trial, step, iteration, loss, validation loss, the
  best so far on the selection's loss, elapsed s); on a terminal, a progress bar (tqdm) of the
  outer steps of all trials below the lines.
* Checkpoint: ``checkpoint.json`` in the output directory after every outer step (atomic), with
  the current parameters, the best ones, the history and the generator state; ``resume=True``
  continues from it. SIGINT/SIGTERM during the optimization save the last completed outer
  step's checkpoint and raise ``FitInterrupted`` (the CLI exits with 128 + the signal number);
  a resumed run repeats the interrupted step and so ends exactly where an uninterrupted run
  would. (Before the first evaluation has compiled there is nothing to save: SIGINT ends the
  run with status 130, SIGTERM terminates it.) Resuming a finished run with a larger
  ``optimizer.steps`` continues the trials that ran out of steps (not those ended by the trust
  radius or by convergence) from their last parameters, radius and geometries, as if they had
  been given those steps from the start; a larger ``optimizer.trials`` adds trials.
* Outputs (``reaxopt.report``): the best ``ffield``, ``report.csv``/``report.txt``,
  ``history.csv``, ``summary.json``, ``config.yaml``, ``run.log``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import jax.numpy as jnp
import numpy as np
import scipy.optimize

from reaxopt import loss as loss_module
from reaxopt import nonfinite, rundir
from reaxopt.config import Config
from reaxopt.io.files import write_text_atomic
from reaxopt.errors import InputError, InternalError
from reaxopt.forcefield import Params, Topology, build_forcefield
from reaxopt.inputs import Inputs, load_inputs
from reaxopt.model import (Model, ModelOptions, ThetaMap, build_model, clustered_value_and_grad,
                           loosest_params, theta_map)
from reaxopt.packed import gates_hold
from reaxopt.relaxation import (Relaxed, gated_model, geometries_from_json, geometries_to_json,
                                make_relaxer)
from reaxopt.response import linearised_positions

BAD_LOSS = 1.0e20  # handed to the optimizer where the loss or its gradient is not finite
CHECKPOINT = "checkpoint.json"
CHECKPOINT_VERSION = 1
EDUCATED_SPREAD = 0.1  # standard deviation of the 'educated' perturbation, share of the range
MIN_TRUST_RADIUS = 1e-4  # share of the bound range: a trial whose trust radius falls below ends
STEP_EVENTS = ("step end", "step rejected")  # history events of an outer step's end


class FitInterrupted(Exception):
    """SIGINT or SIGTERM arrived; the checkpoint has been saved."""

    def __init__(self, signum: int, checkpoint: Path | None = None):
        self.signum = signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# --------------------------------------------------------------------------------- the problem


@dataclass
class Problem:
    """Everything one evaluation needs: the model, the compiled items, the parameter map."""

    inputs: Inputs
    theta_map: ThetaMap
    base_params: Params
    model: Model
    training: loss_module.CompiledItems
    training_info: list
    validation: loss_module.CompiledItems | None
    validation_info: list
    theta_start: np.ndarray  # the force field's values (may lie outside the bounds)
    names: tuple[str, ...]  # model row -> "training:name" / "validation:name"
    model_structures: list  # the structures of the model rows


def forcefield_for(ffield, config: Config) -> tuple[Params, Topology]:
    """``build_forcefield`` with the config's ``energy`` keywords (LAMMPS's ``enobonds``;
    ``lgvdw`` must agree with the force field's format, as LAMMPS requires)."""
    params, topology = build_forcefield(ffield, enobonds=config.energy.enobonds)
    wanted = config.energy.lgvdw
    if wanted is not None and wanted != topology.lgvdw:
        raise InputError(
            f"energy.lgvdw is {str(wanted).lower()} but the force field {config.force_field} "
            f"{'has no' if wanted else 'has the'} low-gradient vdW parameters (the atoms' fifth "
            "line); LAMMPS reads the file by that format, so expected lgvdw to match it: "
            "remove the key or use a force field of the other kind", file=config.path,
            key="energy.lgvdw")
    return params, topology


def build_problem(inputs: Inputs, options: ModelOptions | None = None) -> Problem:
    """Build the model over the training and validation structures and compile the items."""
    config = inputs.config
    options = options or ModelOptions(clusters=config.clusters, packed=True)
    params, topology = forcefield_for(inputs.ffield, config)
    tmap = theta_map(inputs.params)
    if tmap.size == 0:
        raise InputError("the params file selects no parameters; expected at least one line",
                         file=", ".join(str(p) for p in config.params))
    sets = [("training", inputs.training)]
    if inputs.validation is not None:
        sets.append(("validation", inputs.validation))
    structures, names, indices = [], [], {}
    for label, data in sets:
        index = {}
        for s in loss_module.used_structures(data):
            index[s.name] = len(structures)
            structures.append(s)
            names.append(f"{label}:{s.name}")
        indices[label] = index
    if not indices["training"]:
        raise InputError("no training item refers to any structure; expected energies, forces "
                         "or trainset items", file=config.path)
    model = build_model(structures, params, topology, options,
                        cutoff_params=loosest_params(tmap, params))
    mode = config.loss.energy_mode
    training, training_info = loss_module.compile_items(inputs.training, indices["training"],
                                                        mode)
    validation, validation_info = None, []
    if inputs.validation is not None:
        validation, validation_info = loss_module.compile_items(
            inputs.validation, indices["validation"], mode)
    # forces enter the loss through force items, RMSG and the geometry response (which
    # linearises the relaxed positions with the forces); without any, skip them
    kinds = [items.counts() for items in (training, validation) if items is not None]
    needs_forces = any(c["forces"] or c["geometry"] for c in kinds)
    model = dataclasses.replace(model, with_forces=needs_forces)
    return Problem(inputs, tmap, params, model, training, training_info, validation,
                   validation_info, tmap.from_params(params), tuple(names), structures)


def _evaluate(theta, predictions, training, validation, theta_reference, regularization, response,
              tmap):
    if response is not None:
        predictions = linearised_positions(predictions, response)
    data_loss = loss_module.loss(training, predictions)
    penalty = loss_module.regularization(theta, theta_reference, tmap.lower, tmap.upper,
                                         regularization)
    aux = {"data_loss": data_loss,
           "finite": loss_module.finite_structures(predictions),
           "training_residuals": loss_module.residual_vector(training, predictions)}
    if validation is not None:
        aux["validation_loss"] = loss_module.loss(validation, predictions)
        aux["validation_residuals"] = loss_module.residual_vector(validation, predictions)
    return data_loss + penalty, aux


# one jitted energy call per cluster, then the loss (``reaxopt.model.clustered_value_and_grad``)
_value_and_grad = clustered_value_and_grad(_evaluate, static_argnames="tmap")


@dataclass
class Evaluation:
    """One evaluation at theta (host numpy)."""

    theta: np.ndarray
    loss: float
    gradient: np.ndarray  # d loss / d theta
    data_loss: float
    validation_loss: float | None
    training_residuals: np.ndarray
    validation_residuals: np.ndarray | None
    bad_structures: list[str]
    finite: bool
    diagnosis: str = ""  # what is not finite, in words (``reaxopt.nonfinite``), when not finite


def make_evaluator(problem: Problem, regularization: float, theta_reference: np.ndarray
                   ) -> Callable[[np.ndarray], Evaluation]:
    """(theta, relaxed=None) -> Evaluation, through the shared jitted loss and gradient.

    relaxed: the geometry to evaluate at (``Relaxed``: a model with relaxed positions and the
    response of those that geometry targets measure); None: the problem's input geometry.
    """

    def evaluate(theta: np.ndarray, relaxed: Relaxed | None = None) -> Evaluation:
        relaxed = relaxed or Relaxed(problem.model)
        (value, aux), gradient = _value_and_grad(
            jnp.asarray(theta), relaxed.model, problem.theta_map, problem.base_params,
            problem.training, problem.validation, jnp.asarray(theta_reference),
            jnp.asarray(regularization), relaxed.response, tmap=problem.theta_map)
        value = float(value)
        gradient = np.asarray(gradient, float)
        finite_flags = np.asarray(aux["finite"], bool)
        rows = [int(k) for k in np.nonzero(~finite_flags)[0]]
        bad = [problem.names[k].split(":", 1)[1] for k in rows]
        finite = math.isfinite(value) and bool(np.all(np.isfinite(gradient)))
        validation = aux.get("validation_loss")
        ev = Evaluation(np.asarray(theta, float).copy(), value, gradient,
                        float(aux["data_loss"]),
                        None if validation is None else float(validation),
                        np.asarray(aux["training_residuals"]),
                        None if validation is None else np.asarray(aux["validation_residuals"]),
                        bad, finite)
        if not finite or rows:
            ev.diagnosis = diagnose(ev, rows, relaxed.model)
        return ev

    described: dict = {}  # what each non-finite pattern was found to be (computed once)

    def diagnose(ev: Evaluation, rows: list[int], model) -> str:
        items = (nonfinite.items_named(problem.training_info, ev.training_residuals)
                 + nonfinite.items_named(problem.validation_info, ev.validation_residuals))
        key = (tuple(rows), tuple(items))
        if key not in described:
            params = problem.theta_map.to_params(jnp.asarray(ev.theta), problem.base_params)
            described[key] = nonfinite.describe(rows, problem.names, items, model, params)
        return described[key]

    return evaluate


# --------------------------------------------------------------------------------- the run state


@dataclass
class State:
    """What a checkpoint holds (JSON-ready through ``to_json``)."""

    trial: int = 0
    step: int = 0  # next outer step of the current trial to run
    theta: list | None = None  # current parameters of the trial (None: the trial has not started)
    end_reason: str | None = None  # why the current trial ended (None: it goes on)
    best: dict | None = None  # theta, selection, loss, validation_loss, trial, step, iteration
    lowest_training: dict | None = None  # the same for the lowest training loss seen
    history: list = field(default_factory=list)
    rng: dict | None = None
    elapsed: float = 0.0  # seconds spent in earlier (interrupted) runs
    evaluations: int = 0
    finished: bool = False
    labels: list = field(default_factory=list)
    radius: float | None = None  # trust radius of the next step (scaled units; None: unset)
    # geometries relaxed under ``theta`` (placed at its step's start; with minimize.carry the
    # start of the step end's relaxation too) and under the starting force field: a resumed run
    # places them instead of relaxing again
    geometries: list | None = None
    start_geometries: list | None = None
    # per ended trial: its last parameters, radius and geometries, its step count and why it
    # ended, so a resume with more optimizer.steps continues the trials that ran out of steps
    trial_ends: list = field(default_factory=list)
    # optimizer.early_stopping: the trial's lowest selection loss (validation) so far, and the
    # outer steps since it last went lower
    trial_best_selection: float | None = None
    stale_steps: int = 0
    inputs: dict | None = None  # the fingerprint of the inputs (``reaxopt.rundir``)

    def to_json(self) -> dict:
        return {"version": CHECKPOINT_VERSION, **self.__dict__}

    @classmethod
    def from_json(cls, data: dict) -> State:
        data = dict(data)
        data.pop("version", None)
        if data.pop("trial_done", False):  # checkpoints written before end_reason
            data["end_reason"] = "ended"
        return cls(**data)


def patience_update(trial_best: float | None, stale_steps: int, step_best: float
                    ) -> tuple[float | None, int]:
    """(the trial's lowest validation loss, outer steps since it went lower) after an outer step
    whose lowest validation loss seen was ``step_best`` (inf: none seen)."""
    if trial_best is None or step_best < trial_best - 1e-12 * max(1.0, abs(trial_best)):
        return step_best, 0
    return trial_best, stale_steps + 1


def _end_trial_if_done(state: State, opt, log, accepted: bool, start_loss: float | None,
                       end_loss: float, step_best: float) -> None:
    """After outer step ``state.step`` of trial ``state.trial``: set ``state.end_reason`` (and
    log why) when its trust radius fell below MIN_TRUST_RADIUS, when an accepted step lowered
    the loss from ``start_loss`` to ``end_loss`` by no more than optimizer.tolerance
    (relative), or when optimizer.early_stopping steps in a row have seen no validation loss
    below the trial's lowest (``step_best``: the step's lowest seen)."""
    where = f"trial {state.trial + 1}"
    if state.radius < MIN_TRUST_RADIUS:
        log(f"{where}: trust radius {state.radius:.3g} below {MIN_TRUST_RADIUS:g}, the trial "
            "ends")
        state.end_reason = "trust radius"
    # a step that no longer lowers the loss has converged (with relaxed structures the step
    # start's in-step loss is its true loss: same geometry)
    if accepted and start_loss is not None and state.end_reason is None and \
            start_loss - end_loss <= opt.tolerance * max(1.0, abs(end_loss)):
        log(f"{where}: step {state.step} lowered the loss by {start_loss - end_loss:.3g} "
            f"(tolerance {opt.tolerance:g} relative), converged: the trial ends")
        state.end_reason = "converged"
    if opt.early_stopping:
        state.trial_best_selection, state.stale_steps = patience_update(
            state.trial_best_selection, state.stale_steps, step_best)
        if state.stale_steps >= opt.early_stopping and state.end_reason is None:
            log(f"{where}: no validation loss below {state.trial_best_selection:.6g} for "
                f"{state.stale_steps} outer steps (optimizer.early_stopping), the trial ends")
            state.end_reason = "early stopping"


def _extendable(end: dict | None, opt) -> bool:
    """Whether an ended trial stopped only because it ran out of steps, and more are asked
    (None: a trial ended by a run whose checkpoint kept no trial ends)."""
    return end is not None and end["reason"] == "steps" and end["steps"] < opt.steps


def _trials_to_extend(state: State, opt) -> list[int]:
    """Indices of the ended trials (within optimizer.trials) that ``_extendable`` continues."""
    return [i for i, end in enumerate(state.trial_ends[:opt.trials]) if _extendable(end, opt)]


def _steps_done(state: State, opt) -> int:
    """Outer steps done of the run's plan (optimizer.trials x optimizer.steps), for the progress
    bar: an ended trial counts all its steps, one that a resume extends the steps it took."""
    done = 0
    for trial in range(opt.trials):
        end = state.trial_ends[trial] if trial < len(state.trial_ends) else None
        if trial == state.trial and state.theta is not None:
            done += state.step
        elif end is not None:
            done += end["steps"] if _extendable(end, opt) else opt.steps
        elif trial < state.trial:  # ended in a checkpoint older than trial_ends
            done += opt.steps
    return done


def _resumed_state(checkpoint_path: Path, labels: list[str], atom_counts: list[int], opt,
                   log, forget_relaxations: bool = False) -> State:
    """The checkpoint's state, checked against this run's parameters and minimised structures
    (``atom_counts``), to go on from: a finished run is reopened for the trials that ran out
    of steps below ``opt.steps`` and for new trials. forget_relaxations: drop the saved
    geometries (the inputs changed: relax again), and the early-stopping counts."""
    state = load_checkpoint(checkpoint_path, labels)
    if forget_relaxations:
        state.geometries = state.start_geometries = None
        state.trial_best_selection, state.stale_steps = None, 0
        for end in state.trial_ends:
            if end is not None:
                end.update(geometries=None, trial_best_selection=None, stale_steps=0)
    _check_saved_geometries(state, atom_counts, checkpoint_path)
    if not state.finished:
        log(f"resuming from {checkpoint_path}: trial {state.trial + 1}, step {state.step + 1}")
        return state
    more = [i + 1 for i in _trials_to_extend(state, opt)]
    log(f"resuming from {checkpoint_path}: the run had finished {len(state.trial_ends)} "
        "trial(s); "
        + (f"trial(s) {', '.join(map(str, more))} ran out of steps and continue up to "
           f"optimizer.steps = {opt.steps}" if more else
           "no trial ran out of steps below optimizer.steps")
        + (f"; trials {len(state.trial_ends) + 1}-{opt.trials} are new"
           if opt.trials > len(state.trial_ends) else ""))
    state.finished = False
    return state


def _write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=True) + "\n")


def load_checkpoint(path: Path, labels: list[str]) -> State:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("--resume: no checkpoint to resume from (expected checkpoint.json in "
                         "the output directory)", file=path) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"--resume: cannot read the checkpoint ({exc})", file=path) from None
    if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
        version = data.get("version") if isinstance(data, dict) else None
        raise InputError(f"--resume: checkpoint version {version} is not "
                         f"{CHECKPOINT_VERSION}", file=path)
    try:
        state = State.from_json(data)
    except TypeError as exc:
        raise InputError(f"--resume: the checkpoint does not hold what a reaxopt checkpoint "
                         f"holds ({exc}); start over with --overwrite", file=path) from None
    if state.labels != labels:
        raise InputError("--resume: the checkpoint was written for other fitted parameters "
                         "than the params file now selects; start a new run without --resume",
                         file=path)
    return state


def _check_saved_geometries(state: State, atom_counts: list[int], path: Path) -> None:
    """InputError unless the checkpoint's relaxed geometries fit the structures that relax now
    (their number and atom counts, in order)."""
    for saved in (state.geometries, state.start_geometries):
        if saved is not None and [len(p) for p, _ in saved] != list(atom_counts):
            raise InputError(f"--resume: the checkpoint holds relaxed geometries of "
                             f"{len(saved)} structures that do not match the {len(atom_counts)} "
                             "the inputs now ask to relax (changed geo or structure files?); "
                             "start a new run without --resume", file=path)


# --------------------------------------------------------------------------------- logging


class RunLog:
    """Progress lines to a stream (stdout) and, rewritten atomically, to ``run.log``; on a
    terminal, a progress bar of the fit's outer steps below the lines (never in ``run.log``)."""

    def __init__(self, path: Path | None, stream=None, previous: str = ""):
        self.path = path
        self.stream = sys.stdout if stream is None else stream
        self.lines: list[str] = [previous.rstrip("\n")] if previous.strip() else []
        self.bar = None

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.bar is not None:
            self.bar.write(line, file=self.stream)  # clears the bar, writes, redraws it
        elif self.stream is not False:
            print(line, file=self.stream, flush=True)

    def start_bar(self, total_steps: int, done: int) -> None:
        """A bar over the run's outer steps (all trials), when the stream is a terminal."""
        isatty = getattr(self.stream, "isatty", None)
        if self.stream is False or isatty is None or not isatty() or total_steps <= 0:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, initial=min(done, total_steps), desc="fit",
                        unit="step", file=self.stream, dynamic_ncols=True, leave=True)

    def progress(self, done: int, status: str) -> None:
        """Move the bar to ``done`` outer steps, with ``status`` (trial, step, losses) beside."""
        if self.bar is not None:
            self.bar.n = min(done, self.bar.total)
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.refresh()

    def close_bar(self, done: int | None = None) -> None:
        if self.bar is not None:
            if done is not None:
                self.progress(done, self.bar.postfix or "")
            self.bar.close()
            self.bar = None

    def save(self) -> None:
        if self.path is not None:
            write_text_atomic(self.path, "\n".join(self.lines) + "\n")


# --------------------------------------------------------------------------------- the driver


@dataclass
class FitResult:
    """What a finished run produced (paths of outputs, the summary)."""

    output_dir: Path
    summary: dict
    state: State


def _starting_point(init: str, theta0: np.ndarray, lower, upper, rng) -> np.ndarray:
    if init == "random":
        return rng.uniform(lower, upper)
    if init == "educated":
        return np.clip(theta0 + rng.normal(0.0, EDUCATED_SPREAD, theta0.shape) * (upper - lower),
                       lower, upper)
    return np.clip(theta0, lower, upper)


def _random_search(start: np.ndarray, samples: int, lower, upper, rng, evaluate, model_at,
                   counter: dict, log, trial: int) -> np.ndarray:
    """The lowest-loss of ``start`` and ``samples`` parameter vectors uniform within the
    bounds; all are scored on the geometry relaxed for ``start`` (one relaxation)."""
    search_model = model_at(start, f"trial {trial + 1} start")
    candidates = [start] + [rng.uniform(lower, upper) for _ in range(samples)]
    scored = []
    for candidate in candidates:
        ev = evaluate(candidate, search_model)
        counter["evaluations"] += 1
        scored.append(ev.loss if ev.finite else math.inf)
    log(f"trial {trial + 1}: random search over {samples} samples, best loss "
        f"{min(scored):.6g}")
    return candidates[int(np.argmin(scored))]


def trust_update(radius: float, start_loss: float, predicted_loss: float, actual_loss: float,
                 step_length: float, converged: bool = False) -> tuple[bool, float]:
    """(accept the step, the next trust radius) after one outer step.

    start_loss: the step's starting loss (relaxed under its own parameters); predicted_loss:
    the in-step loss at the step's end (geometry of the start); actual_loss: the end's loss
    relaxed under its own parameters; step_length: the largest scaled parameter change;
    converged: whether the step's optimizer reported convergence. A step whose optimizer
    converged where it started is accepted with the radius unchanged (the trial's convergence
    test then ends it); one that stopped there otherwise (a failed line search) is rejected, so
    that the next step tries a smaller radius.
    """
    if converged and step_length == 0.0 and not predicted_loss < start_loss:
        return True, radius
    actual = start_loss - actual_loss
    if not math.isfinite(actual_loss) or not actual > 0.0:
        return False, 0.25 * (step_length if step_length > 0.0 else radius)
    predicted = start_loss - predicted_loss
    ratio = actual / predicted if predicted > 0.0 else math.inf
    if ratio < 0.25:
        return True, 0.5 * step_length
    if ratio > 0.75 and step_length >= 0.9 * radius:
        return True, min(1.0, 2.0 * radius)
    return True, radius


def _rng(seed: int, state: dict | None) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    if state is not None:
        rng.bit_generator.state = state
    return rng


def run_fit(config: Config, *, resume: bool = False, overwrite: bool = False,
            accept_changed_inputs: bool = False, stream=None,
            stop_after_steps: int | None = None) -> FitResult:
    """Run the fit ``config`` describes and write its outputs (see the module docstring).

    The inputs are validated first (``reaxopt.validate``), then the output directory is locked
    for this run (``reaxopt.rundir``): an earlier run's outputs there are an error unless
    ``resume`` continues that run or ``overwrite`` deletes them; ``resume`` on changed inputs
    is an error unless ``accept_changed_inputs`` (the kept force fields are then scored again).
    An unexpected exception is written with its traceback to run.log and raised as
    ``InternalError``. stream: where progress lines go (default stdout; False: only run.log).
    stop_after_steps: stop (as if interrupted, checkpoint written, no outputs) after this many
    outer steps of this invocation -- for tests of ``resume``.
    """
    if resume and overwrite:
        raise InputError("--resume continues the run in the output directory and --overwrite "
                         "deletes it; expected one of them", file=config.path)
    wall_start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs = load_inputs(config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with rundir.RunLock(out):
        rundir.prepare(out, resume=resume, overwrite=overwrite, config_path=config.path)
        fingerprint = rundir.fingerprint(config)
        changed = _changed_inputs(out / CHECKPOINT, fingerprint, accept_changed_inputs) \
            if resume else []
        previous_log = (out / "run.log").read_text() if resume and (out / "run.log").exists() \
            else ""
        log = RunLog(out / "run.log", stream, previous_log)
        for w in caught:
            log(f"warning: {' '.join(str(w.message).split())}")
        log(f"reaxopt fit {config.path}{' --resume' if resume else ''}")
        for line in changed:
            log(f"inputs changed since the checkpoint (--accept-changed-inputs): {line}")
        try:
            return _fit(config, inputs, log, fingerprint, wall_start, resume=resume,
                        rescore=bool(changed), stop_after_steps=stop_after_steps)
        except (InputError, FitInterrupted):
            raise
        except Exception as exc:
            what = (f"cannot write {exc.filename}: {exc.strerror}" if isinstance(exc, OSError)
                    and exc.filename else " ".join(f"{type(exc).__name__}: {exc}".split()))
            log(f"internal error: {what}; the checkpoint of the last completed outer step is "
                f"kept ({out / CHECKPOINT}, if one was written)")
            log.lines += traceback.format_exc().rstrip("\n").splitlines()
            saved = out / "run.log"
            try:
                log.save()
            except OSError:
                saved = None
            raise InternalError(f"{what}; the fit's checkpoint of its last completed outer "
                                f"step, if any, is in {out}", saved) from exc


def _changed_inputs(checkpoint_path: Path, fingerprint: dict, accept: bool) -> list[str]:
    """What changed in the inputs since the checkpoint was written (its ``inputs``); an
    InputError listing it unless ``accept``."""
    try:
        saved = json.loads(checkpoint_path.read_text()).get("inputs")
    except (OSError, ValueError, AttributeError):
        return []  # load_checkpoint reports an unreadable checkpoint
    if saved is None:
        return []  # a checkpoint from before fingerprints
    found = rundir.changes(saved, fingerprint)
    if found and not accept:
        raise InputError("--resume: the inputs changed since the checkpoint was written ("
                         + "; ".join(found) + "): the kept force fields were judged under the "
                         "old ones. Restore them, start over with --overwrite, or resume with "
                         "--accept-changed-inputs to score the kept force fields again under the "
                         "new inputs", file=checkpoint_path)
    return found


def _fit(config: Config, inputs: Inputs, log: RunLog, fingerprint: dict, wall_start: float, *,
         resume: bool, rescore: bool, stop_after_steps: int | None) -> FitResult:
    """``run_fit``'s work, in its locked output directory with its log."""
    from reaxopt import report

    out = Path(config.output_dir)
    checkpoint_path = out / CHECKPOINT
    opt = config.optimizer
    problem = build_problem(inputs)
    tmap = problem.theta_map
    lower, upper = tmap.lower, tmap.upper
    span = upper - lower  # fitted parameters have a range; equal bounds are held fixed
    theta_start = np.clip(problem.theta_start, lower, upper)
    relaxer = make_relaxer(problem, config, log)
    minimized = bool(relaxer.minimized)
    carry = minimized and config.minimize.carry
    model_at = relaxer.relaxed

    log(f"model: {problem.model.n_structures} structures; training items "
        f"{sum(problem.training.counts().values())}, "
        f"validation items {len(problem.validation_info)}; {tmap.size} parameters")
    for line in problem.model.summary_lines():
        log(line)

    labels = list(tmap.labels)
    if resume:
        state = _resumed_state(checkpoint_path, labels,
                               [problem.model.n_atoms[k] for k in relaxer.minimized], opt, log,
                               forget_relaxations=rescore)
    else:
        state = State(labels=labels)
    state.inputs = fingerprint
    rng = _rng(opt.seed, state.rng)
    evaluate = make_evaluator(problem, opt.regularization, theta_start)

    def from_inputs(theta, what: str) -> Relaxed:
        """The model relaxed from the input geometries under theta (placed from the checkpoint
        for the starting force field)."""
        if state.start_geometries is not None and np.array_equal(theta, theta_start):
            return relaxer.placed(theta, geometries_from_json(state.start_geometries),
                                  f"{what}, as relaxed before")
        return model_at(theta, what)

    log("evaluating the starting force field"
        + (f" (relaxing {len(relaxer.minimized)} structures first)" if minimized else "")
        + "; a first run on a data set compiles (minutes for a large one), later runs reuse "
        "the compiled functions")
    t0 = time.perf_counter()
    start_model = from_inputs(theta_start, "starting force field")
    if minimized:
        state.start_geometries = geometries_to_json(start_model.geometries)
    initial = evaluate(theta_start, start_model)
    compile_seconds = time.perf_counter() - t0
    log(f"compiled and evaluated the starting force field in {compile_seconds:.1f} s: "
        f"{_losses(initial)}")
    if not initial.finite:
        log(f"warning: the starting force field gives a non-finite loss: {initial.diagnosis}; "
            "the fit goes on, and steers away from non-finite losses")
    counter = {"evaluations": state.evaluations}

    def selection(ev: Evaluation) -> float:
        value = ev.validation_loss if ev.validation_loss is not None else ev.loss
        return value if math.isfinite(value) and ev.finite else math.inf

    step_seen = {"best": math.inf}  # the lowest selection loss seen in the current outer step

    def consider(ev: Evaluation, trial: int, step: int, iteration: int) -> None:
        candidate = {"theta": ev.theta.tolist(), "loss": ev.loss, "data_loss": ev.data_loss,
                     "validation_loss": ev.validation_loss, "trial": trial + 1,
                     "step": step + 1, "iteration": iteration}
        lowest = state.lowest_training
        if ev.finite and math.isfinite(ev.loss) and (lowest is None or ev.loss < lowest["loss"]):
            state.lowest_training = candidate
        score = selection(ev)
        step_seen["best"] = min(step_seen["best"], score)
        if state.best is not None:
            previous = state.best["selection"]
            tie = abs(score - previous) <= 1e-12 * max(1.0, abs(previous))
            # a tie in validation (parameters it does not depend on) goes to the training loss
            if not (score < previous and not tie) and not (tie and ev.loss < state.best["loss"]):
                return
        state.best = {**candidate, "selection": score}

    def no_selection(*args) -> None:
        """With relaxed structures an in-step loss sees them at the step start's geometry
        (moved by the linearised response), meaningless far from the start: only step ends,
        relaxed again under their own parameters, are selected."""

    def consider_where_exact(step_model: Relaxed, ev: Evaluation, *args) -> None:
        """Single points: an in-step iterate is exact where the gates held since the step's
        start are still LAMMPS's; elsewhere, if it looks better than the best so far, it is
        evaluated again with LAMMPS's gates and considered with that loss."""
        if not _gates_hold(problem, step_model, ev.theta):
            lowest = state.lowest_training
            if not (selection(ev) < state.best["selection"]
                    or (lowest is not None and ev.finite and ev.loss < lowest["loss"])):
                return
            ev = step_evaluate(ev.theta, model_at(ev.theta, "iterate"))
            counter["evaluations"] += 1
        consider(ev, *args)

    if state.best is None or rescore:
        kept = [c for c in (state.best, state.lowest_training) if c is not None]
        state.best = state.lowest_training = None
        consider(initial, -1, -1, 0)  # trial 0, step 0: the starting force field
        for candidate in kept:  # --accept-changed-inputs: judged again under the new inputs
            theta = np.clip(np.array(candidate["theta"]), lower, upper)
            ev = evaluate(theta, from_inputs(theta, "a kept force field, under the new inputs"))
            consider(ev, candidate["trial"] - 1, candidate["step"] - 1, candidate["iteration"])
            log(f"kept force field of trial {candidate['trial']} step {candidate['step']} "
                f"scored again under the new inputs: {_losses(ev)} (was loss "
                f"{candidate['loss']:.6g})")
    elapsed0 = state.elapsed

    def elapsed() -> float:
        return elapsed0 + time.perf_counter() - wall_start

    saved = {"state": json.loads(json.dumps(state.to_json()))}

    def checkpoint() -> None:
        state.rng = rng.bit_generator.state
        state.elapsed = elapsed()
        state.evaluations = counter["evaluations"]
        data = state.to_json()
        _write_json_atomic(checkpoint_path, data)
        saved["state"] = json.loads(json.dumps(data))
        log.save()

    with _interruptible(checkpoint_path) as raise_if_signalled:

        def step_evaluate(theta, relaxed):
            raise_if_signalled()
            ev = evaluate(theta, relaxed)
            raise_if_signalled()
            return ev

        steps_run = 0
        log.start_bar(opt.trials * opt.steps, _steps_done(state, opt))
        try:
            while opt.steps > 0:
                if state.trial >= opt.trials:
                    # trials of an earlier run that ran out of steps, when more are asked
                    pending = _trials_to_extend(state, opt)
                    if not pending:
                        break
                    state.trial = pending[0]
                trial = state.trial
                if state.theta is None and trial < len(state.trial_ends):
                    end = state.trial_ends[trial]
                    if not _extendable(end, opt):
                        state.trial += 1
                        continue
                    state.theta, state.radius, state.geometries = \
                        end["theta"], end["radius"], end["geometries"]
                    state.step, state.end_reason = end["steps"], None
                    state.trial_best_selection = end.get("trial_best_selection")
                    state.stale_steps = end.get("stale_steps", 0)
                    log(f"trial {trial + 1}: continuing after its step {end['steps']} "
                        f"(radius {end['radius']:.3g}) up to step {opt.steps}")
                if state.theta is None:
                    start = _starting_point(opt.init, theta_start, lower, upper, rng)
                    if opt.random_search:
                        start = _random_search(start, opt.random_search, lower, upper, rng,
                                               evaluate, model_at, counter, log, trial)
                    state.theta = start.tolist()
                    state.step, state.end_reason = 0, None
                    state.stale_steps = 0
                    state.trial_best_selection = (selection(initial) if np.array_equal(
                        start, theta_start) else None)
                while state.step < opt.steps and state.end_reason is None:
                    if stop_after_steps is not None and steps_run >= stop_after_steps:
                        raise FitInterrupted(signal.SIGTERM, checkpoint_path)
                    theta, step = np.array(state.theta), state.step
                    if state.radius is None:
                        # single points: the in-step loss is exact up to the held gates' jumps,
                        # so the first step may span the whole range
                        state.radius = opt.trust_radius if minimized else 1.0
                    radius = state.radius
                    where = f"trial {trial + 1} step {step + 1}"
                    carried = None
                    if minimized:
                        if state.geometries is None:  # the trial's start
                            state.geometries = geometries_to_json(
                                from_inputs(theta, f"trial {trial + 1} start").geometries)
                        at_theta = geometries_from_json(state.geometries)
                        carried = at_theta if carry else None
                        step_model = relaxer.placed(theta, at_theta, where)
                        in_step = no_selection
                    else:
                        step_model = _gated_at(problem, theta)
                        in_step = partial(consider_where_exact, step_model)
                    raise_if_signalled()
                    step_seen["best"] = math.inf
                    result, last = _outer_step(partial(step_evaluate, relaxed=step_model), theta,
                                               lower, span, opt, log, counter, in_step, trial, step,
                                               state, elapsed, radius,
                                               lambda status: log.progress(
                                                   _steps_done(state, opt), status))
                    before = last["start_loss"]
                    theta_end = lower + np.clip(result.x, 0.0, 1.0) * span
                    end_model = model_at(theta_end, f"{where} end", carried)
                    end = step_evaluate(theta_end, end_model)
                    counter["evaluations"] += 1
                    length = float(np.max(np.abs(theta_end - theta) / span, initial=0.0))
                    # a step's optimizer stopped where it started by a non-finite loss has not
                    # converged: the step is rejected, the radius shrinks below that point
                    blocked = last["non_finite"] is not None and length == 0.0
                    accepted, state.radius = trust_update(radius, before, float(result.fun),
                                                          end.loss, length,
                                                          result.success and not blocked)
                    if blocked:
                        state.radius = min(state.radius, 0.5 * last["non_finite"])
                    verdict = (f"; {'accepted' if accepted else 'rejected'} (in-step loss "
                               f"{float(result.fun):.6g}, step {length:.3g} of radius "
                               f"{radius:.3g}; next radius {state.radius:.3g})")
                    if blocked:
                        verdict += (f"; stopped by a non-finite loss {last['non_finite']:.3g} "
                                    "away (scaled)")
                    if not end.finite:
                        verdict += f"; not finite at the step's end: {end.diagnosis}"
                    if not carry:
                        consider(end, trial, step, last["iterations"])
                    elif accepted:
                        # carried relaxations judge the steps; the force field is selected on
                        # what a zero-step run of it gives: relaxed from the input geometries
                        # (soft modes stop elsewhere: disulfide 6341.97 carried, 6328.75 here)
                        honest = step_evaluate(theta_end,
                                               from_inputs(theta_end, f"{where} end, from the "
                                                           "input geometries"))
                        counter["evaluations"] += 1
                        consider(honest, trial, step, last["iterations"])
                        verdict += f"; from the input geometries: {_losses(honest)}"
                    if accepted:
                        state.theta = theta_end.tolist()
                        if minimized:
                            state.geometries = geometries_to_json(end_model.geometries)
                    event = STEP_EVENTS[0] if accepted else STEP_EVENTS[1]
                    state.history.append(_history_row(trial, step, last["iterations"], end,
                                                      state.best, elapsed(), event))
                    log(f"trial {trial + 1} step {step + 1}/{opt.steps} done: {_losses(end)}, "
                        f"{last['iterations']} iterations ({optimizer_message(result)}){verdict}"
                        + _memory_note())
                    state.step += 1
                    _end_trial_if_done(state, opt, log, accepted, before, end.loss,
                                       step_seen["best"])
                    steps_run += 1
                    checkpoint()
                    log.progress(_steps_done(state, opt),
                                 f"trial {trial + 1} step {step + 1} {_losses(end)}")
                end = {"trial": trial + 1, "reason": state.end_reason or "steps",
                       "steps": state.step, "theta": state.theta, "radius": state.radius,
                       "geometries": state.geometries,
                       "trial_best_selection": state.trial_best_selection,
                       "stale_steps": state.stale_steps}
                state.trial_ends += [None] * (trial + 1 - len(state.trial_ends))
                state.trial_ends[trial] = end
                state.trial += 1
                state.theta, state.radius, state.geometries = None, None, None
                checkpoint()
            state.finished = True
            checkpoint()
        except FitInterrupted as exc:
            # the last completed outer step's state: a resume repeats the interrupted step
            _write_json_atomic(checkpoint_path, saved["state"])
            completed = sum(row["event"] in STEP_EVENTS for row in saved["state"]["history"])
            log(f"{exc}: checkpoint saved to {checkpoint_path} (after {completed} completed outer "
                f"steps); continue with: reaxopt fit {config.path} --resume")
            log.save()
            raise
        finally:
            log.close_bar(_steps_done(state, opt) if state.finished else None)

    best_theta = np.array(state.best["theta"])
    fitted = evaluate(best_theta, from_inputs(best_theta, "best force field"))
    # selected on validation, the best force field may not be the one of the lowest training
    # loss: that one is written too, evaluated the same way
    lowest = None
    if fitted.validation_loss is not None and state.lowest_training is not None and \
            state.lowest_training["theta"] != state.best["theta"]:
        theta_lowest = np.array(state.lowest_training["theta"])
        lowest = evaluate(theta_lowest, from_inputs(theta_lowest, "lowest training loss"))
        log(f"lowest training loss force field (trial {state.lowest_training['trial']} step "
            f"{state.lowest_training['step']})"
            f"{', relaxed from the input geometries' if minimized else ''}: {_losses(lowest)}")
    summary = report.write_outputs(
        out, config=config, inputs=inputs, problem=problem, initial=initial, fitted=fitted,
        theta_initial=theta_start, theta_best=best_theta, best=state.best,
        lowest_training=None if lowest is None else (lowest, state.lowest_training),
        history=state.history, wall_seconds=elapsed(), compile_seconds=compile_seconds,
        evaluations=counter["evaluations"], log=log)
    log(f"done in {elapsed():.1f} s: loss {initial.loss:.6g} -> {fitted.loss:.6g}"
        + ("" if fitted.validation_loss is None
           else f", validation {initial.validation_loss:.6g} -> {fitted.validation_loss:.6g}")
        + f"; outputs in {out}")
    log.save()
    return FitResult(out, summary, state)


def _gated_at(problem: Problem, theta) -> Relaxed:
    """The problem's model (input geometries) with the bond-order gates of theta held: exact at
    theta and smooth in the parameters around it (``reaxopt.packed.gated``)."""
    params = problem.theta_map.to_params(jnp.asarray(theta), problem.base_params)
    return Relaxed(gated_model(problem.model, params))


def _gates_hold(problem: Problem, relaxed: Relaxed, theta) -> bool:
    """Whether the gates ``relaxed`` holds are LAMMPS's at theta (its loss there is exact)."""
    model = relaxed.model
    if model.packed is None:
        return True
    params = problem.theta_map.to_params(jnp.asarray(theta), problem.base_params)
    return gates_hold(model.packed, params, model.topology)


@contextlib.contextmanager
def _interruptible(checkpoint_path: Path):
    """Within it SIGINT and SIGTERM raise ``FitInterrupted`` (in the main thread; the previous
    handlers come back after). Yields a check that raises it again: library code can swallow
    the handler's exception (JAX reads its persistent cache in a try/except that turns errors
    into warnings), so the fit checks before and after each evaluation."""
    import threading

    received: list[int] = []

    def on_signal(signum, frame):
        received.append(signum)
        raise FitInterrupted(signum, checkpoint_path)

    def raise_if_signalled() -> None:
        if received:
            raise FitInterrupted(received[0], checkpoint_path)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, on_signal)
    try:
        yield raise_if_signalled
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _memory_note() -> str:
    """'; memory now X GiB, peak Y GiB' (resident set, from /proc/self/status; '' without it):
    what a batch job's memory request has to cover."""
    try:
        fields = dict(line.split(":", 1) for line in
                      Path("/proc/self/status").read_text().splitlines() if ":" in line)
        now, peak = (int(fields[key].split()[0]) / 2 ** 20 for key in ("VmRSS", "VmHWM"))
    except (OSError, KeyError, ValueError):
        return ""
    return f"; memory now {now:.2f} GiB, peak {peak:.2f} GiB"


def optimizer_message(result) -> str:
    """scipy's message on how a step's optimizer ended, with the bare 'ABNORMAL: ' of L-BFGS-B
    (scipy 1.15 on) spelled out."""
    message = " ".join(str(result.message).split())
    if message.rstrip(":") == "ABNORMAL":
        return ("ABNORMAL: the line search found no point that lowers the loss enough along its "
                "direction, and stopped at its previous iterate")
    return message


def _losses(ev: Evaluation) -> str:
    """'loss L' or 'loss L, validation V' for a log line."""
    return f"loss {ev.loss:.6g}" + ("" if ev.validation_loss is None
                                    else f", validation {ev.validation_loss:.6g}")


def _history_row(trial, step, iteration, ev: Evaluation, best, elapsed, event) -> dict:
    return {"trial": trial + 1, "step": step + 1, "iteration": iteration, "event": event,
            "loss": ev.loss, "validation_loss": ev.validation_loss,
            "best_selection": best["selection"] if best else None,
            "elapsed_s": round(elapsed, 3)}


def _outer_step(evaluate, theta, lower, span, opt, log, counter, consider, trial, step, state,
                elapsed, radius=None, progress=None):
    """One scipy.optimize.minimize call from ``theta`` in the scaled variables u in [0, 1],
    each within ``radius`` of its start when given; ``progress`` (when given) gets a short
    status after each iteration, for a progress bar."""
    recent: list[tuple[np.ndarray, Evaluation]] = []  # the last few evaluations
    warned: set[str] = set()
    # non_finite: the scaled distance from the start to the nearest non-finite evaluation
    last = {"iterations": 0, "start_loss": None, "non_finite": None}

    def fun(u):
        u = np.clip(np.asarray(u, float), 0.0, 1.0)
        ev = evaluate(lower + u * span)
        counter["evaluations"] += 1
        recent.append((u, ev))
        del recent[:-4]
        if last["start_loss"] is None:
            last["start_loss"] = ev.loss
        if not ev.finite:
            distance = float(np.max(np.abs(u - u0), initial=0.0))
            last["non_finite"] = min(distance, last["non_finite"] or math.inf)
            what = ev.diagnosis or ", ".join(ev.bad_structures[:10]) or "the gradient"
            if what not in warned:
                warned.add(what)
                log(f"warning: non-finite loss or gradient at trial {trial + 1} step {step + 1}: "
                    f"{what}; the optimizer is steered away (its line search steps "
                    "back, and a step ending there is rejected with a smaller trust radius)")
            return BAD_LOSS, np.zeros_like(u)
        return ev.loss, ev.gradient * span

    def callback(xk):
        last["iterations"] += 1
        if not recent:
            return
        xk = np.clip(np.asarray(xk, float), 0.0, 1.0)
        ev = next((e for u, e in reversed(recent) if np.array_equal(u, xk)), recent[-1][1])
        consider(ev, trial, step, last["iterations"])
        row = _history_row(trial, step, last["iterations"], ev, state.best, elapsed(),
                           "iteration")
        state.history.append(row)
        best = state.best["selection"]
        # the best so far is on the selection's loss: validation where there is one
        log(f"trial {trial + 1} step {step + 1} iter {last['iterations']:4d} "
            f"loss {ev.loss:.6e}"
            + (f" best {best:.6e}" if ev.validation_loss is None else
               f" validation {ev.validation_loss:.6e} best validation {best:.6e}")
            + f" elapsed {elapsed():.1f} s")
        if progress is not None:
            progress(f"trial {trial + 1} step {step + 1} iter {last['iterations']} "
                     f"loss {ev.loss:.6g} best {best:.6g}")

    u0 = np.clip((theta - lower) / span, 0.0, 1.0)
    options = {"maxiter": opt.max_iterations, "ftol": opt.tolerance}
    low, high = np.zeros_like(u0), np.ones_like(u0)
    if radius is not None:
        low, high = np.maximum(low, u0 - radius), np.minimum(high, u0 + radius)
    result = scipy.optimize.minimize(fun, u0, jac=True, method=opt.method,
                                     bounds=list(zip(low, high)), options=options,
                                     callback=callback)
    return result, last
