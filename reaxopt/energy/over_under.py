"""Over- and under-coordination energies (LAMMPS ``reaxff_multi_body.cpp``; compute pair reaxff
``ea`` = e_ov + e_un), kcal/mol.

Per atom i, with dfvl = 0 for atoms heavier than 21 amu and 1 otherwise:
  s1 = sum over bonds of p_ovun1 De_s BO; s2 = sum over bonds (Delta_j - dfvl Delta_lp_temp_j)
  (BO_pi + BO_pipi); Dlpc = Delta_i - dfvl Delta_lp_temp_i / (1 + p_ovun3 exp(p_ovun4 s2));
  E_over = s1 Dlpc / (Dlpc + valency_i + 1e-8) / (1 + exp(p_ovun2 Dlpc));
  E_under = -p_ovun5 (1 - exp(p_ovun6 Dlpc)) / (1 + exp(-p_ovun2 Dlpc))
            / (1 + p_ovun7 exp(p_ovun8 s2))
          (for atoms without bonds only with ``topology.enobonds``, LAMMPS's default).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reaxopt.energy.bond_order import BondOrders, has_bonds
from reaxopt.energy.safe_math import logistic, logistic_scaled
from reaxopt.energy.segments import summed
from reaxopt.forcefield import ForceField


def over_under_energy(ff: ForceField, topology, types, atom_mask, pairs, bo: BondOrders,
                      segments=None):
    """Over- plus under-coordination energy, kcal/mol (per structure with ``segments``)."""
    n = types.shape[0]
    ti, tj = types[pairs.i], types[pairs.j]
    dfvl = jnp.where(jnp.asarray(topology.heavy)[types], 0.0, 1.0)
    p_ovun3, p_ovun4, p_ovun6 = ff.g(32), ff.g(31), ff.g(6)
    p_ovun7, p_ovun8 = ff.g(8), ff.g(9)

    s1_pair = jnp.where(bo.bond, ff.p_ovun1[ti, tj] * ff.De_s[ti, tj] * bo.bo, 0.0)
    s1 = (jax.ops.segment_sum(s1_pair, pairs.i, n) + jax.ops.segment_sum(s1_pair, pairs.j, n))
    pi_sum = bo.bo_pi + bo.bo_pi2
    # centre i sees neighbour j with i's own dfvl, and the other way round
    to_i = (bo.delta[pairs.j] - dfvl[pairs.i] * bo.delta_lp_temp[pairs.j]) * pi_sum
    to_j = (bo.delta[pairs.i] - dfvl[pairs.j] * bo.delta_lp_temp[pairs.i]) * pi_sum
    s2 = (jax.ops.segment_sum(jnp.where(bo.bond, to_i, 0.0), pairs.i, n)
          + jax.ops.segment_sum(jnp.where(bo.bond, to_j, 0.0), pairs.j, n))

    dlpc = bo.delta - dfvl * bo.delta_lp_temp * logistic_scaled(p_ovun4 * s2, p_ovun3)
    p_ovun2 = ff.p_ovun2[types]
    e_over = s1 * dlpc / (dlpc + ff.valency[types] + 1e-8) * logistic(-p_ovun2 * dlpc)
    e_under = (-ff.p_ovun5[types] * (1.0 - jnp.exp(p_ovun6 * dlpc)) * logistic(p_ovun2 * dlpc)
               * logistic_scaled(p_ovun8 * s2, p_ovun7))
    if not topology.enobonds:
        e_under = jnp.where(has_bonds(bo, pairs, n), e_under, 0.0)
    return summed(jnp.where(atom_mask, e_over + e_under, 0.0), None, segments)
