"""Observers of a fit: attached to the driver from outside (``Fit.attach``), each called at the
events it has a method for, in the order attached.

Events: ``candidate(fit, ev, trial, step, iteration)`` a force field that may be selected;
``iteration(fit, trial, ev, iteration)`` after each optimizer iteration; ``non_finite(fit,
trial, ev)`` a non-finite evaluation; ``step_end(fit, record)`` after an outer step;
``trial_end(fit, trial)``; ``explored(fit, exploration)`` after each step of the global stage;
``finished(fit)``. trial: a ``reaxopt.fit.state.Trial``; record: a
``StepRecord``. Each observer writes only its own part of the run state: ``Selection`` the best
force fields, ``History`` the rows, ``EarlyStopping`` and ``Behind`` a trial's end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from reaxopt.fit.state import STEP_EVENTS, write_checkpoint


@dataclass
class StepRecord:
    """One outer step: the trial, its 0-based index, the optimizer's iterations and message,
    the evaluation at its end, whether it was accepted, a verdict for the log, the loss at its
    start, the lowest selection loss seen in it, and why the trial ended after it (lines)."""

    trial: object
    index: int
    iterations: int
    message: str
    end: object
    accepted: bool
    verdict: str
    start_loss: float | None
    step_best: float = math.inf
    endings: list = field(default_factory=list)


def _tie(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


class Selection:
    """The best force field (lowest selection loss: validation where there is one; a tie goes
    to the lower training loss) and the one of the lowest training loss, in the run state;
    ``step_best``: the lowest selection loss seen in the current outer step."""

    def __init__(self):
        self.step_best = math.inf

    def candidate(self, fit, ev, trial: int, step: int, iteration: int) -> None:
        """Consider ``ev`` (trial and step 0-based; trial -1, step -1: the starting force
        field)."""
        state = fit.state
        entry = {"theta": ev.theta.tolist(), "loss": ev.loss, "data_loss": ev.data_loss,
                 "validation_loss": ev.validation_loss, "trial": trial + 1, "step": step + 1,
                 "iteration": iteration}
        lowest = state.lowest_training
        if ev.finite and math.isfinite(ev.loss) and (lowest is None or ev.loss < lowest["loss"]):
            state.lowest_training = entry
        score = ev.selection
        self.step_best = min(self.step_best, score)
        if state.best is not None:
            previous = state.best["selection"]
            tie = _tie(score, previous)
            if not (score < previous and not tie) and not (tie and ev.loss < state.best["loss"]):
                return
        state.best = {**entry, "selection": score}

    def step_start(self, fit, trial) -> None:
        self.step_best = math.inf


def history_row(trial: int, step: int, iteration: int, ev, best, elapsed: float,
                event: str) -> dict:
    """One history.csv row (trial, step 1-based)."""
    return {"trial": trial, "step": step, "iteration": iteration, "event": event,
            "loss": ev.loss, "validation_loss": ev.validation_loss,
            "best_selection": best["selection"] if best else None,
            "elapsed_s": round(elapsed, 3)}


class History:
    """One row per optimizer iteration and per outer step in the run state's history."""

    def iteration(self, fit, trial, ev, iteration: int) -> None:
        fit.state.history.append(history_row(trial.number, trial.step + 1, iteration, ev,
                                             fit.state.best, fit.elapsed(), "iteration"))

    def step_end(self, fit, record: StepRecord) -> None:
        event = STEP_EVENTS[0] if record.accepted else STEP_EVENTS[1]
        fit.state.history.append(history_row(record.trial.number, record.index + 1,
                                             record.iterations, record.end, fit.state.best,
                                             fit.elapsed(), event))


class LogLines:
    """The progress lines: one per iteration, one per outer step, and a warning per kind of
    non-finite evaluation in a step."""

    def __init__(self):
        self.warned: set[str] = set()

    def step_start(self, fit, trial) -> None:
        self.warned = set()

    def iteration(self, fit, trial, ev, iteration: int) -> None:
        best = fit.state.best["selection"]
        # the best so far is on the selection's loss: validation where there is one
        fit.log(f"trial {trial.number} step {trial.step + 1} iter {iteration:4d} "
                f"loss {ev.loss:.6e}"
                + (f" best {best:.6e}" if ev.validation_loss is None else
                   f" validation {ev.validation_loss:.6e} best validation {best:.6e}")
                + f" elapsed {fit.elapsed():.1f} s")

    def non_finite(self, fit, trial, ev) -> None:
        what = ev.diagnosis or ", ".join(ev.bad_structures[:10]) or "the gradient"
        if what not in self.warned:
            self.warned.add(what)
            fit.log(f"warning: non-finite loss or gradient at trial {trial.number} step "
                    f"{trial.step + 1}: {what}; the optimizer is steered away (its line search "
                    "steps back, and a step ending there is rejected with a smaller trust "
                    "radius)")

    def step_end(self, fit, record: StepRecord) -> None:
        fit.log(f"trial {record.trial.number} step {record.index + 1}/{fit.opt.steps} done: "
                f"{record.end.text()}, {record.iterations} iterations ({record.message})"
                f"{record.verdict}" + memory_note())
        for line in record.endings:
            fit.log(line)


class Progress:
    """The progress bar (``RunLog``'s, on a terminal) over the outer steps of all trials."""

    def iteration(self, fit, trial, ev, iteration: int) -> None:
        fit.log.progress(fit.steps_done(), f"trial {trial.number} step {trial.step + 1} iter "
                                           f"{iteration} loss {ev.loss:.6g} best "
                                           f"{fit.state.best['selection']:.6g}")

    def step_end(self, fit, record: StepRecord) -> None:
        fit.log.progress(fit.steps_done(), f"trial {record.trial.number} step "
                                           f"{record.index + 1} {record.end.text()}")


def patience_update(trial_best: float | None, stale_steps: int, step_best: float
                    ) -> tuple[float | None, int]:
    """(the trial's lowest validation loss, outer steps since it went lower) after an outer step
    whose lowest validation loss seen was ``step_best`` (inf: none seen)."""
    if trial_best is None or step_best < trial_best - 1e-12 * max(1.0, abs(trial_best)):
        return step_best, 0
    return trial_best, stale_steps + 1


class EarlyStopping:
    """``optimizer.early_stopping``: a trial ends after that many outer steps in a row without
    a validation loss below its lowest."""

    def __init__(self, patience: int):
        self.patience = patience

    def step_end(self, fit, record: StepRecord) -> None:
        trial = record.trial
        trial.best_selection, trial.stale_steps = patience_update(
            trial.best_selection, trial.stale_steps, record.step_best)
        if trial.stale_steps >= self.patience and trial.end_reason is None:
            fit.log(f"trial {trial.number}: no validation loss below {trial.best_selection:.6g} "
                    f"for {trial.stale_steps} outer steps (optimizer.early_stopping), the trial "
                    "ends")
            trial.end_reason = "early stopping"


class Behind:
    """``optimizer.behind``: a trial ends ('behind') when, after at least two outer steps, its
    loss exceeds the lowest training loss another trial (or the starting force field) reached
    by more than that share of it, so that the run's budget goes to the next start."""

    def __init__(self, share: float):
        self.share = share

    def step_end(self, fit, record: StepRecord) -> None:
        trial, best = record.trial, fit.state.lowest_training
        if trial.end_reason is not None or trial.step < 2 or best is None or \
                best["trial"] == trial.number:
            return
        current = record.end.loss if record.accepted else record.start_loss
        limit = best["loss"] + self.share * abs(best["loss"])
        if current is not None and current > limit:
            fit.log(f"trial {trial.number}: loss {current:.6g} is more than "
                    f"{100 * self.share:g} % above the lowest {best['loss']:.6g} (trial "
                    f"{best['trial']}), the trial ends (optimizer.behind)")
            trial.end_reason = "behind"


class Checkpoint:
    """``checkpoint.json`` after every outer step and trial, and when the run finishes (with
    run.log); ``saved``: what was written last, for an interrupted run to write again."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.saved: dict | None = None

    def write(self, fit) -> None:
        self.saved = write_checkpoint(self.path, fit.snapshot())
        fit.log.save()

    def step_end(self, fit, record: StepRecord) -> None:
        self.write(fit)

    def trial_end(self, fit, trial) -> None:
        self.write(fit)

    def explored(self, fit, exploration) -> None:
        self.write(fit)

    def finished(self, fit) -> None:
        self.write(fit)


def memory_note() -> str:
    """'; memory now X GiB, peak Y GiB' (resident set, from /proc/self/status; '' without it):
    what a batch job's memory request has to cover."""
    try:
        fields = dict(line.split(":", 1) for line in
                      Path("/proc/self/status").read_text().splitlines() if ":" in line)
        now, peak = (int(fields[key].split()[0]) / 2 ** 20 for key in ("VmRSS", "VmHWM"))
    except (OSError, KeyError, ValueError):
        return ""
    return f"; memory now {now:.2f} GiB, peak {peak:.2f} GiB"
