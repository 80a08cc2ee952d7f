"""Bond-order gates: which bonds, angles, torsions and hydrogen bonds LAMMPS's bond-order
thresholds switch on.

A pair is a bond when its uncorrected bond order reaches bo_cut; its corrected orders below
1e-10 are set to zero (a sigma order falling below it drops its force contribution at once);
an angle, a torsion or a hydrogen bond counts only when its bond orders pass thb_cut,
thb_cutsq or HB_THRESHOLD. Some of the terms are not zero at their threshold (penalty,
coalition, a torsion's BO product, a hydrogen bond, a new bond's pi orders), so the energy or
the forces, and with them the loss, jump as a parameter carries an entry across one: a fit
that walks up to such a jump cannot take a gradient step past it. ``threshold_gates`` records
the gates at one point; energies given those gates (``reaxopt.energy.bonded.bonded_terms``'
``gates``) keep every entry on or off as there, and are smooth in the parameters while equal
to LAMMPS's at that point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax

from reaxopt.energy.bond_order import bond_orders
from reaxopt.energy.hbond import hbond_gate
from reaxopt.energy.torsion import torsion_gate
from reaxopt.energy.valence import angle_gate
from reaxopt.forcefield import ForceField


@jax.tree_util.register_dataclass
@dataclass
class Gates:
    """Boolean gates per entry of the bonded lists: bond (pairs), orders (4, pairs: BO, BO_s,
    BO_pi, BO_pipi kept, not zeroed below 1e-10), angle, torsion, hbond."""

    bond: Any
    orders: Any
    angle: Any
    torsion: Any
    hbond: Any


def threshold_gates(positions, cell, lists, ff: ForceField, topology, types, atom_mask
                    ) -> Gates:
    """The gates at these positions (Å) and force field (lists: ``BondedLists``)."""
    bo = bond_orders(ff, topology, positions, cell, types, atom_mask, lists.pairs)
    return Gates(bond=bo.bond, orders=bo.kept, angle=angle_gate(bo, lists),
                 torsion=torsion_gate(bo, lists), hbond=hbond_gate(bo, lists))


LIVE = Gates(bond=None, orders=None, angle=None, torsion=None, hbond=None)  # none held: the tests
