"""The global stage and the run's budget, on a made-up problem: a Rastrigin function over
[-5.12, 5.12]^4 (global minimum 0 at the origin, a local minimum near every integer point),
driven through the real fit driver (``reaxopt.fit.driver.Fit``) with a stand-in set-up."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from reaxopt.config import Budget, MinimizeConfig, OptimizerConfig, SearchConfig
from reaxopt.fit import Evaluation, FitInterrupted, RunState
from reaxopt.fit.driver import Fit, Setup, clock
from reaxopt.fit.explore import latin_hypercube
from reaxopt.fit.observers import Behind, Checkpoint

DIMENSION = 4
START = np.full(DIMENSION, 3.1)  # in the basin of the local minimum near (3, 3, 3, 3)


def rastrigin(theta):
    theta = np.asarray(theta, float)
    value = 10.0 * len(theta) + float(np.sum(theta ** 2 - 10.0 * np.cos(2 * np.pi * theta)))
    gradient = 2.0 * theta + 20.0 * np.pi * np.sin(2 * np.pi * theta)
    return value, gradient


def evaluate(theta, relaxed=None):
    value, gradient = rastrigin(theta)
    return Evaluation(np.array(theta, float), value, gradient, value, None, np.zeros(1), None,
                      [], True)


def make_fit(search: SearchConfig, state: RunState | None = None, check=lambda: None,
             loss=evaluate, **optimizer) -> Fit:
    lower, upper = np.full(DIMENSION, -5.12), np.full(DIMENSION, 5.12)
    config = SimpleNamespace(optimizer=OptimizerConfig(**{"steps": 3, "max_iterations": 50,
                                                          **optimizer}),
                             search=search, minimize=MinimizeConfig())
    relaxer = SimpleNamespace(minimized=[], relaxed=lambda theta, what, carried=None: None)
    setup = Setup(config, None, relaxer, loss, lower, upper, upper - lower, START.copy(),
                  gated=lambda theta: None, exact=lambda model, theta: True)
    state = state or RunState(labels=[f"x{k}" for k in range(DIMENSION)])
    rng = np.random.default_rng(config.optimizer.seed)
    if state.rng is not None:
        rng.bit_generator.state = state.rng
    fit = Fit(setup, state, Log(), rng, clock(state.elapsed), check)
    fit.begin()
    return fit


class Log(list):
    """A RunLog stand-in keeping its lines."""

    def __call__(self, line):
        self.append(line)

    def progress(self, done, status):
        pass

    def save(self):
        pass


CMA = SearchConfig(method="cma", starts=32, evaluations=3000, sigma=0.3, popsize=100,
                   hand_over=1)


def test_the_global_stage_finds_the_minimum_a_local_search_misses():
    alone = make_fit(SearchConfig())
    alone.run()
    assert alone.state.best["loss"] > 1.0  # L-BFGS-B stays in the start's basin
    searched = make_fit(CMA)
    searched.run()
    best = np.array(searched.state.best["theta"])
    assert searched.state.best["loss"] < 1e-8 and np.max(np.abs(best)) < 1e-4
    assert any(line.startswith("search: CMA-ES generation") for line in searched.log)


def test_the_global_stage_scores_with_the_value_only_loss():
    """With ``Setup.score`` the stage never asks for a gradient; it counts every score as an
    evaluation and hands over the same point as with the evaluator's loss."""
    calls = {"score": 0, "evaluate": 0}

    def score(theta, relaxed=None):
        calls["score"] += 1
        return float(rastrigin(theta)[0])

    def counted(theta, relaxed=None):
        calls["evaluate"] += 1
        return evaluate(theta, relaxed)

    search = SearchConfig(method="cma", starts=8, evaluations=200, sigma=0.3, hand_over=1)
    plain = make_fit(search, steps=0)
    plain.explore()
    fit = make_fit(search, loss=counted, steps=0)
    fit.setup.score = score
    before, counted_before = calls["evaluate"], fit.state.evaluations
    fit.explore()
    assert calls["evaluate"] == before
    assert calls["score"] == fit.state.evaluations - counted_before
    assert calls["score"] >= 100
    assert fit.state.candidates == plain.state.candidates


def test_a_run_killed_in_the_global_stage_resumes_to_the_same_result(tmp_path):
    whole = make_fit(CMA)
    whole.run()

    class Kill:
        def __init__(self, after):
            self.fit, self.after = None, after

        def __call__(self):
            if self.fit is not None and self.fit.state.evaluations >= self.after:
                raise FitInterrupted(15)

    kill = Kill(after=500)  # inside CMA-ES: the starts take 33 losses, a generation 40
    killed = make_fit(CMA, check=kill)
    kill.fit = killed
    checkpoint = killed.attach(Checkpoint(tmp_path / "checkpoint.json"))
    with pytest.raises(FitInterrupted):
        killed.run()
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert saved == checkpoint.saved and not saved["trials"]
    assert 0 < saved["exploration"]["generation"] and not saved["exploration"]["done"]
    resumed = make_fit(CMA, state=RunState.from_json(saved))
    resumed.run()
    assert resumed.state.best["theta"] == whole.state.best["theta"]
    assert resumed.state.candidates == whole.state.candidates
    assert resumed.state.evaluations == whole.state.evaluations


def test_the_budget_bounds_the_whole_run():
    """150 losses: the starts (33) and one CMA-ES generation (100) fit, a second does not; local
    steps start while losses are left, and the trial in progress when they run out ends."""
    starts = []

    class StepStarts:
        def step_start(self, fit, trial):
            starts.append(fit.state.evaluations)

    fit = make_fit(CMA, budget=Budget(evaluations=150), trials=3)
    fit.attach(StepStarts())
    fit.run()
    assert fit.state.exploration["evaluations"] == 133
    assert starts[0] == 133 and all(n < 150 for n in starts)
    assert fit.state.evaluations >= 150 and all(t.end_reason for t in fit.state.trials)
    assert any("the run's budget is spent" in line for line in fit.log)


def test_a_trial_clearly_behind_the_best_ends_and_a_new_start_takes_its_place():
    """Two trials, the first from the global minimum, the second from the basin of the local
    minimum near (3, 3, 3, 3): after its second step the second is far behind and ends, and a
    third trial starts from a new point (an educated guess around the force field's)."""
    state = RunState(labels=[f"x{k}" for k in range(DIMENSION)],
                     candidates=[[[0.0] * DIMENSION, 0.0], [START.tolist(), 40.0]])
    starts = {}

    class TrialStarts:
        def step_start(self, fit, trial):
            starts.setdefault(trial.number, list(trial.theta))

    fit = make_fit(SearchConfig(), state=state, trials=2, steps=4, max_iterations=2)
    fit.attach(Behind(0.5))
    fit.attach(TrialStarts())
    fit.run()
    first, second, *new = fit.state.trials
    assert second.end_reason == "behind" and second.step == 2
    assert first.end_reason != "behind" and fit.state.best["trial"] == 1
    assert any("(optimizer.behind)" in line for line in fit.log)
    # one new start per trial behind, each new start's replacement included
    assert len(new) == sum(t.end_reason == "behind" for t in fit.state.trials) >= 1
    assert new[-1].end_reason != "behind"
    assert all(0.0 < np.max(np.abs(np.array(starts[t.number]) - START)) < 5.12 for t in new)


def test_with_a_budget_new_starts_go_on_until_it_is_spent():
    """One trial planned and a budget of 400 losses: the first trial converges in its basin
    long before, and new starts use the rest."""
    fit = make_fit(SearchConfig(), budget=Budget(evaluations=400), trials=1, steps=3)
    fit.run()
    trials = fit.state.trials
    assert len(trials) > 2 and trials[0].end_reason in ("converged", None, "trust radius")
    assert fit.state.evaluations >= 400 and trials[-1].end_reason == "budget"
    assert any("the run's budget is spent" in line for line in fit.log)
    assert fit.state.best["loss"] <= evaluate(START).loss


def test_latin_hypercube_puts_one_point_in_each_slice_of_every_axis():
    points = latin_hypercube(10, 3, np.random.default_rng(0))
    assert points.shape == (10, 3) and np.all((points >= 0) & (points < 1))
    for axis in range(3):
        assert sorted(np.floor(points[:, axis] * 10).astype(int)) == list(range(10))
    assert latin_hypercube(0, 3, np.random.default_rng(0)).shape == (0, 3)


def test_a_step_stopped_at_its_start_by_a_non_finite_loss_is_rejected_and_the_radius_shrinks():
    """Rastrigin, but not finite anywhere below the start along x0 (where the gradient points):
    the first step's optimizer cannot leave its start, so the step is rejected and the next
    radius is at most half the distance to the nearest non-finite point met."""
    def cliff(theta, relaxed=None):
        ev = evaluate(theta)
        if theta[0] < START[0]:
            ev.loss, ev.finite = float("nan"), False
        return ev

    fit = make_fit(SearchConfig(), loss=cliff, steps=1, trials=1)
    met, records = [], []

    class NonFinite:
        def non_finite(self, fit, trial, ev):
            met.append(float(np.max(np.abs(ev.theta - START) / fit.setup.span)))

        def step_end(self, fit, record):
            records.append(record)

    fit.attach(NonFinite())
    fit.run()
    trial = fit.state.trials[0]
    assert met and fit.state.best["theta"] == START.tolist()
    assert trial.theta == START.tolist() and trial.radius <= 0.5 * min(met)
    (record,) = records
    assert not record.accepted and "stopped by a non-finite loss" in record.verdict
