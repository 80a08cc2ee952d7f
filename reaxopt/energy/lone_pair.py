"""Lone-pair energy (LAMMPS ``reaxff_multi_body.cpp``; compute pair reaxff ``elp``), kcal/mol.

Per atom: p_lp2 Delta_lp / (1 + exp(-75 Delta_lp)) (for atoms without bonds only with
``topology.enobonds``, LAMMPS's default ``enobonds yes``), plus LAMMPS's C2 correction: for each
end of a bond between two atoms named "C", with D = Delta of that end, v = BO - D - 0.04 D^4,
p_lp3 (v - 3)^2 where v > 3 (only when p_lp3 = general 6 > 0.001).
"""

from __future__ import annotations

import jax.numpy as jnp

from reaxopt.energy.bond_order import BondOrders, has_bonds
from reaxopt.energy.safe_math import logistic
from reaxopt.energy.segments import summed
from reaxopt.forcefield import ForceField


def lone_pair_energy(ff: ForceField, topology, types, atom_mask, pairs, bo: BondOrders,
                     segments=None):
    """Lone-pair energy incl. the C2 correction, kcal/mol (per structure with ``segments``)."""
    e_atom = ff.p_lp2[types] * bo.delta_lp * logistic(75.0 * bo.delta_lp)
    counted = atom_mask if topology.enobonds else atom_mask & has_bonds(bo, pairs, types.shape[0])
    e_lp = summed(jnp.where(counted, e_atom, 0.0), None, segments)

    p_lp3 = ff.g(5)
    carbon = jnp.asarray(topology.is_carbon)
    cc = bo.bond & carbon[types[pairs.i]] & carbon[types[pairs.j]] & (p_lp3 > 0.001)
    e_c2 = 0.0
    for end in (pairs.i, pairs.j):
        d = bo.delta[end]
        vov3 = bo.bo - d - 0.040 * d ** 4
        e_c2 = e_c2 + jnp.where(cc & (vov3 > 3.0), p_lp3 * (vov3 - 3.0) ** 2, 0.0)
    return e_lp + summed(e_c2, pairs.i, segments)
