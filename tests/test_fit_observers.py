"""The fit driver's observers, each on its own, with a stand-in for the driver (``FakeFit``):
selection, history, log lines, progress, early stopping and checkpoint."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
from reaxopt.fit import RunState, Trial
from reaxopt.fit.observers import (Checkpoint, EarlyStopping, History, LogLines, Progress,
                                   Selection, StepRecord)


class FakeLog(list):
    """A RunLog stand-in: its lines, the progress calls and the saves."""

    def __init__(self):
        super().__init__()
        self.progressed, self.saves = [], 0

    def __call__(self, line):
        self.append(line)

    def progress(self, done, status):
        self.progressed.append((done, status))

    def save(self):
        self.saves += 1


class FakeFit:
    def __init__(self, steps=4):
        self.state = RunState(labels=["a"], trials=[Trial(1, [0.5])])
        self.log = FakeLog()
        self.opt = SimpleNamespace(steps=steps, trials=1)
        self.elapsed = lambda: 12.3456

    def steps_done(self):
        return self.state.steps_done(self.opt.steps, self.opt.trials)

    def snapshot(self):
        return self.state


def ev(loss, validation=None, theta=(0.5,), finite=True, diagnosis=""):
    return SimpleNamespace(theta=np.array(theta), loss=loss, data_loss=loss,
                           validation_loss=validation, finite=finite, bad_structures=["w"],
                           diagnosis=diagnosis, selection=(validation if validation is not None
                                                           else loss) if finite else math.inf,
                           text=lambda: f"loss {loss:.6g}")


def record(fit, end, accepted=True, step_best=math.inf, endings=()):
    trial = fit.state.trials[0]
    return StepRecord(trial, trial.step - 1, 7, "CONVERGENCE", end, accepted, "; verdict", 10.0,
                      step_best, list(endings))


def test_selection_keeps_the_lowest_validation_and_the_lowest_training_loss():
    fit, selection = FakeFit(), Selection()
    selection.candidate(fit, ev(10.0, 5.0, (0.1,)), -1, -1, 0)
    selection.candidate(fit, ev(8.0, 6.0, (0.2,)), 0, 0, 3)  # lower training, worse validation
    assert fit.state.best["theta"] == [0.1] and fit.state.best["selection"] == 5.0
    assert fit.state.lowest_training["theta"] == [0.2]
    assert fit.state.lowest_training["trial"] == 1 and fit.state.lowest_training["step"] == 1
    selection.candidate(fit, ev(9.0, 5.0 * (1 + 1e-14), (0.3,)), 0, 0, 4)  # a tie: lower loss
    assert fit.state.best["theta"] == [0.3]
    selection.candidate(fit, ev(1.0, None, (0.4,), finite=False), 0, 1, 1)  # never selected
    assert fit.state.best["theta"] == [0.3] and fit.state.lowest_training["theta"] == [0.2]
    assert selection.step_best == 5.0
    selection.step_start(fit, None)
    assert selection.step_best == math.inf


def test_history_rows_of_iterations_and_step_ends():
    fit, history = FakeFit(), History()
    fit.state.best = {"selection": 3.0}
    history.iteration(fit, fit.state.trials[0], ev(4.0), 2)
    fit.state.trials[0].step = 1
    history.step_end(fit, record(fit, ev(3.5), accepted=False))
    assert fit.state.history == [
        {"trial": 1, "step": 1, "iteration": 2, "event": "iteration", "loss": 4.0,
         "validation_loss": None, "best_selection": 3.0, "elapsed_s": 12.346},
        {"trial": 1, "step": 1, "iteration": 7, "event": "step rejected", "loss": 3.5,
         "validation_loss": None, "best_selection": 3.0, "elapsed_s": 12.346}]


def test_log_lines_name_each_non_finite_kind_once_per_step():
    fit, lines = FakeFit(), LogLines()
    fit.state.best = {"selection": 2.0}
    trial = fit.state.trials[0]
    lines.iteration(fit, trial, ev(4.0, 3.0), 5)
    assert fit.log[-1] == ("trial 1 step 1 iter    5 loss 4.000000e+00 validation 3.000000e+00 "
                           "best validation 2.000000e+00 elapsed 12.3 s")
    for _ in range(3):
        lines.non_finite(fit, trial, ev(math.nan, finite=False, diagnosis="x (bond)"))
    lines.non_finite(fit, trial, ev(math.nan, finite=False))
    warnings = [line for line in fit.log if line.startswith("warning")]
    assert len(warnings) == 2 and "x (bond)" in warnings[0] and ": w;" in warnings[1]
    lines.step_start(fit, trial)
    lines.non_finite(fit, trial, ev(math.nan, finite=False, diagnosis="x (bond)"))
    assert len([line for line in fit.log if line.startswith("warning")]) == 3
    trial.step = 1
    lines.step_end(fit, record(fit, ev(3.5), endings=["trial 1: converged"]))
    assert fit.log[-2].startswith("trial 1 step 1/4 done: loss 3.5, 7 iterations (CONVERGENCE)"
                                  "; verdict")
    assert fit.log[-1] == "trial 1: converged"


def test_progress_moves_the_bar_over_the_steps_of_all_trials():
    fit, progress = FakeFit(), Progress()
    fit.state.best = {"selection": 2.0}
    progress.iteration(fit, fit.state.trials[0], ev(4.0), 3)
    fit.state.trials[0].step = 1
    progress.step_end(fit, record(fit, ev(3.5)))
    assert fit.log.progressed == [(0, "trial 1 step 1 iter 3 loss 4 best 2"),
                                  (1, "trial 1 step 1 loss 3.5")]


def test_early_stopping_ends_a_trial_after_its_patience():
    fit, stopping = FakeFit(), EarlyStopping(2)
    trial = fit.state.trials[0]
    for step, seen in enumerate((5.0, 4.0, 4.5, math.inf), start=1):
        trial.step = step
        stopping.step_end(fit, record(fit, ev(1.0), step_best=seen))
        assert trial.end_reason == (None if step < 4 else "early stopping")
    assert (trial.best_selection, trial.stale_steps) == (4.0, 2)
    assert fit.log == ["trial 1: no validation loss below 4 for 2 outer steps "
                       "(optimizer.early_stopping), the trial ends"]


def test_checkpoint_writes_the_state_and_keeps_what_it_wrote(tmp_path):
    fit, checkpoint = FakeFit(), Checkpoint(tmp_path / "checkpoint.json")
    fit.state.trials[0].step = 2
    checkpoint.step_end(fit, record(fit, ev(1.0)))
    written = json.loads((tmp_path / "checkpoint.json").read_text())
    assert written == checkpoint.saved and written["version"] == 2
    assert RunState.from_json(written) == fit.state and fit.log.saves == 1
    fit.state.finished = True
    checkpoint.finished(fit)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["finished"] is True
    assert fit.log.saves == 2


def test_observers_hear_the_events_they_have_methods_for_in_the_order_attached():
    from reaxopt.fit.driver import Fit

    heard = []

    class Named:
        def __init__(self, name):
            self.name = name

        def step_end(self, fit, record):
            heard.append((self.name, record))

    fit = Fit.__new__(Fit)
    fit.observers = []
    first, second = fit.attach(Named("first")), fit.attach(Named("second"))
    fit.attach(Selection())  # no step_end or trial_end method: not called for them
    fit.notify("step_end", "r")
    fit.notify("trial_end", "t")
    assert heard == [("first", "r"), ("second", "r")]
    assert fit.observers[:2] == [first, second]
