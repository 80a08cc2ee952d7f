"""The run's budget (``optimizer.budget``) and how many trials it lets the run start."""

from __future__ import annotations

import math


def budget_spent(budget, evaluations: int, seconds: float) -> str | None:
    """Why ``budget`` (``reaxopt.config.Budget``) is spent after ``evaluations`` losses and
    ``seconds`` of wall time, in words (None: it is not)."""
    if budget.evaluations is not None and evaluations >= budget.evaluations:
        return f"{evaluations} of {budget.evaluations} evaluations"
    if budget.seconds is not None and seconds >= budget.seconds:
        return f"{seconds:.0f} of {budget.seconds:.0f} seconds"
    return None


def evaluations_left(budget, evaluations: int) -> float:
    """Loss evaluations ``budget`` leaves after ``evaluations`` (inf: no limit)."""
    return math.inf if budget.evaluations is None else budget.evaluations - evaluations


def trial_limit(optimizer, trials) -> int | None:
    """How many trials a run may start: ``optimizer.trials`` plus one new start for each of
    ``trials`` that ended behind (``optimizer.behind``); None: no limit (a budget is set, so new
    starts go on until it is spent)."""
    budget = optimizer.budget
    if budget.evaluations is not None or budget.seconds is not None:
        return None
    return optimizer.trials + sum(t.end_reason == "behind" for t in trials)
