"""The nine bonded ReaxFF terms of one padded structure (kcal/mol), named as in
``reaxopt.energy.total.TERMS`` and matching LAMMPS's ``compute pair reaxff`` split."""

from __future__ import annotations

from reaxopt.energy.bond_order import bond_orders
from reaxopt.energy.bonds import bond_energy
from reaxopt.energy.gates import LIVE
from reaxopt.energy.hbond import hbond_energy
from reaxopt.energy.lone_pair import lone_pair_energy
from reaxopt.energy.over_under import over_under_energy
from reaxopt.energy.segments import Segments
from reaxopt.energy.torsion import torsion_energies
from reaxopt.energy.valence import valence_energies
from reaxopt.forcefield import ForceField


def bonded_terms(positions, cell, lists, ff: ForceField, topology, types, atom_mask,
                 segments: Segments | None = None, gates=None) -> dict:
    """bond, over_under, lone_pair, valence, penalty, coalition, hydrogen_bond, torsion,
    conjugation (kcal/mol; (S,) per structure of a packed system with ``segments``). lists:
    ``reaxopt.cluster.lists.BondedLists``; cell (3,3) Å row vectors (zeros for a molecule);
    gates: ``reaxopt.energy.gates.Gates`` held fixed (None: LAMMPS's thresholds here)."""
    pairs = lists.pairs
    gates = LIVE if gates is None else gates
    bo = bond_orders(ff, topology, positions, cell, types, atom_mask, pairs, gate=gates.bond,
                     kept=gates.orders)
    e_val, e_pen, e_coa = valence_energies(ff, topology, types, atom_mask, pairs, bo, lists,
                                           segments, gates.angle)
    e_tor, e_con = torsion_energies(ff, topology, types, atom_mask, pairs, bo, lists, segments,
                                    gates.torsion)
    return {
        "bond": bond_energy(ff, topology, types, pairs, bo, segments),
        "over_under": over_under_energy(ff, topology, types, atom_mask, pairs, bo, segments),
        "lone_pair": lone_pair_energy(ff, topology, types, atom_mask, pairs, bo, segments),
        "valence": e_val,
        "penalty": e_pen,
        "coalition": e_coa,
        "hydrogen_bond": hbond_energy(ff, topology, positions, cell, types, atom_mask, pairs,
                                      bo, lists, segments, gates.hbond),
        "torsion": e_tor,
        "conjugation": e_con,
    }
