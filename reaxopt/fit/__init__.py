"""Fit the selected ReaxFF parameters: scipy optimizers driven by one jitted loss and gradient.

The package follows the fit's pipeline:

* ``problem``: the model of every structure, the compiled items, the parameter map, and
  ``make_evaluator`` (the loss, its gradient and the validation loss at theta).
* ``state``: the run state a checkpoint holds (trials, best force fields, history, generator).
* ``starts``: where trials start; ``local``: one outer step, scipy L-BFGS-B/SLSQP within a trust
  region of the parameters scaled to [0, 1] by their bounds, and the trust-region update.
* ``driver``: ``Fit``, the run state plus a step; ``observers``: selection, history, log lines,
  progress, early stopping and checkpoint, attached from outside; ``runlog``: the log sink.
* ``run``: ``run_fit(config)``, from the inputs to the written outputs.

configs/README.md describes every setting and what a fit writes.
"""

from reaxopt.fit.driver import Fit, FitInterrupted, Setup
from reaxopt.fit.local import BAD_LOSS, MIN_TRUST_RADIUS, optimizer_message, trust_update
from reaxopt.fit.problem import (Evaluation, Problem, build_problem, forcefield_for,
                                     make_evaluator)
from reaxopt.fit.run import FitResult, run_fit
from reaxopt.fit.runlog import RunLog
from reaxopt.fit.state import CHECKPOINT, STEP_EVENTS, RunState, Trial

__all__ = ["BAD_LOSS", "CHECKPOINT", "Evaluation", "Fit", "FitInterrupted", "FitResult",
           "MIN_TRUST_RADIUS", "Problem", "RunLog", "RunState", "STEP_EVENTS", "Setup", "Trial",
           "build_problem", "forcefield_for", "make_evaluator", "optimizer_message", "run_fit",
           "trust_update"]
