"""Hydrogen-bond energy (LAMMPS ``reaxff_hydrogen_bonds.cpp``; compute pair reaxff ``ehb``),
kcal/mol.

For each hydrogen H bonded to an acceptor-type atom X with BO_XH >= 0.01 and each acceptor-type
atom Z (another atom than X) within 7.5 Å of H, where the (X, H, Z) parameters have r0_hb > 0:
  E_hb = p_hb1 (1 - exp(-p_hb2 BO_XH)) exp(-p_hb3 (r0_hb / r_HZ + r_HZ / r0_hb - 2))
         sin^4(theta / 2), theta = angle X-H-Z, sin^2(theta / 2) = (1 - cos theta) / 2.
"""

from __future__ import annotations

import jax.numpy as jnp

from reaxopt.energy.angles import cos_angle, end_atoms, end_vectors
from reaxopt.energy.bond_order import BondOrders
from reaxopt.energy.safe_math import safe_norm
from reaxopt.energy.segments import summed
from reaxopt.forcefield import ForceField

HB_THRESHOLD = 0.01  # LAMMPS HB_THRESHOLD
HBOND_CUT = 7.5  # Å, LAMMPS control hbond_cut


def hbond_gate(bo: BondOrders, lists):
    """(H,) bool: the X-H pair is a bond of order at least HB_THRESHOLD."""
    p = lists.hbond_xh
    return bo.bond[p] & (bo.bo[p] >= HB_THRESHOLD)


def hbond_energy(ff: ForceField, topology, positions, cell, types, atom_mask, pairs,
                 bo: BondOrders, lists, segments=None, gate=None):
    """Hydrogen-bond energy, kcal/mol (per structure with ``segments``). gate: (H,) bool in
    place of ``hbond_gate`` (``reaxopt.energy.gates``; None: computed)."""
    p, s = lists.hbond_xh, lists.hbond_sign_xh
    h = jnp.where(s > 0, pairs.i[p], pairs.j[p])
    x = end_atoms(pairs, p, s)
    z = lists.hbond_acceptor
    v_hx, r_hx = end_vectors(bo.disp, bo.r, p, s)
    v_hz = positions[z] + lists.hbond_acceptor_images @ cell - positions[h]
    r_hz = safe_norm(v_hz)
    flags = jnp.asarray(topology.p_hbond)
    th, tx, tz = types[h], types[x], types[z]
    r0 = ff.r0_hb[tx, th, tz]
    valid = (lists.hbond_mask & atom_mask[h] & atom_mask[z]
             & (hbond_gate(bo, lists) if gate is None else gate)
             & (flags[th] == 1) & (flags[tx] == 2) & (flags[tz] == 2) & (r0 > 0.0)
             & (r_hz <= HBOND_CUT) & (r_hz > 0.0))
    r_hz = jnp.where(valid, r_hz, 1.0)
    r0 = jnp.where(valid, r0, 1.0)
    cos_theta = cos_angle(v_hx, r_hx, v_hz, r_hz, valid)
    sin4 = (0.5 * (1.0 - cos_theta)) ** 2
    e = (ff.p_hb1[tx, th, tz] * (1.0 - jnp.exp(-ff.p_hb2[tx, th, tz] * bo.bo[p]))
         * jnp.exp(-ff.p_hb3[tx, th, tz] * (r0 / r_hz + r_hz / r0 - 2.0)) * sin4)
    return summed(jnp.where(valid, e, 0.0), h, segments)
