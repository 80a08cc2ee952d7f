"""The parameter sensitivity of a fit's problem at a force field
(``reaxopt.report.sensitivity`` on the training items' weighted residuals).

The residuals are those the fit's loss sums (``reaxopt.fit.problem``): the training items'
sqrt(scale) x (computed - reference) of ``model.predict(theta_map.to_params(theta))`` at a
``Relaxed`` model, the geometry-response rows moved by ``response.linearised_positions`` as the
loss moves them, so that 2 Jᵀr is the data loss's gradient. The regularization term is a prior,
not data: it is left out.

``sensitivity_at(problem, theta, relaxed)`` returns the ``Sensitivity``; ``fit_sensitivity``
is the fit's guarded call (a failure is a log line, never the fit's end);
``config_sensitivity`` and ``write_sensitivity`` serve ``reaxopt sensitivity``.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt import loss as loss_module
from reaxopt.model import ThetaMap, predict
from reaxopt.report.sensitivity import Sensitivity, parameter_sensitivity, to_json
from reaxopt.response import linearised_positions

JSON_NAME, FIGURE_NAME = "sensitivity.json", "sensitivity.png"


@partial(jax.jit, static_argnames="tmap")
def weighted_residuals(theta, model, base_params, items, response, tmap: ThetaMap):
    """(m,) sqrt(scale) x residual of every item of ``items`` (``compile_items`` order) at theta
    (P,), the response rows linearised (None: no response); jitted, differentiable in theta."""
    predictions = predict(model, tmap.to_params(theta, base_params))
    if response is not None:
        predictions = linearised_positions(predictions, response)
    scale = jnp.concatenate([getattr(items, k)["scale"] for k in loss_module.KINDS])
    return jnp.sqrt(scale) * loss_module.residual_vector(items, predictions)


def residual_function(problem, relaxed) -> Callable:
    """theta (P,) -> the training items' weighted residuals at the geometry of ``relaxed``
    (``reaxopt.relaxation.Relaxed``) and its response."""
    return lambda theta: weighted_residuals(theta, relaxed.model, problem.base_params,
                                            problem.training, relaxed.response,
                                            tmap=problem.theta_map)


def sensitivity_at(problem, theta, relaxed) -> Sensitivity:
    """The ``Sensitivity`` of the training items at theta (P,, the ffield's units), items named
    as report.csv names them."""
    return parameter_sensitivity(residual_function(problem, relaxed), np.asarray(theta, float),
                                 problem.theta_map.labels,
                                 [info.what for info in problem.training_info])


def fit_sensitivity(problem, theta, relaxed, log: Callable[[str], None], **extra) -> dict | None:
    """The ``sensitivity`` section (``to_json`` with ``extra`` and the seconds taken) at theta,
    logged in one line; None with a warning line when it fails or is not finite."""
    start = time.perf_counter()
    try:
        section = to_json(sensitivity_at(problem, theta, relaxed), **extra)
    except Exception as exc:  # the fit's results stand without it
        log(f"warning: parameter sensitivity not computed ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}); the other outputs are written")
        return None
    seconds = time.perf_counter() - start
    section["seconds"] = seconds
    undetermined = sum(not p["determined"] for p in section["parameters"])
    log(f"parameter sensitivity of {len(section['parameters'])} parameters over "
        f"{section['items']} training items in {seconds:.1f} s"
        + (f"; {undetermined} undetermined" if undetermined else ""))
    return section


def config_sensitivity(config, log: Callable[[str], None]) -> dict:
    """The ``sensitivity`` section of ``config``'s training data at its ``force_field`` (the
    file's values, even outside the params file's bounds), relaxed from the input geometries
    as the fit relaxes them; the inputs are checked first (InputError)."""
    from reaxopt.fit.problem import build_problem
    from reaxopt.inputs import load_inputs
    from reaxopt.relaxation import make_relaxer

    problem = build_problem(load_inputs(config))
    theta = problem.theta_start
    relaxed = make_relaxer(problem, config, log).relaxed(theta, "the given force field")
    start = time.perf_counter()
    section = to_json(sensitivity_at(problem, theta, relaxed), ffield=str(config.force_field),
                      config=str(config.path))
    section["seconds"] = time.perf_counter() - start
    return section


def write_sensitivity(out: Path, section: dict) -> list[Path]:
    """Write ``sensitivity.json`` and ``sensitivity.png`` (``plots.correlation_plot``) into
    ``out`` (made if missing), each atomically; returns the paths written."""
    from reaxopt.io.files import write_text_atomic
    from reaxopt.report.plots import correlation_plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / JSON_NAME, json.dumps(section, indent=1) + "\n")
    figure = correlation_plot(section, out / FIGURE_NAME)
    return [out / JSON_NAME] + ([] if figure is None else [figure])

