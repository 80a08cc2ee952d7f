"""Charge equilibration (QEq / EEM) exactly as LAMMPS's ``fix qeq/reaxff`` defines it.

The charges minimise, at fixed total charge Q, the quadratic model (eV)

    sum_i (chi_i q_i + eta_i q_i^2 / 2) + sum_pairs H_ij q_i q_j,
    H_ij = 14.4 Tap(r_ij) / (r_ij^3 + gamma_ij)^(1/3),   gamma_ij = (gamma_i gamma_j)^(-3/2),

with eta_i twice the ffield's EEM hardness (as LAMMPS stores it) and every periodic image in the
sum (an atom's own images land on the diagonal, twice per +-image pair). The stationarity
conditions H q = -chi + mu, sum q = Q are solved directly, as one dense bordered linear system per
structure, so the charges and their derivatives (in positions and parameters) are exact.

The energy term LAMMPS reports for it (``charge_equilibration``, its e_pol) is
23.02 * sum_i (chi_i q_i + eta_i q_i^2 / 2) in kcal/mol; the Coulomb part is in
``reaxopt.energy.nonbonded``. Because 23.02 != 332.06371 / 14.4, the reported energy is not
exactly stationary in the charges; forces are taken at fixed charges, as LAMMPS does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reaxopt.energy.segments import Segments, summed
from reaxopt.energy.taper import taper

EV_TO_KCAL_PER_MOL = 14.4  # fix qeq/reaxff's Coulomb constant in eV Å / e^2 (sic)
KCALPMOL_TO_EV = 23.02  # LAMMPS's factor from eV to kcal/mol in the polarisation energy


def qeq_matrix(r, i, j, mask, gamma_ij, eta, atom_mask, taper_coefficients):
    """Dense (N, N) QEq matrix in eV: eta on the diagonal plus the tapered shielded pair terms.

    r, i, j, mask, gamma_ij: per pair (P,); eta: per atom (N,) in eV (LAMMPS's, i.e. 2x the file's);
    padded atoms (atom_mask False) get a unit diagonal and no pairs.
    """
    h_pair = pair_elements(r, mask, gamma_ij, taper_coefficients)
    diagonal = jnp.where(atom_mask, eta, 1.0)
    h = jnp.diag(diagonal)
    h = h.at[i, j].add(h_pair)
    h = h.at[j, i].add(h_pair)
    return h


def pair_elements(r, mask, gamma_ij, taper_coefficients):
    """(P,) the QEq matrix's tapered shielded pair terms in eV (zero for masked pairs)."""
    shielded = (r * r * r + gamma_ij) ** (1.0 / 3.0)
    return jnp.where(mask, EV_TO_KCAL_PER_MOL * taper(r, taper_coefficients) / shielded, 0.0)


def block_charges(r, i, j, mask, gamma_ij, eta, chi, atom_mask, taper_coefficients,
                  segments: Segments):
    """Charges (N,) in e of a packed system: one dense QEq solve per charged structure, its
    (m, m) block assembled from the packed pairs (as ``qeq_matrix`` and ``solve_charges`` per
    structure; m = ``segments.block``). Structures whose charges vanish by symmetry
    (``segments.charged`` out of range) get none: their atoms and pairs are dropped."""
    s, m = segments.blocks, segments.block
    if s == 0:
        return jnp.zeros_like(chi)
    atom_block = jnp.where(atom_mask, segments.charged[segments.structure], s)
    where = (atom_block, segments.local)
    h = jnp.tile(jnp.eye(m, dtype=r.dtype), (s, 1, 1))
    h = h.at[where + (segments.local,)].set(eta, mode="drop")
    h_pair = pair_elements(r, mask, gamma_ij, taper_coefficients)
    block, local_i, local_j = atom_block[i], segments.local[i], segments.local[j]
    h = h.at[block, local_i, local_j].add(h_pair, mode="drop")
    h = h.at[block, local_j, local_i].add(h_pair, mode="drop")
    chi_blocks = jnp.zeros((s, m), r.dtype).at[where].set(chi, mode="drop")
    mask_blocks = jnp.zeros((s, m), bool).at[where].set(True, mode="drop")
    total = jnp.zeros(s, r.dtype).at[segments.charged].set(segments.total_charge, mode="drop")
    charges = jax.vmap(solve_charges)(h, chi_blocks, mask_blocks, total)
    return jnp.where(atom_block < s,
                     charges[jnp.minimum(atom_block, s - 1), jnp.minimum(segments.local, m - 1)],
                     0.0)


def solve_charges(h, chi, atom_mask, total_charge):
    """Charges (N,) in e from H q = -chi + mu, sum q = total_charge (padded atoms: 0).

    The bordered system [[H, -1], [1^T, 0]] [q, mu] = [-chi, Q], solved densely (a block
    without atoms, padding, gets mu = Q and no charges).
    """
    n = chi.shape[0]
    ones = atom_mask.astype(h.dtype)
    a = jnp.zeros((n + 1, n + 1), h.dtype)
    a = a.at[:n, :n].set(h)
    a = a.at[:n, n].set(-ones)
    a = a.at[n, :n].set(ones)
    a = a.at[n, n].set(jnp.where(jnp.any(atom_mask), 0.0, 1.0))
    b = jnp.concatenate([jnp.where(atom_mask, -chi, 0.0), jnp.atleast_1d(total_charge)])
    solution = jnp.linalg.solve(a, b)
    return jnp.where(atom_mask, solution[:n], 0.0)


def charge_equilibration_energy(q, chi, eta, atom_mask, segments: Segments | None = None):
    """LAMMPS's e_pol (kcal/mol): 23.02 * sum(chi q + eta q^2 / 2), eta as in ``qeq_matrix``
    (per structure with ``segments``)."""
    e = KCALPMOL_TO_EV * (chi * q + 0.5 * eta * q * q)
    return summed(jnp.where(atom_mask, e, 0.0), None, segments)
