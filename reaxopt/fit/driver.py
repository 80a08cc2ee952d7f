"""The fit driver: a run state plus a step.

``Fit(setup, state, ...)`` holds the host-side set-up (``Setup``: the problem, the relaxer, the
bounds, the starting force field's evaluation) and the ``RunState``. ``step(trial)`` runs one
outer step of a trial (the local stage, ``reaxopt.fit.local``) and tells the observers;
``run()`` steps the trials in order until each has ended or run out of steps. Observers attach
from outside (``attach``): selection, history, log lines, progress, early stopping, checkpoint.

A step relaxes nothing new at its start (the trial's geometries were relaxed under its
parameters), optimizes within the trust radius at those geometries (moved by the linearised
response) or, for single points, with the bond-order gates of its start held; then the step's
end is relaxed again under its own parameters and judged (``trust_update``).
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from reaxopt.fit.budget import budget_spent, evaluations_left, trial_limit
from reaxopt.fit.local import MIN_TRUST_RADIUS, local_step, trust_update
from reaxopt.fit.observers import Selection, StepRecord
from reaxopt.fit.explore import explore
from reaxopt.fit.problem import Evaluation, Problem
from reaxopt.fit.starts import random_search, starting_point
from reaxopt.fit.state import RunState, Trial
from reaxopt.relaxation import Relaxed, geometries_from_json, geometries_to_json


class FitInterrupted(Exception):
    """SIGINT or SIGTERM arrived; the checkpoint has been saved."""

    def __init__(self, signum: int, checkpoint=None):
        self.signum = signum
        self.checkpoint = checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class Setup:
    """What a fit fixes on the host before its first step.

    evaluate(theta, relaxed=None) -> Evaluation (uncounted); relaxer: ``make_relaxer``'s;
    lower, upper, span: bounds (P,); theta_start: the force field's values clipped into them;
    gated(theta) -> the model with theta's bond-order gates held, and exact(model, theta) ->
    whether those gates are LAMMPS's at theta (single points; ``reaxopt.fit.problem``);
    initial: the starting force field's evaluation; score(theta, relaxed=None) -> the loss alone
    (inf where not finite; None: evaluate's), the global stage's screen.
    """

    config: object
    problem: Problem | None
    relaxer: object
    evaluate: Callable
    lower: np.ndarray
    upper: np.ndarray
    span: np.ndarray
    theta_start: np.ndarray
    gated: Callable | None = None
    exact: Callable | None = None
    initial: Evaluation | None = None
    score: Callable | None = None

    @property
    def minimized(self) -> bool:
        return bool(self.relaxer.minimized)

    @property
    def carry(self) -> bool:
        return self.minimized and self.config.minimize.carry


class Fit:
    """A fit in progress: ``state`` (saved whole in the checkpoint) plus ``step``."""

    def __init__(self, setup: Setup, state: RunState, log, rng: np.random.Generator,
                 elapsed: Callable[[], float], check_signals: Callable[[], None] = lambda: None):
        self.setup = setup
        self.state = state
        self.log = log
        self.rng = rng
        self.opt = setup.config.optimizer
        self.elapsed = elapsed
        self.check_signals = check_signals
        self.observers: list = []
        self.selection = self.attach(Selection())

    def attach(self, observer):
        """Call ``observer`` at the events it has a method for (``reaxopt.fit.observers``)."""
        self.observers.append(observer)
        return observer

    def notify(self, event: str, *args) -> None:
        for observer in self.observers:
            method = getattr(observer, event, None)
            if method is not None:
                method(self, *args)

    def snapshot(self) -> RunState:
        """The state with the generator's state and the elapsed time brought up to date."""
        self.state.rng = self.rng.bit_generator.state
        self.state.elapsed = self.elapsed()
        return self.state

    def steps_done(self) -> int:
        return self.state.steps_done(self.opt.steps, self.opt.trials)

    # ------------------------------------------------------------------ evaluations

    def evaluate(self, theta, relaxed: Relaxed | None = None) -> Evaluation:
        """One counted evaluation, between checks for a signal."""
        self.check_signals()
        ev = self.setup.evaluate(theta, relaxed)
        self.state.evaluations += 1
        self.check_signals()
        return ev

    def score(self, theta, relaxed: Relaxed | None = None) -> float:
        """One counted evaluation of the loss alone (inf where not finite)."""
        if self.setup.score is None:
            ev = self.evaluate(theta, relaxed)
            return ev.loss if ev.finite else math.inf
        self.check_signals()
        self.state.evaluations += 1
        return self.setup.score(theta, relaxed)

    def model_at(self, theta, what: str, carried=None) -> Relaxed:
        return self.setup.relaxer.relaxed(theta, what, carried)

    def from_inputs(self, theta, what: str) -> Relaxed:
        """The model relaxed from the input geometries under theta (placed from the checkpoint
        for the starting force field)."""
        saved = self.state.start_geometries
        if saved is not None and np.array_equal(theta, self.setup.theta_start):
            return self.setup.relaxer.placed(theta, geometries_from_json(saved),
                                             f"{what}, as relaxed before")
        return self.model_at(theta, what)

    def consider(self, ev: Evaluation, trial: int, step: int, iteration: int) -> None:
        """A force field that may be selected (trial and step 0-based)."""
        self.notify("candidate", ev, trial, step, iteration)

    # ------------------------------------------------------------------ the start

    def begin(self, rescore: bool = False) -> float:
        """Evaluate the starting force field (relaxing first) and consider it; with ``rescore``
        (the inputs changed) judge the kept force fields again. Returns the seconds the first
        evaluation took, with its compilation."""
        s, state, log = self.setup, self.state, self.log
        log("evaluating the starting force field"
            + (f" (relaxing {len(s.relaxer.minimized)} structures first)" if s.minimized else "")
            + "; a first run on a data set compiles (minutes for a large one), later runs reuse "
            "the compiled functions")
        t0 = time.perf_counter()
        model = self.from_inputs(s.theta_start, "starting force field")
        if s.minimized:
            state.start_geometries = geometries_to_json(model.geometries)
        s.initial = s.evaluate(s.theta_start, model)
        seconds = time.perf_counter() - t0
        log(f"compiled and evaluated the starting force field in {seconds:.1f} s: "
            f"{s.initial.text()}")
        if not s.initial.finite:
            log(f"warning: the starting force field gives a non-finite loss: "
                f"{s.initial.diagnosis}; the fit goes on, and steers away from non-finite losses")
        if state.best is None or rescore:
            kept = [c for c in (state.best, state.lowest_training) if c is not None]
            state.best = state.lowest_training = None
            self.consider(s.initial, -1, -1, 0)  # trial 0, step 0: the starting force field
            for candidate in kept:  # --accept-changed-inputs: judged under the new inputs
                theta = np.clip(np.array(candidate["theta"]), s.lower, s.upper)
                ev = s.evaluate(theta, self.from_inputs(theta, "a kept force field, under the "
                                                        "new inputs"))
                self.consider(ev, candidate["trial"] - 1, candidate["step"] - 1,
                              candidate["iteration"])
                log(f"kept force field of trial {candidate['trial']} step {candidate['step']} "
                    f"scored again under the new inputs: {ev.text()} (was loss "
                    f"{candidate['loss']:.6g})")
        return seconds

    # ------------------------------------------------------------------ the budget

    def budget_spent(self) -> str | None:
        return budget_spent(self.opt.budget, self.state.evaluations, self.elapsed())

    def evaluations_left(self) -> float:
        return evaluations_left(self.opt.budget, self.state.evaluations)

    # ------------------------------------------------------------------ the global stage

    def explore(self) -> None:
        """The global stage (``reaxopt.fit.explore.explore``), before the first trial."""
        explore(self)

    # ------------------------------------------------------------------ trials

    def next_trial(self) -> Trial | None:
        """The first trial with steps left, else a new one while the plan has room."""
        limit = trial_limit(self.opt, self.state.trials)
        for trial in self.state.trials[:limit]:
            if trial.has_steps(self.opt.steps):
                return trial
        if limit is None or len(self.state.trials) < limit:
            return self.start_trial()
        return None

    def start_trial(self) -> Trial:
        """A new trial at its starting point: the global stage's next point, else
        ``optimizer.init`` (``educated`` instead of ``fixed`` for the starts beyond
        ``optimizer.trials``) and ``random_search``."""
        s, number = self.setup, len(self.state.trials) + 1
        if number <= len(self.state.candidates):  # handed over by the global stage
            start, loss = self.state.candidates[number - 1]
            self.log(f"trial {number}: starts from the search's point {number} (loss "
                     f"{loss:.6g} at the starting force field's relaxations)")
            trial = Trial(number, list(start))
            self.state.trials.append(trial)
            return trial
        init = self.opt.init
        if number > self.opt.trials and init == "fixed":
            init = "educated"  # a new start, not the first trial's again
        start = starting_point(init, s.theta_start, s.lower, s.upper, self.rng)
        if self.opt.random_search:
            model = self.model_at(start, f"trial {number} start")

            def score(theta):
                ev = self.evaluate(theta, model)
                return ev.loss if ev.finite else math.inf

            start, best = random_search(start, self.opt.random_search, s.lower, s.upper,
                                        self.rng, score)
            self.log(f"trial {number}: random search over {self.opt.random_search} samples, "
                     f"best loss {best:.6g}")
        at_start = np.array_equal(start, s.theta_start) and s.initial is not None
        trial = Trial(number, start.tolist(),
                      best_selection=s.initial.selection if at_start else None)
        self.state.trials.append(trial)
        return trial

    # ------------------------------------------------------------------ one outer step

    def _step_model(self, trial: Trial, theta: np.ndarray, where: str):
        """(the model the step optimizes on, the geometries carried to its end's relaxation,
        what to do with an in-step iterate that may be selected)."""
        if not self.setup.minimized:
            model = self.setup.gated(theta)
            return model, None, partial(self._consider_where_exact, model)
        if trial.geometries is None:  # the trial's start
            trial.geometries = geometries_to_json(
                self.from_inputs(theta, f"trial {trial.number} start").geometries)
        at_theta = geometries_from_json(trial.geometries)
        model = self.setup.relaxer.placed(theta, at_theta, where)
        # in-step losses see the relaxed structures at the start's geometry: only step ends,
        # relaxed again under their own parameters, are selected
        return model, at_theta if self.setup.carry else None, None

    def _consider_where_exact(self, model: Relaxed, ev: Evaluation, trial: int, step: int,
                              iteration: int) -> None:
        """Single points: an in-step iterate is exact where the gates held since the step's
        start are still LAMMPS's; elsewhere, if it looks better than the best so far, it is
        evaluated again with LAMMPS's gates and considered with that loss."""
        if not self.setup.exact(model, ev.theta):
            lowest = self.state.lowest_training
            if not (ev.selection < self.state.best["selection"]
                    or (lowest is not None and ev.finite and ev.loss < lowest["loss"])):
                return
            ev = self.evaluate(ev.theta, self.model_at(ev.theta, "iterate"))
        self.consider(ev, trial, step, iteration)

    def step(self, trial: Trial) -> StepRecord:
        """One outer step of ``trial``; the observers hear of its iterations and its end."""
        s, opt, index = self.setup, self.opt, trial.step
        theta = np.array(trial.theta)
        if trial.radius is None:
            # single points: the in-step loss is exact up to the held gates' jumps, so the
            # first step may span the whole range
            trial.radius = opt.trust_radius if s.minimized else 1.0
        radius, where = trial.radius, f"trial {trial.number} step {index + 1}"
        model, carried, in_step = self._step_model(trial, theta, where)
        self.check_signals()
        self.notify("step_start", trial)

        def on_iteration(ev, iteration):
            if in_step is not None:
                in_step(ev, trial.number - 1, index, iteration)
            self.notify("iteration", trial, ev, iteration)

        outcome = local_step(partial(self.evaluate, relaxed=model), theta, s.lower, s.span, opt,
                             radius, on_iteration, lambda ev: self.notify("non_finite", trial,
                                                                          ev))
        return self._judge(trial, index, theta, radius, outcome, carried)

    def _judge(self, trial: Trial, index: int, theta, radius: float, outcome,
               carried) -> StepRecord:
        """Relax the step's end under its own parameters, accept or reject it, update the
        trust radius, and tell the observers."""
        s, result, where = self.setup, outcome.result, f"trial {trial.number} step {index + 1}"
        theta_end = outcome.theta_end
        length = float(np.max(np.abs(theta_end - theta) / s.span, initial=0.0))
        end_model = self.model_at(theta_end, f"{where} end", carried)
        end = self.evaluate(theta_end, end_model)
        # an optimizer stopped where it started by a non-finite loss has not converged: the
        # step is rejected and the radius shrinks below that point
        blocked = outcome.non_finite is not None and length == 0.0
        accepted, trial.radius = trust_update(radius, outcome.start_loss, float(result.fun),
                                              end.loss, length, outcome.converged and not blocked)
        if blocked:
            trial.radius = min(trial.radius, 0.5 * outcome.non_finite)
        verdict = (f"; {'accepted' if accepted else 'rejected'} (in-step loss "
                   f"{float(result.fun):.6g}, step {length:.3g} of radius {radius:.3g}; next "
                   f"radius {trial.radius:.3g})")
        if blocked:
            verdict += f"; stopped by a non-finite loss {outcome.non_finite:.3g} away (scaled)"
        if not end.finite:
            verdict += f"; not finite at the step's end: {end.diagnosis}"
        if not s.carry:
            self.consider(end, trial.number - 1, index, outcome.iterations)
        elif accepted:
            # carried relaxations judge the steps; the force field is selected on what a
            # zero-step run of it gives: relaxed from the input geometries
            honest = self.evaluate(theta_end, self.from_inputs(
                theta_end, f"{where} end, from the input geometries"))
            self.consider(honest, trial.number - 1, index, outcome.iterations)
            verdict += f"; from the input geometries: {honest.text()}"
        if accepted:
            trial.theta = theta_end.tolist()
            if s.minimized:
                trial.geometries = geometries_to_json(end_model.geometries)
        trial.step += 1
        record = StepRecord(trial, index, outcome.iterations, outcome.message, end,
                            accepted, verdict, outcome.start_loss, self.selection.step_best,
                            self._endings(trial, accepted, outcome.start_loss, end.loss))
        self.notify("step_end", record)
        if not trial.has_steps(self.opt.steps):
            self.notify("trial_end", trial)
        return record

    def _endings(self, trial: Trial, accepted: bool, start_loss, end_loss: float) -> list[str]:
        """End ``trial`` when its trust radius fell below MIN_TRUST_RADIUS, or when an accepted
        step lowered the loss by no more than optimizer.tolerance (relative); the lines that
        say so."""
        lines, where = [], f"trial {trial.number}"
        if trial.radius < MIN_TRUST_RADIUS:
            lines.append(f"{where}: trust radius {trial.radius:.3g} below {MIN_TRUST_RADIUS:g}, "
                         "the trial ends")
            trial.end_reason = "trust radius"
        # with relaxed structures the step start's in-step loss is its true loss (same geometry)
        if accepted and start_loss is not None and trial.end_reason is None and \
                start_loss - end_loss <= self.opt.tolerance * abs(end_loss):
            lines.append(f"{where}: step {trial.step} lowered the loss by "
                         f"{start_loss - end_loss:.3g} (tolerance {self.opt.tolerance:g} "
                         "relative), converged: the trial ends")
            trial.end_reason = "converged"
        return lines

    # ------------------------------------------------------------------ the loop

    def run(self, stop_after_steps: int | None = None, checkpoint_path=None) -> None:
        """Step the trials until each has ended or run out of steps (``stop_after_steps``: stop
        as if interrupted after that many, for tests of resume)."""
        steps_run = 0
        if self.opt.steps > 0:
            self.explore()
        while self.opt.steps > 0:
            spent = self.budget_spent()
            if spent:
                self._end_all("budget", f"the run's budget is spent ({spent})")
                break
            trial = self.next_trial()
            if trial is None:
                break
            if stop_after_steps is not None and steps_run >= stop_after_steps:
                raise FitInterrupted(signal.SIGTERM, checkpoint_path)
            self.step(trial)
            steps_run += 1
        self.state.finished = True
        self.notify("finished")

    def _end_all(self, reason: str, why: str) -> None:
        """End every trial that has steps left (``reason``), saying ``why``."""
        for trial in self.state.trials:
            if trial.has_steps(self.opt.steps):
                trial.end_reason = reason
                self.log(f"trial {trial.number}: ends, {why}")
                self.notify("trial_end", trial)
        self.log(f"no new trial starts: {why}")


def clock(offset: float, start: float | None = None) -> Callable[[], float]:
    """Seconds since ``start`` (default: now) plus ``offset`` (earlier runs' seconds)."""
    start = time.perf_counter() if start is None else start
    return lambda: offset + time.perf_counter() - start
