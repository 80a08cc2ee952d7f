"""Bond energy (LAMMPS ``reaxff_bonds.cpp``; compute pair reaxff ``eb``), kcal/mol.

Per bond: -De_s BO_s exp(p_be1 (1 - BO_s^p_be2)) - De_p BO_pi - De_pp BO_pipi, plus the
terminal triple-bond stabilisation for BO >= 1 on the pairs LAMMPS selects (general 38 == 2, or
a carbon-oxygen pair by mass): gp10 exp(-gp7 (BO - 2.5)^2) (exp(-gp3 (S_i - BO)) +
exp(-gp3 (S_j - BO))) / (1 + 25 exp(gp4 (Delta_i + Delta_j))), S = total bond order.
"""

from __future__ import annotations

import jax.numpy as jnp

from reaxopt.energy.bond_order import BondOrders
from reaxopt.energy.safe_math import logistic_scaled, safe_pow
from reaxopt.energy.segments import summed
from reaxopt.forcefield import ForceField


def bond_energy(ff: ForceField, topology, types, pairs, bo: BondOrders, segments=None):
    """Sum of the bond energies (incl. triple-bond stabilisation) over the bonds, kcal/mol
    (per structure with ``segments``)."""
    ti, tj = types[pairs.i], types[pairs.j]
    pow_be2 = safe_pow(bo.bo_s, ff.p_be2[ti, tj])
    e_sigma = -ff.De_s[ti, tj] * bo.bo_s * jnp.exp(ff.p_be1[ti, tj] * (1.0 - pow_be2))
    e_pi = -ff.De_p[ti, tj] * bo.bo_pi - ff.De_pp[ti, tj] * bo.bo_pi2

    gp3, gp4, gp7, gp10 = ff.g(3), ff.g(4), ff.g(7), ff.g(10)
    triple = (bo.bond & (bo.bo >= 1.0)
              & jnp.asarray(topology.triple_pair)[ti, tj])
    s_i, s_j = bo.total[pairs.i], bo.total[pairs.j]
    hulpov = logistic_scaled(gp4 * (bo.delta[pairs.i] + bo.delta[pairs.j]), 25.0)
    e_triple = (gp10 * jnp.exp(-gp7 * (bo.bo - 2.5) ** 2) * hulpov
                * (jnp.exp(-gp3 * (s_i - bo.bo)) + jnp.exp(-gp3 * (s_j - bo.bo))))

    return summed(jnp.where(bo.bond, e_sigma + e_pi, 0.0)
                  + jnp.where(triple, e_triple, 0.0), pairs.i, segments)
