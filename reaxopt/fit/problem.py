"""The fit's problem: the model of every structure, the compiled items and the parameter map,
and one jitted evaluation of the loss, its gradient and the validation loss.

``build_problem(inputs)`` runs once on the host; ``make_evaluator(problem, ...)`` gives
``evaluate(theta, relaxed=None) -> Evaluation`` (host numpy). ``gated_at`` and ``gates_hold_at``
hold and test the bond-order gates of a parameter vector (``reaxopt.packed.gated``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt import loss as loss_module
from reaxopt import nonfinite
from reaxopt.config import Config
from reaxopt.errors import InputError
from reaxopt.forcefield import Params, Topology, build_forcefield
from reaxopt.inputs import Inputs
from reaxopt.model import (Model, ModelOptions, ThetaMap, build_model, clustered_value_and_grad,
                           loosest_params, predict, theta_map)
from reaxopt.packed import gates_hold
from reaxopt.relaxation import Relaxed, gated_model
from reaxopt.response import linearised_positions


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
    # linearises the relaxed positions, and restrained relaxations' energies, with the
    # forces); without any, skip them
    kinds = [items.counts() for items in (training, validation) if items is not None]
    needs_forces = (any(c["forces"] or c["geometry"] for c in kinds)
                    or any(s.restraints and s.run_type != "single_point" for s in structures))
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


@partial(jax.jit, static_argnames="tmap")
def _value(theta, model, base_params, training, validation, theta_reference, regularization,
           response, tmap):
    """The loss alone (no gradient, no pullback kept): one compilation per model shape."""
    predictions = predict(model, tmap.to_params(theta, base_params))
    return _evaluate(theta, predictions, training, validation, theta_reference, regularization,
                     response, tmap)[0]


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

    @property
    def selection(self) -> float:
        """The loss the best force field is selected on: validation where there is one, else
        training; inf where it or the evaluation is not finite."""
        value = self.validation_loss if self.validation_loss is not None else self.loss
        return value if math.isfinite(value) and self.finite else math.inf

    def text(self) -> str:
        """'loss L' or 'loss L, validation V', for a log line."""
        return f"loss {self.loss:.6g}" + ("" if self.validation_loss is None
                                          else f", validation {self.validation_loss:.6g}")


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


def make_scorer(problem: Problem, regularization: float, theta_reference: np.ndarray
                ) -> Callable[[np.ndarray], float]:
    """(theta, relaxed=None) -> the loss ``make_evaluator`` gives there (inf where it is not
    finite), without its gradient: the global stage's screen."""

    def score(theta: np.ndarray, relaxed: Relaxed | None = None) -> float:
        relaxed = relaxed or Relaxed(problem.model)
        value = float(_value(jnp.asarray(theta), relaxed.model, problem.base_params,
                             problem.training, problem.validation,
                             jnp.asarray(theta_reference), jnp.asarray(regularization),
                             relaxed.response, tmap=problem.theta_map))
        return value if math.isfinite(value) else math.inf

    return score


def gated_at(problem: Problem, theta) -> Relaxed:
    """The problem's model (input geometries) with the bond-order gates of theta held: exact at
    theta and smooth in the parameters around it (``reaxopt.packed.gated``)."""
    params = problem.theta_map.to_params(jnp.asarray(theta), problem.base_params)
    return Relaxed(gated_model(problem.model, params))


def gates_hold_at(problem: Problem, relaxed: Relaxed, theta) -> bool:
    """Whether the gates ``relaxed`` holds are LAMMPS's at theta (its loss there is exact)."""
    model = relaxed.model
    if model.packed is None:
        return True
    params = problem.theta_map.to_params(jnp.asarray(theta), problem.base_params)
    return gates_hold(model.packed, params, model.topology)
