"""BGF restraints (``BOND/ANGLE/TORSION RESTRAINT``) as an energy that minimisations add.

ReaxFF's restraint energy, per restraint,

    E = force1 * (1 - exp(-force2 * (value - target)**2))      (kcal/mol)

with the value a distance in Å (force2 in 1/Å²) or a valence or torsion angle in degrees
(force2 in 1/degree²; torsion differences wrapped into [-180, 180)). Restraints shape the
relaxed geometries only: the energies, forces and charges the loss compares are ReaxFF's,
without the restraint energy (as ReaxFF reports heats of formation). The per-iteration target
change and a bond restraint's MD window are MD settings and play no part in a minimisation.

Restraints of a batch are padded arrays (``RestraintArrays``, leading axes (B, R)); padding
entries are masked and contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.device import on_device
from reaxopt.geometry import bond_angle_torsion, wrapped_angle
from reaxopt.structure import Restraint

KIND_CODES = {"bond": 0, "angle": 1, "torsion": 2}
DEGREES_PER_RADIAN = 180.0 / np.pi


@jax.tree_util.register_dataclass
@dataclass
class RestraintArrays:
    """Padded restraints: atoms (..., R, 4) int (unused places repeat the last atom), code
    (..., R) int (KIND_CODES), target (..., R) Å or degrees, force1 (..., R) kcal/mol, force2
    (..., R) 1/Å² or 1/degree², mask (..., R) bool."""

    atoms: Any
    code: Any
    target: Any
    force1: Any
    force2: Any
    mask: Any


def padded_count(count: int) -> int:
    """Padded restraint count for ``count`` restraints: 0, or the next power of two (few
    compiled shapes)."""
    return 0 if count <= 0 else 1 << (count - 1).bit_length()


def restraint_arrays(per_structure: Sequence[Sequence[Restraint]]) -> RestraintArrays:
    """Host ``RestraintArrays`` (B, R) of the restraints of B structures (atoms 0-based)."""
    size = padded_count(max((len(r) for r in per_structure), default=0))
    b = len(per_structure)
    atoms = np.zeros((b, size, 4), np.int32)
    code = np.zeros((b, size), np.int32)
    target, force1, force2 = (np.zeros((b, size)) for _ in range(3))
    mask = np.zeros((b, size), bool)
    for i, restraints in enumerate(per_structure):
        for j, r in enumerate(restraints):
            atoms[i, j] = list(r.atoms) + [r.atoms[-1]] * (4 - len(r.atoms))
            code[i, j] = KIND_CODES[r.kind]
            target[i, j], force1[i, j], force2[i, j] = r.target, r.force1, r.force2
            mask[i, j] = True
    return RestraintArrays(atoms, code, target, force1, force2, mask)


def restraint_values(positions, cell, restraints: RestraintArrays):
    """(R,) restrained values of one structure: distances in Å, angles in degrees (positions
    (n, 3) Å, cell (3, 3) Å, zeros for a molecule)."""
    p = [positions[restraints.atoms[:, k]] for k in range(4)]
    bond, angle, torsion = bond_angle_torsion(*p, jnp.broadcast_to(cell, (len(p[0]), 3, 3)))
    return jnp.select([restraints.code == 0, restraints.code == 1],
                      [bond, DEGREES_PER_RADIAN * angle], DEGREES_PER_RADIAN * torsion)


def restraint_deltas(positions, cell, restraints: RestraintArrays):
    """(R,) value - target of one structure's restraints (Å or degrees; torsions wrapped into
    [-180, 180))."""
    delta = restraint_values(positions, cell, restraints) - restraints.target
    return jnp.where(restraints.code == KIND_CODES["torsion"],
                     DEGREES_PER_RADIAN * wrapped_angle(delta / DEGREES_PER_RADIAN), delta)


def restraint_energy(positions, cell, restraints: RestraintArrays):
    """Restraint energy (kcal/mol) of one structure."""
    delta = restraint_deltas(positions, cell, restraints)
    energy = restraints.force1 * (1.0 - jnp.exp(-restraints.force2 * delta ** 2))
    return jnp.sum(jnp.where(restraints.mask, energy, 0.0))


def energy_forces_virial(positions, cell, restraints: RestraintArrays):
    """(energy kcal/mol, forces (n, 3) kcal/mol/Å, virial W = -dE/d(strain) (3, 3) kcal/mol)
    of one structure's restraints; the strain eps moves x -> x (1 + eps), cell -> cell (1 + eps)
    as ``reaxopt.minimize``'s cell relaxation does."""
    def strained(x, strain):
        deformation = jnp.eye(3) + strain
        return restraint_energy(x @ deformation, cell @ deformation, restraints)

    energy, (gradient, strain_gradient) = jax.value_and_grad(strained, argnums=(0, 1))(
        positions, jnp.zeros((3, 3), positions.dtype))
    return energy, -gradient, -0.5 * (strain_gradient + strain_gradient.T)


def split_forces(forces, positions, cell, restraints: RestraintArrays, stiffness: float,
                 stiff: float = 0.0):
    """(tangent forces (n, 3), step (n, 3) Å) of one structure's forces (n, 3) kcal/mol/Å at
    its restraints.

    With G (3n, R) the gradients of the restrained values (Å or degrees per Å) and K the
    restraints' curvatures 2 force1 force2 at the bottom of their wells: the tangent forces are
    the forces without their components along G (they move no restrained value to first order);
    the step G a is a Newton step within G's span, with the curvature there taken as the
    restraints' plus ``stiffness`` (kcal/mol/Å², an upper bound on ReaxFF's own):
    ((GᵀG) K (GᵀG) + stiffness GᵀG) a = Gᵀ F. A restraint far stiffer than ReaxFF is then
    brought to its balance in one step; a softer one is approached without overshooting.
    Only restraints whose Cartesian curvature K |g|² exceeds ``stiff`` (kcal/mol/Å²) take
    part; the others, padding restraints and degenerate values (zero gradient) do not."""
    gradients = jax.jacrev(restraint_values)(positions, cell, restraints)
    g = jnp.where(jnp.isfinite(gradients), gradients, 0.0).reshape(len(restraints.mask), -1)
    g = jnp.where(restraints.mask[:, None], g, 0.0)
    curvature = 2.0 * restraints.force1 * restraints.force2
    used = (jnp.sum(g * g, axis=1) > 1e-20) & (curvature * jnp.sum(g * g, axis=1) > stiff)
    g = jnp.where(used[:, None], g, 0.0)
    gram = g @ g.T + jnp.diag(jnp.where(used, 0.0, 1.0))
    curvature = jnp.where(used, curvature, 1.0)
    f = forces.reshape(-1)
    projected = g @ f
    tangent = f - g.T @ jnp.linalg.solve(gram, projected)
    hessian = gram @ (curvature[:, None] * gram) + stiffness * gram
    step = g.T @ jnp.linalg.solve(hessian, projected)
    return tangent.reshape(forces.shape), step.reshape(forces.shape)


def step_share(before, after, cell, restraints: RestraintArrays, widths: float):
    """The share (0, 1] of a step from ``before`` to ``after`` (n, 3) Å to take so that no
    restrained value moves by more than ``widths`` of its well's width 1/sqrt(force2), with
    each value's change taken as linear in the step."""
    change = jnp.abs(restraint_deltas(after, cell, restraints)
                     - restraint_deltas(before, cell, restraints))
    change = jnp.where(restraints.code == KIND_CODES["torsion"],
                       jnp.minimum(change, 360.0 - change), change)
    reach = jnp.where(restraints.mask, change * jnp.sqrt(restraints.force2) / widths, 0.0)
    return 1.0 / jnp.maximum(1.0, jnp.max(reach, initial=0.0))


@jax.jit
def batch_energy_forces(positions, cells, restraints: RestraintArrays):
    """(energies (B,), forces (B, n, 3)) of a batch's restraints (positions (B, n, 3) Å)."""
    energy, forces, _ = jax.vmap(energy_forces_virial)(positions, cells, restraints)
    return energy, forces


@jax.jit
def batch_force_constants(positions, cells, restraints: RestraintArrays):
    """Restraint force constants d²E/dx² (B, n, 3, n, 3) kcal/mol/Å² of a batch."""
    return jax.vmap(jax.hessian(restraint_energy))(positions, cells, restraints)


def batch_of(per_row: Sequence[Sequence[Restraint]] | None, rows) -> RestraintArrays | None:
    """Device ``RestraintArrays`` (len(rows), R) of the model rows ``rows`` (``per_row``
    indexed by model row; None or no restraint among them: None)."""
    if per_row is None:
        return None
    picked = [per_row[int(k)] for k in rows]
    if not any(picked):
        return None
    return on_device(restraint_arrays(picked))
