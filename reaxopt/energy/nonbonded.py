"""van der Waals and shielded Coulomb energies over a padded half pair list (kcal/mol).

Both are summed over every pair within the upper taper radius, bonded or not, periodic images
included, and multiplied by the taper Tap(r). The van der Waals form follows the force field's
vdW type, as LAMMPS chooses it from the atom parameters (see ``reaxopt.forcefield``):

    no shielding:  D (exp(a (1 - r/r_v)) - 2 exp(a/2 (1 - r/r_v)))
    shielding:     the same with r -> f13(r) = (r^p + (1/gamma_w)^p)^(1/p), p = p_vdw1
    inner wall:    + e_core exp(a_core (1 - r/r_core))
    lgvdw:         + -C_lg / (r^6 + R_e^6)   (only together with the inner wall, as in LAMMPS)

Coulomb: C_ele q_i q_j / (r^3 + gamma_ij)^(1/3), gamma_ij = (gamma_i gamma_j)^(-3/2),
C_ele = 332.06371 kcal Å / (mol e^2).
"""

from __future__ import annotations

import jax.numpy as jnp

from reaxopt.energy.segments import summed
from reaxopt.energy.taper import taper

C_ELE = 332.06371  # kcal Å / (mol e^2), LAMMPS's C_ele
# LAMMPS raises to this literal, not to exactly 1/3, in the nonbonded Coulomb term
COULOMB_CUBE_ROOT = 0.33333333333333

# vdW types as LAMMPS numbers them
VDW_SHIELDING, VDW_INNER_WALL, VDW_BOTH = 1, 2, 3


def vdw_pair_energy(r, D, r_vdw, alpha, gamma_w, rcore, ecore, acore, lg_c, lg_re, p_vdw1, *,
                    vdw_type: int, lgvdw: bool):
    """Untapered vdW energy per pair (kcal/mol); every parameter is per pair, p_vdw1 a scalar.

    vdw_type: 1 shielding, 2 inner wall, 3 both (static); lgvdw: add the low-gradient term.
    """
    shielding = vdw_type in (VDW_SHIELDING, VDW_BOTH)
    inner_wall = vdw_type in (VDW_INNER_WALL, VDW_BOTH)
    if shielding:
        f13 = (r ** p_vdw1 + (1.0 / gamma_w) ** p_vdw1) ** (1.0 / p_vdw1)
    else:
        f13 = r
    x = 1.0 - f13 / r_vdw
    energy = D * (jnp.exp(alpha * x) - 2.0 * jnp.exp(0.5 * alpha * x))
    if inner_wall:
        energy = energy + ecore * jnp.exp(acore * (1.0 - r / rcore))
        if lgvdw:
            energy = energy - lg_c / (r ** 6 + lg_re ** 6)
    return energy


def coulomb_pair_energy(r, q_i, q_j, gamma_ij):
    """Unscreened-by-taper shielded Coulomb energy per pair (kcal/mol)."""
    return C_ELE * q_i * q_j / (r * r * r + gamma_ij) ** COULOMB_CUBE_ROOT


def vdw_energy(r, mask, pair_params: dict, taper_coefficients, p_vdw1, *, vdw_type: int,
               lgvdw: bool, owners=None, segments=None):
    """Total tapered vdW energy (kcal/mol) over pairs with distances r (P,) and mask (P,).

    pair_params: per-pair arrays D, r_vdw, alpha, gamma_w, rcore, ecore, acore, lg_c, lg_re.
    Masked pairs must carry a harmless distance (``pair_vectors`` gives 1 Å) and real-type
    parameters, so that nothing is NaN; their energy is then dropped.
    """
    e = vdw_pair_energy(r, **pair_params, p_vdw1=p_vdw1, vdw_type=vdw_type, lgvdw=lgvdw)
    return summed(jnp.where(mask, taper(r, taper_coefficients) * e, 0.0), owners, segments)


def coulomb_energy(r, mask, q_i, q_j, gamma_ij, taper_coefficients, owners=None,
                   segments=None):
    """Total tapered shielded Coulomb energy (kcal/mol) at the given charges (e); with
    ``segments``, per structure of the pairs' ``owners`` atoms."""
    e = coulomb_pair_energy(r, q_i, q_j, gamma_ij)
    return summed(jnp.where(mask, taper(r, taper_coefficients) * e, 0.0), owners, segments)
