"""Geometry optimisation of the structures that ask for it: batched FIRE, jitted per padded shape.

``relax(model, params, rows, max_steps, rms_force)`` relaxes the atoms of the model rows
``rows`` (the others keep their geometry) with the FIRE algorithm (Bitzek et al., Phys. Rev.
Lett. 97, 170201 (2006)), all structures of a batch at once, each stopping on its own when the
root mean square force component falls below ``rms_force`` (kcal/mol/Å) or after its step limit.
The forces are those of ``energy_forces_charges`` (at the QEq charges of the current geometry,
as LAMMPS's minimiser sees them). It returns a model whose positions are the relaxed ones, so
the loss sees the relaxed energies, forces and geometries (how the relaxed geometry moves with
the parameters is ``reaxopt.response``'s business).

A packed model (``ModelOptions.packed``, as fits build them) relaxes its structures together
as one packed system (``relax_packed``, ``fire_packed``): the same FIRE steps per structure,
one compilation whatever their sizes, and the same trajectories to rounding. A structure that pauses
for a list rebuild waits until no other can step, or until at most a quarter of the packed
structures can (``SHRINK_FACTOR``); then the paused ones get new lists and the unfinished
ones are re-packed, into the smallest of the shapes full/4, full/16, ... that holds them
(``reaxopt.packed.ladder_sizes``): the few slow structures step in a small system, and
the repeated relaxations of a fit reuse a few compiled shapes.

``newton_refine`` finishes relaxations that FIRE left above ``rms_force`` at their step limit
with a few Newton steps on the force constants (softer modes floored, energy-decreasing step
halving): molecules with soft torsions beside stiff bonds converge in a handful of steps where
FIRE's hundreds do not.

Lists that move with the geometry: a relaxed structure's lists are built with a skin
(``Model.skins``) and hold every interaction while no atom is more than skin/2 from where they
were built (``Model.anchors``). A FIRE step that would take an atom further is not taken: the
structure pauses, its lists are rebuilt on the host at its current positions (``rebuild_lists``)
and, if they no longer fit the batch's padded sizes, the whole batch is padded to ``grown``
sizes (one new compilation; ``GROWTH_HEADROOM`` extra room so that it stays rare); then FIRE
continues from the same state, so the trajectory is the one complete lists give. Interactions
are never lost.

Cells (``cell_opt`` rows, BGF ``RUTYPE CELL OPT``): the cell relaxes with the atoms. Its
coordinate is the homogeneous strain eps (symmetric 3x3; a step applies x -> x (1 + eps),
cell -> cell (1 + eps)) scaled by ``CELL_LENGTH`` Å, and its force the virial W = -dE/d eps
(``reaxopt.energy.total.energy_forces_virial``, at fixed charges) over ``CELL_LENGTH``, in
kcal/mol/Å like the atoms' forces: FIRE moves atoms and cell together, MAX_STEP bounding a
strain step to MAX_STEP / CELL_LENGTH, and the RMS over atoms and the three cell rows decides
convergence (zero pressure; without kinetic energy, as LAMMPS's ``fix box/relax``). A strained
cell moves every periodic image: a pair vector changes by at most 2 max|dx| + (R + D) |E|, with
dx the atoms' displacements from their anchors, E = cell_anchor^-1 cell - 1, R the longest list
cutoff and D the largest distance between the structure's atoms, so a structure pauses for a
list rebuild when max|dx| + (R + D) |E| / 2 would exceed skin/2 (``Model.cell_anchors``). The
number after ``CELL OPT`` (ReaxFF's cell-optimisation option) is not used: all six strain
components relax.

FIRE settings (ASE's defaults, with forces scaled from kcal/mol/Å to eV/Å for FIRE's steps): dt
0.1, dt_max 1.0, N_min 5, f_inc 1.1, f_dec 0.5, alpha_start 0.1, f_alpha 0.99, largest step
0.2 Å.

Stiff BGF restraints (``reaxopt.restraints``: a 1-degree angle well thousands of kcal/mol
deep) would make FIRE's steps leave their well, where the Gaussian restraint has no force.
Two things keep them in it. For restraints stiffer than RESTRAINT_STIFF along their
coordinate, FIRE steps across the restrained coordinates (the forces with their components
along them removed) while each step moves the restrained values by a Newton step on the
restraints' curvature plus RESTRAINT_STIFFNESS, towards where they balance the forces along
them (``restraints.split_forces``); softer restraints, which FIRE handles, step with it. And
a step is shortened so that no restrained value moves by more than RESTRAINT_STEP of its
well's width 1/sqrt(force2) (``restraints.step_share``).
Convergence is still judged on the plain RMS force.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.cluster.padding import (grown, needs_rebuild, pad_system_sizes, stack_trees,
                                     system_interaction_sizes, unstack_tree)
from reaxopt.device import on_device
from reaxopt.evaluate import pad_system, system_at
from reaxopt.forcefield import Params
from reaxopt.model import energy_forces_virial_moving, refresh_packed
from reaxopt.packed import (Packed, ladder_sizes, pack, pack_counts, packed_energy_forces_virial,
                            row_systems, unpacked)
from reaxopt.restraints import batch_energy_forces as restraint_energy_forces
from reaxopt.restraints import batch_of as restraints_of
from reaxopt.restraints import energy_forces_virial as restraint_energy_forces_virial
from reaxopt.restraints import split_forces, step_share

KCAL_PER_EV = 23.060547830619029  # kcal/mol per eV (forces are scaled to eV/Å for FIRE's steps)
DT, DT_MAX, N_MIN, F_INC, F_DEC, ALPHA0, F_ALPHA, MAX_STEP = (0.1, 1.0, 5, 1.1, 0.5, 0.1, 0.99,
                                                              0.2)
GROWTH_HEADROOM = 0.25  # extra room (share of the count) when a batch's lists outgrow it
SHRINK_FACTOR = 4  # a packed relaxation re-packs when at most 1/4 of its structures still step
CELL_LENGTH = 10.0  # Å per unit strain in FIRE's cell coordinate (the nonbonded cutoff's order)
RESTRAINT_STEP = 0.25  # a step moves a restrained value by at most this share of its well width
RESTRAINT_STIFFNESS = 1000.0  # kcal/mol/Å²: ReaxFF's curvature along a restrained value, at most
RESTRAINT_STIFF = 2.0e4  # kcal/mol/Å²: restraints stiffer than this step by Newton, not by FIRE


@jax.tree_util.register_dataclass
@dataclass
class FireState:
    """FIRE's state per structure of a batch (B leading): velocities of the atoms (B, n, 3) and
    of the cell coordinate (B, 3, 3) in FIRE's units, dt, alpha, steps since the last uphill
    step, steps taken."""

    velocity: Any
    cell_velocity: Any
    dt: Any
    alpha: Any
    since: Any
    steps: Any


def fire_start(positions) -> FireState:
    """FIRE's initial state for a batch of positions (B, n, 3)."""
    b = positions.shape[0]
    return FireState(jnp.zeros_like(positions), jnp.zeros((b, 3, 3), positions.dtype),
                     jnp.full(b, DT), jnp.full(b, ALPHA0), jnp.zeros(b, jnp.int32),
                     jnp.zeros(b, jnp.int32))


def _rms(forces, mask, cell_forces, cell_free):
    """RMS force component per structure over its atoms and, where the cell relaxes, the three
    rows of its cell force."""
    count = 3.0 * (jnp.sum(mask, axis=1) + 3 * cell_free)
    squares = (jnp.sum(jnp.where(mask[..., None], forces ** 2, 0.0), axis=(1, 2))
               + jnp.sum(cell_forces ** 2, axis=(1, 2)))
    return jnp.sqrt(squares / jnp.maximum(count, 1.0))


def cell_reach(positions, atom_mask, cutoff: float) -> np.ndarray:
    """(R + D) / 2 per structure (Å): how far a unit strain of the cell can move a pair vector
    of its lists (R: the longest list cutoff, with the skin; D: the largest distance between
    two of its atoms). positions (B, n, 3), atom_mask (B, n): host arrays."""
    x = np.asarray(positions, float)
    out = np.zeros(len(x))
    for b, (xb, m) in enumerate(zip(x, np.asarray(atom_mask, bool))):
        xb = xb[m]
        spread = np.max(np.linalg.norm(xb[:, None] - xb[None], axis=-1)) if len(xb) else 0.0
        out[b] = 0.5 * (cutoff + spread)
    return out


@partial(jax.jit, static_argnames="topology")
def fire_batch(positions, cells, state: FireState, system, params: Params, anchors,
               cell_anchors, half_skin, reach, cell_free, max_steps, rms_force, topology,
               restraints=None):
    """FIRE on a batch: positions (B, n, 3) Å; cells (B, 3, 3) Å (row vectors); anchors
    (B, n, 3) and cell_anchors (B, 3, 3) where the lists were built; half_skin (B,) Å; reach
    (B,) Å (``cell_reach``); cell_free (B,) bool: the cell relaxes too; max_steps (B,) int
    (counted in ``state.steps``); rms_force kcal/mol/Å; restraints: the batch's
    ``RestraintArrays`` (B, R) or None (their forces and virial add to ReaxFF's).

    A structure runs until converged, out of steps, or until its next step could move a pair
    vector of its lists by more than its skin (that step is not taken). Returns (positions,
    cells, state, RMS force (B,) kcal/mol/Å, paused (B,) bool: stopped for a list rebuild).
    """
    def reaxff(x, cell):
        moved = dataclasses.replace(system, cell=cell)
        _, f, w = jax.vmap(energy_forces_virial_moving, in_axes=(0, 0, None, None))(
            x, moved, params, topology)
        return f, w

    return _fire(positions, cells, state, system.atom_mask, reaxff, anchors, cell_anchors,
                 half_skin, reach, cell_free, max_steps, rms_force, restraints)


@partial(jax.jit, static_argnames="topology")
def fire_packed(positions, cells, state: FireState, packed: Packed, params: Params, anchors,
                cell_anchors, half_skin, reach, cell_free, max_steps, rms_force, topology,
                restraints=None, least_running=0):
    """``fire_batch`` for the S structures of a packed system (``reaxopt.packed``): the same
    arguments and results, positions (S, n, 3) laid out as a batch, the energy evaluated packed
    (one compilation per packed shape, whatever the structures' sizes). Each structure's cell
    is its ``packed.cells`` deformed, so its images move with it. It also returns when no more
    than ``least_running`` structures can step (the caller re-packs the rest smaller)."""
    segments, atom_mask = packed.segments, packed.system.atom_mask
    n = positions.shape[1]
    local = jnp.where(atom_mask, segments.local, 0)
    periodic = jnp.any(packed.cells != 0.0, axis=(1, 2))[:, None, None]
    inverse_packed = jnp.linalg.inv(jnp.where(periodic, packed.cells, jnp.eye(3)))

    def reaxff(x, cell):
        flat = jnp.where(atom_mask[:, None], x[segments.structure, local], packed.positions)
        deformation = jnp.where(periodic, inverse_packed @ cell, jnp.eye(3))
        _, f, w = packed_energy_forces_virial(flat, packed.system, segments, deformation,
                                              params, topology)
        return unpacked(packed, f, n), w

    return _fire(positions, cells, state, unpacked(packed, atom_mask, n, False), reaxff, anchors,
                 cell_anchors, half_skin, reach, cell_free, max_steps, rms_force, restraints,
                 least_running)


def _fire(positions, cells, state: FireState, mask, reaxff, anchors, cell_anchors, half_skin,
          reach, cell_free, max_steps, rms_force, restraints, least_running=0):
    """FIRE's loop for ``fire_batch`` and ``fire_packed`` (traced inside them): mask (B, n)
    real atoms; reaxff(x (B, n, 3), cells) -> (ReaxFF forces (B, n, 3) kcal/mol/Å, virials
    (B, 3, 3) kcal/mol); the loop stops when no more than ``least_running`` structures can
    step."""
    free = cell_free[:, None, None]
    inverse_anchors = jnp.linalg.inv(jnp.where(free, cell_anchors, jnp.eye(3)))

    def forces_of(x, cell):
        """Atom forces and cell forces (generalised, for the cell coordinate), in eV/Å."""
        f, w = reaxff(x, cell)
        if restraints is not None:
            _, f_restraint, w_restraint = jax.vmap(restraint_energy_forces_virial)(
                x, cell, restraints)
            f, w = f + f_restraint, w + w_restraint
        return (jnp.where(mask[..., None], f, 0.0) / KCAL_PER_EV,
                jnp.where(free, w, 0.0) / (CELL_LENGTH * KCAL_PER_EV))

    def driving(x, cell, f):
        """(forces FIRE steps along (B, n, 3) eV/Å, Newton step of the restrained values
        (B, n, 3) Å): with restraints, FIRE moves across them and the Newton step along them
        (``restraints.split_forces``)."""
        if restraints is None:
            return f, jnp.zeros_like(f)
        tangent, step = jax.vmap(split_forces, in_axes=(0, 0, 0, 0, None, None))(
            f * KCAL_PER_EV, x, cell, restraints, RESTRAINT_STIFFNESS, RESTRAINT_STIFF)
        return tangent / KCAL_PER_EV, jnp.where(mask[..., None], step, 0.0)

    def share(x, x_try, cell):
        """(B, 1, 1): the share of each structure's step its restraints allow."""
        if restraints is None:
            return jnp.ones((x.shape[0], 1, 1))
        return jax.vmap(step_share, in_axes=(0, 0, 0, 0, None))(
            x, x_try, cell, restraints, RESTRAINT_STEP)[:, None, None]

    def running(carry):
        _, _, s, _, _, _, _, rms, paused = carry
        return (s.steps < max_steps) & (rms * KCAL_PER_EV >= rms_force) & ~paused

    def drift(x, cell):
        """Bound on how far any pair vector of the lists moved, halved (Å)."""
        atoms = jnp.max(jnp.where(mask, jnp.linalg.norm(x - anchors, axis=-1), 0.0), axis=1)
        strain = jnp.einsum("bij,bjk->bik", inverse_anchors, cell) - jnp.eye(3)
        return atoms + jnp.where(cell_free, reach * jnp.linalg.norm(strain, axis=(1, 2)), 0.0)

    def body(carry):
        x, cell, s, f, fc, p, newton, _, paused = carry
        go = running(carry)
        power = jnp.sum(p * s.velocity, axis=(1, 2)) + jnp.sum(fc * s.cell_velocity, axis=(1, 2))
        norm_f = jnp.sqrt(jnp.sum(p * p, axis=(1, 2)) + jnp.sum(fc * fc, axis=(1, 2))) + 1e-30
        norm_v = jnp.sqrt(jnp.sum(s.velocity ** 2, axis=(1, 2))
                          + jnp.sum(s.cell_velocity ** 2, axis=(1, 2)))
        ratio = (s.alpha * norm_v / norm_f)[:, None, None]
        keep_v = (1 - s.alpha)[:, None, None]
        uphill = power <= 0.0
        v = jnp.where(uphill[:, None, None], 0.0, keep_v * s.velocity + ratio * p)
        vc = jnp.where(uphill[:, None, None], 0.0, keep_v * s.cell_velocity + ratio * fc)
        grow = (~uphill) & (s.since > N_MIN)
        dt = jnp.where(uphill, s.dt * F_DEC, jnp.where(grow, jnp.minimum(s.dt * F_INC, DT_MAX),
                                                       s.dt))
        alpha = jnp.where(uphill, ALPHA0, jnp.where(grow, s.alpha * F_ALPHA, s.alpha))
        since = jnp.where(uphill, 0, s.since + 1)
        v = v + dt[:, None, None] * p
        vc = vc + dt[:, None, None] * fc
        dx, dc = dt[:, None, None] * v + newton, dt[:, None, None] * vc
        largest = jnp.maximum(jnp.max(jnp.linalg.norm(dx, axis=-1), axis=1),
                              jnp.max(jnp.linalg.norm(dc, axis=-1), axis=1))
        scale = jnp.minimum(1.0, MAX_STEP / jnp.maximum(largest, 1e-30))[:, None, None]
        dx = jnp.where(mask[..., None], dx * scale, 0.0)
        dc = jnp.where(free, dc * scale, 0.0) / CELL_LENGTH
        x_try = jnp.einsum("bnj,bjk->bnk", x, jnp.eye(3) + dc) + dx
        scale = share(x, x_try, cell)
        strain = jnp.eye(3) + scale * dc
        x_try = jnp.einsum("bnj,bjk->bnk", x, strain) + scale * dx
        cell_try = jnp.einsum("bij,bjk->bik", cell, strain)
        take = go & ~(drift(x_try, cell_try) > half_skin)
        keep = take[:, None, None]
        x_new = jnp.where(keep, x_try, x)
        cell_new = jnp.where(keep, cell_try, cell)
        f_new, fc_new = forces_of(x_new, cell_new)
        state = FireState(jnp.where(keep, v, s.velocity), jnp.where(keep, vc, s.cell_velocity),
                          jnp.where(take, dt, s.dt), jnp.where(take, alpha, s.alpha),
                          jnp.where(take, since, s.since), s.steps + take.astype(s.steps.dtype))
        f = jnp.where(keep, f_new, f)
        fc = jnp.where(keep, fc_new, fc)
        return (x_new, cell_new, state, f, fc, *driving(x_new, cell_new, f),
                _rms(f, mask, fc, cell_free), paused | (go & ~take))

    f0, fc0 = forces_of(positions, cells)
    carry = (positions, cells, state, f0, fc0, *driving(positions, cells, f0),
             _rms(f0, mask, fc0, cell_free), jnp.zeros(positions.shape[0], bool))
    x, cells, state, _, _, _, _, rms, paused = jax.lax.while_loop(
        lambda c: jnp.sum(running(c)) > least_running, body, carry)
    return x, cells, state, rms * KCAL_PER_EV, paused


def rebuilt_system(model, row: int, positions, system, cell=None):
    """The unpadded System (host) of model row ``row`` at ``positions`` ((n, 3) Å or padded)
    and ``cell`` (default: ``system``'s), its lists built with the row's skin; types and total
    charge from ``system`` (padded or not)."""
    n = model.n_atoms[row]
    cell = np.asarray(system.cell if cell is None else cell, float)
    return system_at(np.asarray(positions)[:n], cell if np.any(cell) else None,
                     np.asarray(system.types)[:n], float(system.total_charge), model.topology,
                     model.cutoffs.widened(model.skins[row]))


def rebuild_lists(model, batch: int, slots, positions) -> tuple[Any, Any]:
    """Batch ``batch`` of ``model`` with the lists of its structures at ``slots`` rebuilt at
    ``positions`` ((len(slots), n, 3) Å, padded), padded to the batch's sizes or, if they no
    longer fit, the whole batch re-padded to ``grown`` sizes. Returns (stacked System (host
    numpy), padded sizes); positions and anchors are the caller's to update."""
    members = model.members[batch]
    stacked = jax.tree_util.tree_map(np.asarray, model.batches[batch][1])
    systems = [unstack_tree(stacked, b) for b in range(len(members))]
    for slot, x in zip(slots, np.asarray(positions)):
        systems[slot] = rebuilt_system(model, int(members[slot]), x, systems[slot])
    sizes = model.sizes[batch]
    counts = [system_interaction_sizes(systems[slot]) for slot in slots]
    if needs_rebuild(counts, sizes):
        sizes = grown(sizes, counts, headroom=GROWTH_HEADROOM)
    shape = pad_system_sizes(sizes)
    # pad_system pads the System only (padding atoms are already in the caller's positions)
    return stack_trees([pad_system(np.zeros((len(s.types), 3)), s, shape)[1]
                        for s in systems]), sizes


def relax(model, params: Params, rows, max_steps, rms_force: float, cell_rows=(),
          restraints=None):
    """(model with relaxed positions, steps (S,), rms force (S,)) for the model rows ``rows``.

    rows: model rows to relax (built with a skin, ``ModelOptions.skin``); max_steps: (S,) step
    limit per structure (used for ``rows``); cell_rows: those of ``rows`` whose cell relaxes too
    (periodic ones only); restraints: per model row, its BGF restraints (``reaxopt.restraints``;
    None: none), which the relaxation adds to the energy. The returned model's lists of the
    relaxed rows hold every interaction at the relaxed positions and cells (rebuilt and
    re-padded as needed). RMS forces include the restraints' forces.
    """
    rows = np.asarray(rows, int)
    thin = [model.names[k] for k in rows if model.skins[k] <= 2 * MAX_STEP]
    if thin:
        raise ValueError(f"structures to relax need lists with a skin over {2 * MAX_STEP} Å; "
                         f"{', '.join(thin[:5])} were built without one (ModelOptions.skin)")
    if model.packed is not None:
        return relax_packed(model, params, rows, max_steps, rms_force, cell_rows, restraints)
    n = model.n_structures
    select = np.zeros(n, bool)
    select[rows] = True
    cell_select = np.zeros(n, bool)
    cell_select[np.asarray(cell_rows, int)] = True
    limit = np.asarray(max_steps, np.int32)
    steps_out, rms_out = np.zeros(n, int), np.zeros(n)
    for c, members in enumerate(model.members):
        picked = np.nonzero(select[members])[0]  # batch slots to relax: only those are stepped
        if not len(picked):
            continue
        half_skin = jnp.asarray([0.5 * model.skins[k] for k in members[picked]])
        periodic = np.any(np.asarray(model.batches[c][1].cell)[picked] != 0.0, axis=(1, 2))
        cell_free = jnp.asarray(cell_select[members[picked]] & periodic)
        state = fire_start(model.batches[c][0][picked])
        batch_restraints = restraints_of(restraints, members[picked])
        while True:
            positions, system = model.batches[c]
            sub = jax.tree_util.tree_map(lambda a: a[picked], system)
            reach = cell_reach(np.asarray(positions)[picked], np.asarray(sub.atom_mask),
                               model.cutoffs.nonbonded + max(model.skins))
            x, cells, state, rms, paused = fire_batch(
                positions[picked], sub.cell, state, sub, params, model.anchors[c][picked],
                model.cell_anchors[c][picked], half_skin, jnp.asarray(reach), cell_free,
                jnp.asarray(limit[members[picked]]), jnp.asarray(float(rms_force)),
                topology=model.topology, restraints=batch_restraints)
            system = dataclasses.replace(system, cell=system.cell.at[picked].set(cells))
            model = _replace_batch(model, c, positions=positions.at[picked].set(x),
                                   system=system)
            positions = model.batches[c][0]
            paused = np.asarray(paused)
            if not paused.any():
                break
            slots = picked[paused]
            system, sizes = rebuild_lists(model, c, slots, np.asarray(positions)[slots])
            model = _replace_batch(
                model, c, system=on_device(system),
                anchors=model.anchors[c].at[slots].set(positions[slots]),
                cell_anchors=model.cell_anchors[c].at[slots].set(
                    jnp.asarray(system.cell)[slots]), sizes=sizes)
        steps_out[members[picked]] = np.asarray(state.steps)
        rms_out[members[picked]] = np.asarray(rms)
    if model.packed is not None:
        model = refresh_packed(model)
    return model, steps_out, rms_out


def relax_packed(model, params: Params, rows, max_steps, rms_force: float, cell_rows=(),
                 restraints=None):
    """``relax`` with the structures at ``rows`` relaxed together as one packed system
    (``fire_packed``: one compilation per packed shape whatever their sizes). A structure that
    pauses for a list rebuild gets its lists rebuilt at its positions and cell; the unfinished
    rows are re-packed when one paused or few still step (``SHRINK_FACTOR``), on the ladder of
    shapes of ``reaxopt.packed.ladder_sizes``. The model's batches and packed system take the
    relaxed geometries (``place_geometries``)."""
    rows = [int(k) for k in rows]
    if not rows:
        return model, np.zeros(model.n_structures, int), np.zeros(model.n_structures)
    systems = row_systems(model)
    anchors_of = {int(k): (np.asarray(model.anchors[c])[b], np.asarray(model.cell_anchors[c])[b])
                  for c, members in enumerate(model.members) for b, k in enumerate(members)}
    n = max(model.n_atoms[k] for k in rows)

    def padded(positions, k):
        out = np.zeros((n, 3))
        out[:model.n_atoms[k]] = positions[:model.n_atoms[k]]
        return out

    x = np.stack([padded(systems[k][0], k) for k in rows])
    cells = np.stack([np.asarray(systems[k][1].cell, float) for k in rows])
    anchors = np.stack([padded(anchors_of[k][0], k) for k in rows])
    cell_anchors = np.stack([anchors_of[k][1] for k in rows])
    systems = [systems[k][1] for k in rows]
    mask = np.arange(n)[None] < np.array([model.n_atoms[k] for k in rows])[:, None]
    relaxing_cells = set(int(k) for k in cell_rows)
    cell_free = jnp.asarray([k in relaxing_cells and bool(np.any(c)) for k, c in
                             zip(rows, cells)])
    half_skin = jnp.asarray([0.5 * model.skins[k] for k in rows])
    limit = jnp.asarray(np.asarray(max_steps, np.int32)[rows])
    arrays = restraints_of(restraints, rows)
    packed = on_device(pack(list(zip(x, systems))))
    full_sizes = packed.sizes
    state = fire_start(jnp.asarray(x))
    limit_host = np.asarray(limit)
    rms = np.zeros(len(rows))
    active = np.ones(len(rows), bool)  # rows still relaxing; the others packed as one atom
    lone_atom = _lone_atom(model)
    while True:
        reach = cell_reach(x, mask, model.cutoffs.nonbonded + max(model.skins))
        moved_x, moved_cells, state, part_rms, paused = fire_packed(
            jnp.asarray(x), jnp.asarray(cells), state, packed, params, jnp.asarray(anchors),
            jnp.asarray(cell_anchors), half_skin, jnp.asarray(reach), cell_free,
            jnp.where(jnp.asarray(active), limit, state.steps),  # finished: no more steps
            jnp.asarray(float(rms_force)), topology=model.topology, restraints=arrays,
            least_running=int(np.sum(active)) // SHRINK_FACTOR)
        x, cells = np.array(moved_x), np.array(moved_cells)
        rms[active] = np.asarray(part_rms)[active]
        for j in np.nonzero(np.asarray(paused))[0]:
            systems[j] = rebuilt_system(model, rows[j], x[j], systems[j], cells[j])
            anchors[j], cell_anchors[j] = x[j], cells[j]
        active &= (np.asarray(state.steps) < limit_host) & (rms >= rms_force)
        if not active.any():
            break
        # re-pack the unfinished rows (finished ones as an isolated atom that never steps),
        # into the smallest shape of the ladder that holds them
        structures = [(x[j], systems[j]) if active[j] else lone_atom for j in range(len(rows))]
        packed = on_device(pack(
            structures, ladder_sizes(full_sizes, pack_counts(structures)), round_qeq=True))
    model = place_geometries(model, rows, [(x[j, :model.n_atoms[k]], cells[j])
                                           for j, k in enumerate(rows)])
    steps_out, rms_out = np.zeros(model.n_structures, int), np.zeros(model.n_structures)
    steps_out[rows], rms_out[rows] = np.asarray(state.steps), rms
    return model, steps_out, rms_out


def _lone_atom(model) -> tuple[Any, Any]:
    """(positions, System) of one atom of the first type, alone, neutral: the place a finished
    structure keeps in a re-packed relaxation (it costs one atom and never steps; its row's
    positions, passed to FIRE apart from the packed system, stay as they are)."""
    return np.zeros((1, 3)), system_at(np.zeros((1, 3)), None, np.zeros(1, np.int32), 0.0,
                                       model.topology, model.cutoffs)


def _replace_batch(model, c: int, positions=None, system=None, anchors=None,
                   cell_anchors=None, sizes=None):
    """``model`` with batch ``c``'s positions, System, anchors, cell anchors or padded sizes
    replaced."""
    old_positions, old_system = model.batches[c]
    batch = (old_positions if positions is None else positions,
             old_system if system is None else system)
    values = {"batches": model.batches[:c] + (batch,) + model.batches[c + 1:]}
    if anchors is not None:
        values["anchors"] = model.anchors[:c] + (anchors,) + model.anchors[c + 1:]
    if cell_anchors is not None:
        values["cell_anchors"] = (model.cell_anchors[:c] + (cell_anchors,)
                                  + model.cell_anchors[c + 1:])
    if sizes is not None:
        values["sizes"] = model.sizes[:c] + (sizes,) + model.sizes[c + 1:]
    return dataclasses.replace(model, **values)


def geometries(model) -> tuple:
    """((positions (n, 3) Å, cell (3, 3) Å), ...) of every structure of ``model``, by row."""
    found = {}
    for c, members in enumerate(model.members):
        positions, system = model.batches[c]
        positions, cells = np.asarray(positions), np.asarray(system.cell)
        for b, k in enumerate(members):
            found[int(k)] = (positions[b, :model.n_atoms[int(k)]].copy(), cells[b].copy())
    return tuple(found[k] for k in range(model.n_structures))


def place_geometries(model, rows, placed):
    """``model`` with the structures at rows ``rows`` moved to ``placed`` (``geometries``'
    form, in the order of ``rows``). Their lists are rebuilt where an atom moved more than
    skin/2 from where they were built or the cell changed (re-padded if they no longer fit)."""
    where = {int(row): k for k, row in enumerate(rows)}
    for c, members in enumerate(model.members):
        slots = [b for b, m in enumerate(members) if int(m) in where]
        if not slots:
            continue
        positions = np.array(model.batches[c][0])
        cells = np.array(model.batches[c][1].cell)
        anchors = np.asarray(model.anchors[c])
        cell_anchors = np.asarray(model.cell_anchors[c])
        stale = []
        for b in slots:
            k = int(members[b])
            x, cell = placed[where[k]]
            positions[b, :len(x)] = x
            cells[b] = cell
            moved = np.max(np.linalg.norm(x - anchors[b, :len(x)], axis=1), initial=0.0)
            if moved > 0.5 * model.skins[k] or np.any(cell != cell_anchors[b]):
                stale.append(b)
        system = dataclasses.replace(model.batches[c][1], cell=jnp.asarray(cells))
        model = _replace_batch(model, c, positions=jnp.asarray(positions), system=system)
        if stale:
            system, sizes = rebuild_lists(model, c, stale, positions[stale])
            model = _replace_batch(
                model, c, system=on_device(system),
                anchors=model.anchors[c].at[np.array(stale)].set(positions[stale]),
                cell_anchors=model.cell_anchors[c].at[np.array(stale)].set(cells[stale]),
                sizes=sizes)
    return model if model.packed is None else refresh_packed(model)


NEWTON_FLOOR = 1.0  # kcal/mol/Å²: softer (or unstable) internal modes step as if this stiff
NEWTON_MAX_STEP = 0.2  # Å: the largest atom displacement of one Newton step
NEWTON_HALVINGS = 4  # step halvings tried before a structure keeps its geometry
CHORD_STEPS = 4  # Newton steps that may reuse one force-constant evaluation
CHORD_RATE = 0.5  # a reused step must cut each moved structure's RMS force to this share


def restraint_terms(model, restraints) -> tuple[np.ndarray, np.ndarray]:
    """(energy (S,) kcal/mol, forces (S, n_max, 3) kcal/mol/Å) of the restraints of every
    structure of ``model`` at its current positions (``restraints``: per model row, or None)."""
    energy = np.zeros(model.n_structures)
    forces = np.zeros((model.n_structures, model.n_max, 3))
    for (positions, system), members in zip(model.batches, model.members):
        arrays = restraints_of(restraints, members)
        if arrays is not None:
            e, f = restraint_energy_forces(positions, system.cell, arrays)
            energy[members] = np.asarray(e)
            forces[members, :f.shape[1]] = np.asarray(f)
    return energy, forces


def newton_refine(model, params: Params, rows, rms_force: float, iterations: int,
                  restraints=None, on_step=None):
    """(model, rms force (S,)) with the structures at model rows ``rows`` moved by up to
    ``iterations`` Newton steps x <- x + t K⁺F towards their minimum, each until its RMS force
    is below ``rms_force`` (kcal/mol/Å).

    K⁺ is the force constants' inverse on internal motions (``reaxopt.response``), softer or
    unstable modes floored at NEWTON_FLOOR, so every step goes downhill; t = 1, 1/2, 1/4, ...
    (at most NEWTON_HALVINGS halvings, the displacement capped at NEWTON_MAX_STEP Å): the first
    that lowers the structure's energy is taken, else the structure stops where it is. Near a
    minimum Newton converges quadratically where FIRE's fixed step limit leaves stiff molecules
    (soft torsions beside stiff bonds) at a finite force: a refined geometry follows the
    parameters smoothly, as the fit's trust-region steps assume. The force constants cost far
    more than the forces (a second derivative per atom coordinate), so each structure keeps
    its own: a step reuses them (a chord step, with the forces where the structure now is)
    while that structure's previous step was taken in full and cut its RMS force to CHORD_RATE
    or less, for at most CHORD_STEPS steps per evaluation; a structure that cannot go downhill
    on reused force constants tries again on fresh ones before it stops. Force constants are
    evaluated one structure at a time (one compiled shape per batch), only for the structures
    still stepping whose own are stale: the cost follows the unconverged few, not all ``rows``.
    Atoms only: cells are left as they are (rows with a relaxing cell should not be passed).
    restraints: per model row, its BGF restraints (None: none), added to the energy and forces
    as ``relax`` adds them. on_step(largest, evaluated): called after each step with the
    largest RMS force of the structures it moved or tried and the number of structures whose
    force constants it evaluated."""
    from reaxopt.response import relaxed_response

    rows = [int(r) for r in rows]
    rms_out = np.zeros(model.n_structures)

    def state(m):
        predictions = m.predict(params)
        restraint_energy, restraint_forces = restraint_terms(m, restraints)
        energy = np.array(predictions.energy) + restraint_energy
        forces = np.asarray(predictions.forces) + restraint_forces
        rms = np.array([np.sqrt(np.mean(forces[k, :model.n_atoms[k]] ** 2)) for k in
                        range(model.n_structures)])
        return energy, rms, forces

    energy, rms, forces = state(model)
    placed = geometries(model)
    at = {k: placed[k] for k in rows}
    stopped: set[int] = set()
    inverses: dict[int, np.ndarray] = {}
    uses: dict[int, int] = {}  # steps taken on each structure's force constants
    for _ in range(iterations):
        active = [k for k in rows if rms[k] >= rms_force and k not in stopped]
        if not active:
            break
        fresh = [k for k in active if uses.get(k, CHORD_STEPS) >= CHORD_STEPS]
        for k in fresh:
            response = relaxed_response(model, params, [k], NEWTON_FLOOR, restraints)
            n = model.n_atoms[k]
            inverses[k] = np.asarray(response.inverse_force_constants[0, :3 * n, :3 * n])
            uses[k] = 0
        steps = {}
        for k in active:
            uses[k] += 1
            n = model.n_atoms[k]
            step = (inverses[k] @ forces[k, :n].ravel()).reshape(n, 3)
            largest = np.max(np.linalg.norm(step, axis=1), initial=0.0)
            steps[k] = step * min(1.0, NEWTON_MAX_STEP / max(largest, 1e-30))
        before = rms.copy()
        pending = list(active)
        scale = 1.0
        for _ in range(NEWTON_HALVINGS + 1):
            trial = place_geometries(model, pending, [(at[k][0] + scale * steps[k], at[k][1])
                                                      for k in pending])
            trial_energy, trial_rms, trial_forces = state(trial)
            better = [k for k in pending if trial_energy[k] < energy[k]]
            if len(better) == len(pending):
                model = trial
            elif better:  # only the structures whose energy dropped move
                model = place_geometries(model, better, [(at[k][0] + scale * steps[k], at[k][1])
                                                         for k in better])
            for k in better:
                at[k] = (at[k][0] + scale * steps[k], at[k][1])
                energy[k], rms[k] = trial_energy[k], trial_rms[k]
                forces[k] = trial_forces[k]
                if scale < 1.0 or rms[k] > CHORD_RATE * before[k]:
                    uses[k] = CHORD_STEPS  # its force constants have gone stale
            pending = [k for k in pending if k not in better]
            if not pending:
                break
            scale *= 0.5
        for k in pending:
            if k in fresh:
                stopped.add(k)  # no way down even on fresh force constants
            else:
                uses[k] = CHORD_STEPS  # no way down on reused ones: try fresh ones
        if on_step is not None:
            on_step(float(np.max(rms[active])), len(fresh))
    rms_out[rows] = rms[rows]
    return model, rms_out
