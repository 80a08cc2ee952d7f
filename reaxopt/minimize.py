"""Geometry optimisation of the structures that ask for it: batched FIRE, jitted per padded shape.

``relax(model, params, rows, max_steps, rms_force)`` relaxes the atoms of the model rows
``rows`` (the others keep their geometry) with the FIRE algorithm (Bitzek et al., Phys. Rev.
Lett. 97, 170201 (2006)), all structures of a batch at once, each stopping on its own when the
root mean square force component falls below ``rms_force`` (kcal/mol/Å) or after its step limit.
The forces are those of ``energy_forces_charges`` (at the QEq charges of the current geometry,
as LAMMPS's minimiser sees them). It returns a model whose positions are the relaxed ones, so
the loss sees the relaxed energies, forces and geometries; the derivative of the relaxed
geometry with respect to the parameters is not followed (the geometry counts as fixed within an
outer optimisation step, as in ReaxFF's own fitting).

Limitations: the pair and bonded lists stay those built at the input geometry (fine for the
moderate relaxations of a training set; a structure that moves far should be given relaxed);
cells are not relaxed (``cell_opt`` structures relax their atoms only).

FIRE settings (ASE's defaults, with forces scaled from kcal/mol/Å to eV/Å): dt 0.1, dt_max
1.0, N_min 5, f_inc 1.1, f_dec 0.5, alpha_start 0.1, f_alpha 0.99, largest step 0.2 Å.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.energy.total import energy_forces_charges
from reaxopt.forcefield import Params

KCAL_PER_EV = 23.060547830619029  # kcal/mol per eV (forces are scaled to eV/Å for FIRE's steps)
DT, DT_MAX, N_MIN, F_INC, F_DEC, ALPHA0, F_ALPHA, MAX_STEP = (0.1, 1.0, 5, 1.1, 0.5, 0.1, 0.99,
                                                              0.2)


def _rms(forces, mask):
    count = 3.0 * jnp.maximum(jnp.sum(mask, axis=1), 1)
    return jnp.sqrt(jnp.sum(jnp.where(mask[..., None], forces ** 2, 0.0), axis=(1, 2)) / count)


@partial(jax.jit, static_argnames="topology")
def fire_batch(positions, system, params: Params, active, max_steps, rms_force, topology):
    """Relax a batch: positions (B, n, 3); active (B,) bool; max_steps (B,) int.

    Returns (positions, steps taken (B,), final RMS force (B,)).
    """
    def forces_of(x):
        _, _, f, _ = jax.vmap(energy_forces_charges, in_axes=(0, 0, None, None))(
            x, system, params, topology)
        return jnp.where(system.atom_mask[..., None], f, 0.0) / KCAL_PER_EV

    mask = system.atom_mask
    b = positions.shape[0]

    def running(state):
        _, _, _, _, _, _, steps, rms = state
        return active & (steps < max_steps) & (rms * KCAL_PER_EV >= rms_force)

    def cond(state):
        return jnp.any(running(state))

    def body(state):
        x, v, f, dt, alpha, since, steps, rms = state
        go = running(state)
        power = jnp.sum(f * v, axis=(1, 2))
        norm_f = jnp.sqrt(jnp.sum(f * f, axis=(1, 2))) + 1e-30
        norm_v = jnp.sqrt(jnp.sum(v * v, axis=(1, 2)))
        mixed = (1 - alpha)[:, None, None] * v \
            + (alpha * norm_v / norm_f)[:, None, None] * f
        uphill = power <= 0.0
        v = jnp.where(uphill[:, None, None], 0.0, mixed)
        grow = (~uphill) & (since > N_MIN)
        dt_new = jnp.where(uphill, dt * F_DEC, jnp.where(grow, jnp.minimum(dt * F_INC, DT_MAX),
                                                         dt))
        alpha_new = jnp.where(uphill, ALPHA0, jnp.where(grow, alpha * F_ALPHA, alpha))
        since_new = jnp.where(uphill, 0, since + 1)
        v = v + dt_new[:, None, None] * f
        dx = dt_new[:, None, None] * v
        largest = jnp.max(jnp.linalg.norm(dx, axis=-1), axis=1)
        dx = dx * jnp.minimum(1.0, MAX_STEP / jnp.maximum(largest, 1e-30))[:, None, None]
        dx = jnp.where(mask[..., None] & go[:, None, None], dx, 0.0)
        x_new = x + dx
        f_new = forces_of(x_new)
        keep = go[:, None, None]
        return (x_new, jnp.where(keep, v, 0.0), jnp.where(keep, f_new, f),
                jnp.where(go, dt_new, dt), jnp.where(go, alpha_new, alpha),
                jnp.where(go, since_new, since), steps + go.astype(steps.dtype),
                jnp.where(go, _rms(f_new, mask), rms))

    f0 = forces_of(positions)
    state = (positions, jnp.zeros_like(positions), f0, jnp.full(b, DT), jnp.full(b, ALPHA0),
             jnp.zeros(b, jnp.int32), jnp.zeros(b, jnp.int32), _rms(f0, mask))
    x, _, _, _, _, _, steps, rms = jax.lax.while_loop(cond, body, state)
    return x, steps, rms * KCAL_PER_EV


def relax(model, params: Params, rows, max_steps, rms_force: float):
    """(model with relaxed positions, steps (S,), rms force (S,)) for the model rows ``rows``.

    rows: model rows to relax; max_steps: (S,) step limit per structure (used for ``rows``).
    """
    rows = np.asarray(rows, int)
    n = model.n_structures
    select = np.zeros(n, bool)
    select[rows] = True
    limit = np.asarray(max_steps, np.int32)
    order = np.asarray(model.order)
    steps_out, rms_out = np.zeros(n, int), np.zeros(n)
    batches, start = [], 0
    for positions, system in model.batches:
        size = positions.shape[0]
        members = np.array([int(np.nonzero(order == start + k)[0][0]) for k in range(size)])
        picked = np.nonzero(select[members])[0]  # batch slots to relax: only those are stepped
        if len(picked):
            sub = jax.tree_util.tree_map(lambda a: a[picked], system)
            x, steps, rms = fire_batch(positions[picked], sub, params,
                                       jnp.ones(len(picked), bool),
                                       jnp.asarray(limit[members[picked]]),
                                       jnp.asarray(float(rms_force)), topology=model.topology)
            positions = positions.at[picked].set(x)
            steps_out[members[picked]] = np.asarray(steps)
            rms_out[members[picked]] = np.asarray(rms)
        batches.append((positions, system))
        start += size
    return dataclasses.replace(model, batches=tuple(batches)), steps_out, rms_out
