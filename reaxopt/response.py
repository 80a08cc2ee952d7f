"""How relaxed geometries respond to the force-field parameters (implicit differentiation).

A relaxed geometry x*(θ) solves F(x*, θ) = 0, F the forces (kcal/mol/Å, at the QEq charges of
the geometry). Differentiating that condition gives dx*/dθ = K⁺ ∂F/∂θ with K = -∂F/∂x (the
force-constant matrix, kcal/mol/Å², charges responding to the geometry) and K⁺ its inverse on
the internal motions: rigid translations (and, for a molecule, rotations) move nothing a
geometry target measures and are projected out.

Within an outer fitting step the geometry is relaxed once, at θ₀. The loss then sees the
relaxed positions to first order in θ,

    x̃(θ) = x* + K⁺(x*, θ₀) [F(x*, θ) - F(x*, θ₀)],

which equals x* at θ₀ exactly and whose derivative there is dx*/dθ. (A relaxation stopped at
a small residual force F(x*, θ₀) is taken as it is: adding the Newton step K⁺F(x*, θ₀) would
move soft modes far from where the relaxation, and so the step end's re-relaxation, left
them.) So bond, angle and torsion targets of relaxed structures get their exact parameter
gradients instead of none (a fixed geometry has zero derivative). Energies need no such term:
at a minimum ∂E/∂x = 0, so dE(x*(θ), θ)/dθ = ∂E/∂θ already.

Restrained structures (BGF restraints, ``reaxopt.restraints``) relax under ReaxFF's energy plus
the restraints': K then includes the restraints' force constants, F stays ReaxFF's (the
restraints do not depend on θ and cancel in the difference), and because ReaxFF's force at
x* is balanced by the restraint force F_r rather than zero, their energy moves to first order
as E(x*, θ) + F_r · (x̃ - x*) (so its derivative holds the -F·dx*/dθ term a minimum lacks).

Soft modes (torsions, floppy molecules) are where that exact derivative misleads a fit: their
minimum moves far for a small change of θ, but a relaxation stopped at a finite RMS force
leaves them anywhere within about (force / stiffness) of it and does not follow. The fit
therefore floors the stiffness of the internal modes (``min_stiffness``; 0 keeps the exact
inverse): softer (or unstable) modes respond as if that stiff.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.forcefield import Params, Topology
from reaxopt.model import Model, energy_forces_charges_moving
from reaxopt.restraints import batch_energy_forces as restraint_energy_forces
from reaxopt.restraints import batch_force_constants as restraint_force_constants
from reaxopt.restraints import batch_of as restraints_of


@jax.tree_util.register_dataclass
@dataclass
class Response:
    """Rows (M,) of the structures that move with θ, their K⁺ (M, 3N, 3N) in Å²·mol/kcal, the
    residual ReaxFF forces F(x*, θ₀) (M, N, 3) and the restraint forces F_r(x*) (M, N, 3) in
    kcal/mol/Å (zeros without restraints), N the model's largest padded atom count (padding
    atoms: zeros)."""

    rows: Any
    inverse_force_constants: Any
    start_forces: Any
    restraint_forces: Any


def rigid_modes(positions: np.ndarray, periodic: bool) -> np.ndarray:
    """Orthonormal basis (3n, m) of rigid motions of n atoms (Å): 3 translations, plus 3
    rotations about the centroid for a molecule (fewer for a linear one)."""
    n = len(positions)
    modes = [np.tile(np.eye(3)[axis], n) for axis in range(3)]
    if not periodic:
        centred = positions - positions.mean(axis=0)
        modes += [np.cross(np.eye(3)[axis], centred).ravel() for axis in range(3)]
    basis, singular, _ = np.linalg.svd(np.array(modes).T, full_matrices=False)
    return basis[:, singular > 1e-8 * singular[0]]


def internal_inverse(force_constants: np.ndarray, positions: np.ndarray,
                     periodic: bool, min_stiffness: float = 0.0) -> np.ndarray:
    """K⁺ (3n, 3n): the inverse of the force constants (3n, 3n) on internal motions, zero on
    rigid ones. K is symmetrised (at fixed charges it is symmetric only up to the charge
    response). min_stiffness (kcal/mol/Å², > 0): internal modes softer than this (or unstable)
    respond as if this stiff -- a relaxation stopped at a finite force does not follow them."""
    modes = rigid_modes(positions, periodic)
    projector = np.eye(len(force_constants)) - modes @ modes.T
    k = projector @ (0.5 * (force_constants + force_constants.T)) @ projector + modes @ modes.T
    if min_stiffness <= 0.0:
        return projector @ np.linalg.inv(k) @ projector
    stiffness, vectors = np.linalg.eigh(k)
    inverse = (vectors / np.maximum(stiffness, min_stiffness)) @ vectors.T
    return projector @ inverse @ projector


@partial(jax.jit, static_argnames="topology")
def batch_force_constants(positions, system, params: Params, topology: Topology):
    """(K = -∂F/∂x (B, n, 3, n, 3), F (B, n, 3)) of every structure of one padded batch."""
    def forces(x, one):
        f = energy_forces_charges_moving(x, one, params, topology)[1]
        return f, f

    def one_structure(x, one):
        jacobian, f = jax.jacrev(forces, has_aux=True)(x, one)
        return -jacobian, f

    return jax.vmap(one_structure)(positions, system)


def relaxed_response(model: Model, params: Params, rows, min_stiffness: float = 0.0,
                     restraints=None) -> Response:
    """The ``Response`` of the model rows ``rows`` (their current positions taken as relaxed)
    under ``params``: one force-constant evaluation per structure, in its batch's padded shape
    (one compiled shape per batch, however many of its structures are asked for).
    min_stiffness: see ``internal_inverse``; restraints: per model row, the BGF restraints its
    relaxation applied (None: none)."""
    rows = np.asarray(sorted(set(int(r) for r in rows)), np.int64)
    n_max = model.n_max
    matrices = np.zeros((len(rows), 3 * n_max, 3 * n_max))
    start_forces = np.zeros((len(rows), n_max, 3))
    restraint_forces = np.zeros((len(rows), n_max, 3))
    where = {int(row): k for k, row in enumerate(rows)}
    for (positions, system), members in zip(model.batches, model.members):
        wanted = [(b, where[int(m)]) for b, m in enumerate(members) if int(m) in where]
        if not wanted:
            continue
        # sliced on the host: device slices would compile once per slot
        positions = np.asarray(positions)
        system = jax.tree_util.tree_map(np.asarray, system)
        for b, k in wanted:
            one = jax.tree_util.tree_map(lambda a: a[b:b + 1], system)
            constants, forces = map(np.asarray, batch_force_constants(
                positions[b:b + 1], one, params, topology=model.topology))
            restrained = restraints_of(restraints, members[b:b + 1])
            pulled = np.zeros_like(forces)
            if restrained is not None:
                constants = constants + np.asarray(restraint_force_constants(
                    positions[b:b + 1], one.cell, restrained))
                pulled = np.asarray(restraint_energy_forces(positions[b:b + 1], one.cell,
                                                            restrained)[1])
            n = model.n_atoms[int(members[b])]
            matrices[k, :3 * n, :3 * n] = internal_inverse(
                constants[0, :n, :, :n, :].reshape(3 * n, 3 * n), positions[b, :n],
                bool(np.any(system.cell[b])), min_stiffness)
            start_forces[k, :n] = forces[0, :n]
            restraint_forces[k, :n] = pulled[0, :n]
    return Response(jnp.asarray(rows), jnp.asarray(matrices), jnp.asarray(start_forces),
                    jnp.asarray(restraint_forces))


def renumbered(response: Response, rows_of, n_max: int) -> Response:
    """``response`` of a model of some structures as the response of the model they belong to:
    each of its local rows ``j`` becomes the model rows ``rows_of[j]`` (several where one
    relaxation stands for identical structures), K⁺ zero-padded to ``n_max`` atoms."""
    local = np.asarray(response.rows)
    picked = np.array([i for i, j in enumerate(local) for _ in rows_of[j]], np.int64)
    targets = np.array([row for j in local for row in rows_of[j]], np.int64)
    matrices = np.asarray(response.inverse_force_constants)[picked]
    extra = 3 * n_max - matrices.shape[1]

    def padded(forces):
        return jnp.asarray(np.pad(np.asarray(forces)[picked], ((0, 0), (0, extra // 3), (0, 0))))

    return Response(jnp.asarray(targets), jnp.asarray(np.pad(matrices, ((0, 0), (0, extra),
                                                                       (0, extra)))),
                    padded(response.start_forces), padded(response.restraint_forces))


def linearised_positions(predictions, response: Response):
    """``predictions`` with the response rows' positions moved to x* + K⁺ (F - F₀) and their
    energies by F_r · K⁺ (F - F₀) (zero without restraints) (pure, jittable; differentiable
    through the forces F)."""
    rows = response.rows
    forces = predictions.forces[rows] - response.start_forces
    step = jnp.einsum("mij,mj->mi", response.inverse_force_constants,
                      forces.reshape(forces.shape[0], -1)).reshape(forces.shape)
    work = jnp.sum(response.restraint_forces * step, axis=(1, 2))
    return dataclasses.replace(predictions, positions=predictions.positions.at[rows].add(step),
                               energy=predictions.energy.at[rows].add(work))
