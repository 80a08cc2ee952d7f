"""The local stage: one outer step of a trial, a scipy L-BFGS-B or SLSQP run within a trust
region of the scaled parameters, and the trust-region update that judges it.

The optimizer works on u = (theta - lower) / span in [0, 1]; each u may move at most
``radius`` from its start. A loss that is not finite is handed to the optimizer as ``BAD_LOSS``
with a zero gradient, so its line search steps back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.optimize

BAD_LOSS = 1.0e20  # handed to the optimizer where the loss or its gradient is not finite
MIN_TRUST_RADIUS = 1e-4  # share of the bound range: a trial whose trust radius falls below ends
SAME_POINT = 1e-12  # scaled distances up to this from the start are the start (rounding in u)


@dataclass
class StepOutcome:
    """How one outer step's optimizer ended.

    result: scipy's OptimizeResult (x in scaled units); iterations: its iterations; start_loss:
    the loss at the step's start; non_finite: the scaled distance from the start to the
    nearest non-finite evaluation (None: none met); converged: whether a stopping rule of
    ``stopping_rule`` (or scipy's own) ended it; message: how it ended, in words; theta_end:
    the parameters it ended at (the start itself when it ended within SAME_POINT of it).
    """

    result: object
    iterations: int
    start_loss: float | None
    non_finite: float | None
    converged: bool = False
    message: str = ""
    theta_end: np.ndarray | None = None


def projected_gradient(u: np.ndarray, gradient: np.ndarray, low: np.ndarray,
                       high: np.ndarray) -> float:
    """The max-norm of the gradient without its components that push u out of the box
    [low, high] where u is on that bound (scaled units)."""
    blocked = ((u <= low) & (gradient > 0.0)) | ((u >= high) & (gradient < 0.0))
    return float(np.max(np.abs(np.where(blocked, 0.0, gradient)), initial=0.0))


def stopping_rule(method: str, tolerance: float, start_loss: float) -> dict:
    """scipy options that stop a step independently of the loss's scale, for a loss divided by
    the max-norm of its projected gradient at the step's start.

    L-BFGS-B: the projected gradient falls to ``tolerance`` times its start value (scipy's
    relative-reduction test is off). SLSQP: the loss changes by less than ``tolerance`` times
    its start value (``start_loss``, divided). ``local_step`` adds the relative-step rule.
    """
    if method == "L-BFGS-B":
        return {"ftol": 0.0, "gtol": tolerance}
    return {"ftol": tolerance * abs(start_loss) if math.isfinite(start_loss) else tolerance}


class _SmallStep(StopIteration):
    """Raised from scipy's callback when an iteration moved no scaled parameter by more than
    the tolerance."""


def local_step(evaluate: Callable, theta: np.ndarray, lower: np.ndarray, span: np.ndarray,
               opt, radius: float | None = None, on_iteration: Callable | None = None,
               on_non_finite: Callable | None = None) -> StepOutcome:
    """One scipy.optimize.minimize call (``opt.method``, ``opt.max_iterations``,
    ``opt.tolerance``) from ``theta`` within ``radius`` of it (scaled units; None: the bounds),
    stopped by ``stopping_rule`` or when an iteration moves no scaled parameter by more than
    ``opt.tolerance``.

    evaluate(theta) -> Evaluation; on_iteration(ev, iteration) after each iteration with the
    iterate's evaluation; on_non_finite(ev) for each non-finite evaluation.
    """
    recent: list[tuple[np.ndarray, object]] = []  # the last few evaluations
    u0 = np.clip((theta - lower) / span, 0.0, 1.0)
    seen = {"iterations": 0, "start_loss": None, "non_finite": None, "small_step": False,
            "previous": u0, "scale": 1.0}
    inside = bool(np.all((theta >= lower) & (theta <= lower + span)))

    def parameters(u, within: float = 0.0):
        """theta at u: the start itself (not its round trip) where u is within ``within``."""
        near = inside and float(np.max(np.abs(u - u0), initial=0.0)) <= within
        return np.array(theta, float) if near else lower + u * span

    def recalled(u):
        return next((e for v, e in reversed(recent) if np.array_equal(u, v)), None)

    def fun(u):
        u = np.clip(np.asarray(u, float), 0.0, 1.0)
        ev = recalled(u)
        if ev is None:
            ev = evaluate(parameters(u))
            recent.append((u, ev))
            del recent[:-4]
            if not ev.finite:
                distance = float(np.max(np.abs(u - u0), initial=0.0))
                seen["non_finite"] = min(distance, seen["non_finite"] or math.inf)
                if on_non_finite is not None:
                    on_non_finite(ev)
        if seen["start_loss"] is None:
            seen["start_loss"] = ev.loss
        if not ev.finite:
            return BAD_LOSS, np.zeros_like(u)
        return ev.loss / seen["scale"], ev.gradient * span / seen["scale"]

    def callback(xk):
        seen["iterations"] += 1
        xk = np.clip(np.asarray(xk, float), 0.0, 1.0)
        if recent and on_iteration is not None:
            ev = recalled(xk)
            on_iteration(ev if ev is not None else recent[-1][1], seen["iterations"])
        moved = float(np.max(np.abs(xk - seen["previous"]), initial=0.0))
        seen["previous"] = xk
        if moved <= opt.tolerance:
            seen["small_step"] = True
            raise _SmallStep

    low, high = np.zeros_like(u0), np.ones_like(u0)
    if radius is not None:
        low, high = np.maximum(low, u0 - radius), np.minimum(high, u0 + radius)
    f0, g0 = fun(u0)
    start_gradient = projected_gradient(u0, g0, low, high)
    if start_gradient > 0.0 and math.isfinite(start_gradient):
        seen["scale"] = start_gradient  # the optimizer sees a loss whose gradient is of order 1
    options = stopping_rule(opt.method, opt.tolerance, f0 / seen["scale"])
    result = scipy.optimize.minimize(fun, u0, jac=True, method=opt.method,
                                     bounds=list(zip(low, high)),
                                     options={"maxiter": opt.max_iterations, **options},
                                     callback=callback)
    if float(result.fun) < BAD_LOSS:
        result.fun = float(result.fun) * seen["scale"]
    if getattr(result, "jac", None) is not None:
        result.jac = np.asarray(result.jac) * seen["scale"]
    converged = bool(result.success) or seen["small_step"]
    message = optimizer_message(result)
    if seen["small_step"]:
        message = (f"CONVERGENCE: an iteration moved no parameter by more than {opt.tolerance:g}"
                   " of its range")
    return StepOutcome(result, seen["iterations"], seen["start_loss"], seen["non_finite"],
                       converged, message, parameters(np.clip(result.x, 0.0, 1.0), SAME_POINT))


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
    if converged and step_length == 0.0:
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


def optimizer_message(result) -> str:
    """scipy's message on how a step's optimizer ended, with the bare 'ABNORMAL: ' of L-BFGS-B
    (scipy 1.15 on) spelled out."""
    message = " ".join(str(result.message).split())
    if message.rstrip(":") == "ABNORMAL":
        return ("ABNORMAL: the line search found no point that lowers the loss enough along its "
                "direction, and stopped at its previous iterate")
    return message
