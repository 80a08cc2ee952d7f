"""The ReaxFF energy of one padded structure: 12 terms, forces, QEq charges (kcal/mol, Å, e).

The 12 terms and the LAMMPS quantities they equal (``compute pair reaxff``, 1-based as in LAMMPS's
documentation; values 4 and 13 are always zero there):

    bond (1 e_bond), over_under (2 e_ov + e_un), lone_pair (3 e_lp), valence (5 e_ang),
    penalty (6 e_pen), coalition (7 e_coa), hydrogen_bond (8 e_hb), torsion (9 e_tor),
    conjugation (10 e_con), van_der_waals (11 e_vdW), coulomb (12 e_ele),
    charge_equilibration (14 e_pol).

LAMMPS settings reproduced: the defaults of ``pair_style reaxff NULL`` (no control file). In
particular ``tabulate 0`` (LAMMPS's default without a control file): van der Waals and Coulomb
are evaluated analytically for every pair, never from LAMMPS's optional cubic-spline tables; and
``enobonds yes`` unless ``topology.enobonds`` is False (``build_forcefield(..., enobonds=False)``:
atoms without bonds then get no lone-pair or under-coordination energy).

Charges come from the exact QEq solve (``reaxopt.energy.charges``). Two derivative paths:

* forces: -dE/dx at FIXED charges, as LAMMPS computes them (the reported energy is not exactly
  stationary in the charges, so this differs from the total derivative). ``energy_forces_charges``
  takes the gradient of ``energy_at_charges`` in its positions argument with the charges passed as
  a separate argument.
* parameter gradients: total derivatives. The charges are a differentiable function of the
  parameters (and positions), so jax.grad of any loss built from ``energy_terms`` or from
  ``energy_forces_charges`` (forces included) sees the charges respond to the parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from reaxopt.cluster.neighbours import PairList, pair_vectors
from reaxopt.energy import bonded
from reaxopt.energy import charges as qeq
from reaxopt.energy.lookup import type_pair_values
from reaxopt.energy.nonbonded import coulomb_energy, vdw_energy
from reaxopt.energy.segments import Segments
from reaxopt.energy.taper import taper_coefficients
from reaxopt.forcefield import ForceField, Params, Topology, expand

TERMS = ("bond", "over_under", "lone_pair", "valence", "penalty", "coalition", "hydrogen_bond",
         "torsion", "conjugation", "van_der_waals", "coulomb", "charge_equilibration")
BONDED_TERMS = TERMS[:9]


@jax.tree_util.register_dataclass
@dataclass
class System:
    """One structure, padded, as the energy functions see it (all arrays; positions separate).

    cell: (3, 3) row vectors Å (zeros for a molecule); types: (N,) int type index (padding: 0);
    atom_mask: (N,) bool; total_charge: e; pairs: the nonbonded half pair list (cutoff swb);
    lists: the bonded terms' lists (``reaxopt.cluster.lists``), or None for nonbonded only.
    """

    cell: Any
    types: Any
    atom_mask: Any
    total_charge: Any
    pairs: PairList
    lists: Any = None


def _pair_geometry(positions, system: System):
    _, r = pair_vectors(positions, system.cell, system.pairs)
    return r, system.types[system.pairs.i], system.types[system.pairs.j]


def equilibrate_charges(positions, system: System, ff: ForceField,
                        segments: Segments | None = None):
    """QEq charges (N,) in e; differentiable in positions and force-field tables. With
    ``segments`` (a packed system), one solve per structure."""
    r, ti, tj = _pair_geometry(positions, system)
    coefficients = taper_coefficients(ff.swa, ff.swb)
    eta = ff.eta[system.types]
    gamma = type_pair_values(ff.gamma, ti, tj)
    if segments is not None:
        return qeq.block_charges(r, system.pairs.i, system.pairs.j, system.pairs.mask,
                                 gamma, eta, ff.chi[system.types], system.atom_mask,
                                 coefficients, segments)
    h = qeq.qeq_matrix(r, system.pairs.i, system.pairs.j, system.pairs.mask, gamma, eta,
                       system.atom_mask, coefficients)
    return qeq.solve_charges(h, ff.chi[system.types], system.atom_mask, system.total_charge)


def nonbonded_terms(positions, charges, system: System, ff: ForceField, topology: Topology,
                    segments: Segments | None = None):
    """van_der_waals, coulomb and charge_equilibration (kcal/mol; per structure with
    ``segments``) at the given charges."""
    r, ti, tj = _pair_geometry(positions, system)
    pairs = system.pairs
    coefficients = taper_coefficients(ff.swa, ff.swb)
    tables = dict(D=ff.vdw_D, r_vdw=ff.vdw_r, alpha=ff.vdw_alpha, gamma_w=ff.vdw_gamma_w,
                  rcore=ff.vdw_rcore, ecore=ff.vdw_ecore, acore=ff.vdw_acore, lg_c=ff.lg_c,
                  lg_re=ff.lg_re)
    pair_params = {name: type_pair_values(table, ti, tj) for name, table in tables.items()}
    e_vdw = vdw_energy(r, pairs.mask, pair_params, coefficients, ff.p_vdw1,
                       vdw_type=topology.vdw_type, lgvdw=topology.lgvdw, owners=pairs.i,
                       segments=segments)
    if segments is not None and segments.blocks == 0:  # no structure carries charge
        e_coulomb = jnp.zeros(segments.count, r.dtype)
    else:
        e_coulomb = coulomb_energy(r, pairs.mask, charges[pairs.i], charges[pairs.j],
                                   type_pair_values(ff.gamma, ti, tj), coefficients, pairs.i,
                                   segments)
    e_qeq = qeq.charge_equilibration_energy(charges, ff.chi[system.types], ff.eta[system.types],
                                            system.atom_mask, segments)
    return {"van_der_waals": e_vdw, "coulomb": e_coulomb, "charge_equilibration": e_qeq}


def bonded_terms(positions, system: System, ff: ForceField, topology: Topology,
                 segments: Segments | None = None, gates=None) -> dict:
    """The nine bonded terms from ``reaxopt.energy.bonded`` (zeros when ``system.lists`` is None)."""
    if system.lists is None:
        zero = jnp.zeros(() if segments is None else (segments.count,), positions.dtype)
        return {name: zero for name in BONDED_TERMS}
    return bonded.bonded_terms(positions, system.cell, system.lists, ff, topology, system.types,
                               system.atom_mask, segments, gates)


def energy_at_charges(positions, charges, system: System, ff: ForceField,
                      topology: Topology, segments: Segments | None = None, gates=None) -> dict:
    """All 12 terms (kcal/mol; (S,) per structure with ``segments``) with the charges given
    (no QEq solve)."""
    terms = dict(bonded_terms(positions, system, ff, topology, segments, gates))
    terms.update(nonbonded_terms(positions, charges, system, ff, topology, segments))
    return {name: terms[name] for name in TERMS}


def energy_terms(positions, system: System, params: Params, topology: Topology):
    """(terms dict, charges): the 12 terms at the QEq charges; total derivatives in params."""
    ff = expand(params, topology)
    charges = equilibrate_charges(positions, system, ff)
    return energy_at_charges(positions, charges, system, ff, topology), charges


def energy_forces_charges(positions, system: System, params: Params, topology: Topology):
    """(energy, terms, forces (N, 3) kcal/mol/Å at fixed charges, charges (N,))."""
    ff = expand(params, topology)
    charges = equilibrate_charges(positions, system, ff)

    def total(x, q):
        terms = energy_at_charges(x, q, system, ff, topology)
        return sum(terms.values()), terms

    (energy, terms), gradient = jax.value_and_grad(total, argnums=0, has_aux=True)(positions,
                                                                                 charges)
    forces = jnp.where(system.atom_mask[:, None], -gradient, 0.0)
    return energy, terms, forces, charges


def energy_forces_virial(positions, system: System, params: Params, topology: Topology):
    """(energy, forces (N, 3) kcal/mol/Å, virial (3, 3) kcal/mol, charges (N,)), all at fixed
    QEq charges as LAMMPS computes them.

    The virial is minus the derivative of the energy under a homogeneous strain eps of atoms and
    cell together, x -> x (1 + eps), cell -> cell (1 + eps) (row vectors), symmetrised:
    W = -(x^T dE/dx + cell^T dE/dcell), LAMMPS's virial (pressure tensor = W / volume, without
    the kinetic part). Zero for a molecule (cell of zeros) up to its (zero) net torque.
    """
    ff = expand(params, topology)
    charges = equilibrate_charges(positions, system, ff)

    def total(x, cell):
        terms = energy_at_charges(x, charges, dataclasses.replace(system, cell=cell), ff,
                                  topology)
        return sum(terms.values())

    energy, (d_x, d_cell) = jax.value_and_grad(total, argnums=(0, 1))(positions, system.cell)
    d_x = jnp.where(system.atom_mask[:, None], d_x, 0.0)
    w = -(positions.T @ d_x + system.cell.T @ d_cell)
    return energy, -d_x, 0.5 * (w + w.T), charges
