"""An ASE calculator: ReaxFF energies, forces, stress and QEq charges from reaxopt.

``atoms.calc = ReaxFF(ffield="ffield")`` gives ``energy`` (= ``free_energy``), ``forces``,
``stress`` (periodic cells only) and ``charges``, equal to LAMMPS's ``pair_style reaxff`` +
``fix qeq/reaxff``. ASE's units at the boundary (eV, Å, eV/Å, eV/Å^3, e); reaxopt's inside
(kcal/mol, converted with ``ase.units`` as ``reaxopt.io.ase_io`` reads eV files).

Host and device are kept apart. On the host (numpy), ``ListState`` holds one structure's
interaction lists, built with every cutoff widened by a skin and padded to sizes with headroom.
They are reused while no atom is more than skin/2 from where they were built and the cell and
the atoms' elements are unchanged; then they are rebuilt. Padded sizes only grow, so the
device function ``evaluate_padded`` (jitted, pure) compiles once per padded shape, and an
``ase.optimize`` or ``ase.md`` run compiles once. ``ReaxFF.reserve`` sizes the padding for
several structures ahead, so that they share one compiled shape.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import jax
import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from reaxopt.cluster.clustering import round_up
from reaxopt.cluster.lists import bond_cutoffs
from reaxopt.cluster.neighbours import pairs_within
from reaxopt.cluster.padding import (grown, moved_beyond_skin, needs_rebuild, pad_system_sizes,
                                     system_interaction_sizes)
from reaxopt.cluster.sizes import Cutoffs, InteractionSizes
from reaxopt.energy.total import System, energy_forces_virial
from reaxopt.errors import InputError
from reaxopt.evaluate import atom_types, pad_system, system_at
from reaxopt.forcefield import Params, Topology, build_forcefield, expand
from reaxopt.io.ase_io import energy_unit_factor
from reaxopt.io.ffield import FField, read_ffield
from reaxopt.structure import Structure

KCAL_PER_EV = energy_unit_factor("eV")  # kcal/mol per eV (ase.units)
SKIN = 0.5  # Å added to every list cutoff: lists stay complete while atoms move up to skin/2
HEADROOM = 0.25  # extra padded room (share of the count) when a list size has to grow


@partial(jax.jit, static_argnames="topology")
def evaluate_padded(positions, system: System, params: Params, topology: Topology):
    """(energy kcal/mol, forces (N, 3) kcal/mol/Å, virial (3, 3) kcal/mol, charges (N,) e) of
    one padded structure whose lists were built with a skin (pairs beyond the taper radius are
    dropped at these positions). Forces and virial at fixed QEq charges, as LAMMPS's."""
    pairs = pairs_within(system.pairs, positions, system.cell, params.general[12])
    return energy_forces_virial(positions, dataclasses.replace(system, pairs=pairs), params,
                                topology)


BOND_TABLES = ("bo_cut", "r_s_atom", "r_pi_atom", "r_pipi_atom", "r_s", "r_p", "r_pp", "p_bo1",
               "p_bo2", "p_bo3", "p_bo4", "p_bo5", "p_bo6")  # what ``bond_cutoffs`` reads


@partial(jax.jit, static_argnames="topology")
def _bond_tables(params: Params, topology: Topology) -> dict:
    """The ``BOND_TABLES`` of ``expand(params, topology)``, jitted (op by op: seconds)."""
    ff = expand(params, topology)
    return {name: getattr(ff, name) for name in BOND_TABLES}


def list_cutoffs(params: Params, topology: Topology) -> Cutoffs:
    """The lists' cutoffs (Å) of a force field, as ``reaxopt.cluster.sizes.cutoffs_for``'s."""
    tables = SimpleNamespace(**_bond_tables(params, topology=topology))
    return Cutoffs(nonbonded=float(params.general[12]), bond=bond_cutoffs(tables))


def load_forcefield(ffield) -> tuple[Params, Topology]:
    """(params, topology) from a force-field path, a read ``FField`` or a (params, topology)
    pair (returned as it is)."""
    if isinstance(ffield, tuple) and len(ffield) == 2:
        return ffield
    if isinstance(ffield, FField):
        return build_forcefield(ffield)
    if isinstance(ffield, (str, os.PathLike)):
        return build_forcefield(read_ffield(ffield))
    raise TypeError(f"ffield must be a path, a reaxopt.io.ffield.FField or a (params, topology) "
                    f"pair, not {type(ffield).__name__}")


def types_of(symbols, topology: Topology) -> np.ndarray:
    """(N,) 0-based force-field types of the element ``symbols``; ValueError naming an element
    the force field does not define."""
    probe = Structure(name="atoms", symbols=list(symbols), positions=np.zeros((len(symbols), 3)))
    try:
        return atom_types(probe, topology)
    except InputError as exc:
        raise ValueError(exc.message.replace("structure 'atoms' has", "the atoms have")) from None


def periodic_cell(atoms) -> np.ndarray | None:
    """The (3, 3) cell (row vectors, Å) of a periodic ``atoms``, None for a molecule (pbc all
    False); ValueError for mixed pbc or a periodic cell without volume."""
    pbc = np.asarray(atoms.pbc, bool)
    if not pbc.any():
        return None
    if not pbc.all():
        raise ValueError(f"ReaxFF needs pbc all True (a periodic cell) or all False (a molecule), "
                         f"not {pbc.tolist()}")
    cell = np.array(atoms.cell.array, float)
    if abs(np.linalg.det(cell)) < 1e-9:
        raise ValueError(f"periodic atoms need a cell with volume; got {cell.tolist()}")
    return cell


@dataclass
class ListState:
    """One structure's lists on the host: what they were built for (element ``numbers`` (n,),
    ``cell`` (3, 3) Å or None, ``skin`` Å), where (``anchors`` (n, 3) Å), the padded
    ``system`` (numpy), its padded ``positions`` (N, 3) (padding atoms far away) and its padded
    ``sizes``."""

    numbers: np.ndarray
    cell: np.ndarray | None
    skin: float
    anchors: np.ndarray
    system: System
    positions: np.ndarray
    sizes: InteractionSizes

    def fits(self, numbers, cell, positions, skin: float) -> bool:
        """True while these lists hold every interaction of ``positions`` (n, 3) Å: same
        elements, cell and skin, no atom more than skin/2 from its anchor."""
        same_cell = (cell is None) == (self.cell is None) and (
            cell is None or np.array_equal(cell, self.cell))
        return (same_cell and skin == self.skin and np.array_equal(numbers, self.numbers)
                and not moved_beyond_skin(positions, self.anchors, skin))

    def padded_positions(self, positions) -> np.ndarray:
        """``positions`` (n, 3) Å with this padding's far-away padding atoms after them."""
        out = self.positions.copy()
        out[:len(positions)] = positions
        return out


def padded_sizes(counts: InteractionSizes, previous: InteractionSizes | None,
                 headroom: float) -> InteractionSizes:
    """Sizes that hold ``counts`` and ``previous`` (never smaller than it): a list size that has
    to grow gets ``headroom`` extra room; atoms are rounded up without headroom."""
    if previous is not None and not needs_rebuild(counts, previous):
        return previous
    base = previous or InteractionSizes(*(0,) * len(InteractionSizes.fields()))
    sizes = grown(base, counts, headroom=headroom)
    atoms = max(base.atoms, int(round_up(counts.atoms)))
    return dataclasses.replace(sizes, atoms=atoms)


def build_lists(numbers, types, positions, cell, topology: Topology, cutoffs: Cutoffs,
                skin: float, previous: InteractionSizes | None, headroom: float) -> ListState:
    """The ``ListState`` of atoms of ``types`` (n,) at ``positions`` (n, 3) Å in ``cell`` (None:
    a molecule), lists built with ``cutoffs`` widened by ``skin`` Å, padded to
    ``padded_sizes`` (host numpy)."""
    positions = np.asarray(positions, float)
    system = system_at(positions, cell, types, 0.0, topology, cutoffs.widened(skin))
    sizes = padded_sizes(system_interaction_sizes(system), previous, headroom)
    padded, system = pad_system(positions, system, pad_system_sizes(sizes))
    return ListState(numbers=np.array(numbers), cell=None if cell is None else cell.copy(),
                     skin=skin, anchors=positions.copy(), system=system, positions=padded,
                     sizes=sizes)


class ReaxFF(Calculator):
    """ReaxFF through reaxopt, as an ASE calculator (LAMMPS's ``pair_style reaxff`` with
    ``fix qeq/reaxff`` and no control file).

    ffield: a force-field file path, a ``reaxopt.io.ffield.FField`` or a (params, topology)
    pair from ``reaxopt.forcefield.build_forcefield``. Parameters: total_charge (e, the QEq
    constraint); skin (Å, added to every list cutoff); headroom (share of a list's count
    padded on top when it grows). Results: energy and free_energy (eV), forces (n, 3) eV/Å,
    charges (n,) e and, for periodic atoms, stress (6,) eV/Å^3 in Voigt order (xx yy zz yz xz
    xy), (1/V) dE/d strain at fixed charges. pbc must be all True or all False.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "charges"]
    default_parameters = {"total_charge": 0.0, "skin": SKIN, "headroom": HEADROOM}
    nolabel = True
    discard_results_on_any_change = True  # total_charge etc. change the results

    def __init__(self, ffield, **kwargs):
        super().__init__(**kwargs)
        self.params, self.topology = load_forcefield(ffield)
        self.cutoffs = list_cutoffs(self.params, self.topology)
        self.lists: ListState | None = None
        self.sizes: InteractionSizes | None = None  # padded sizes so far (they only grow)

    def _lists_for(self, atoms, cell) -> ListState:
        """Lists that hold every interaction of ``atoms`` now: the current ones, or new ones."""
        skin = float(self.parameters["skin"])
        numbers, positions = atoms.numbers, atoms.positions
        if self.lists is None or not self.lists.fits(numbers, cell, positions, skin):
            types = types_of(atoms.get_chemical_symbols(), self.topology)
            self.lists = build_lists(numbers, types, positions, cell, self.topology, self.cutoffs,
                                     skin, self.sizes, float(self.parameters["headroom"]))
            self.sizes = self.lists.sizes
        return self.lists

    def reserve(self, *images) -> InteractionSizes:
        """Grow the padded sizes to hold each of the ASE ``images`` (host only), so that they all
        evaluate with one compiled shape; returns the sizes."""
        for atoms in images:
            self.lists = None
            self._lists_for(atoms, periodic_cell(atoms))
        self.lists = None
        return self.sizes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Fill ``self.results`` with every property at once (one device call)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        cell = periodic_cell(atoms)
        if cell is None and "stress" in properties:
            raise PropertyNotImplementedError("stress needs a periodic cell (pbc all True); "
                                              "these atoms are a molecule")
        lists = self._lists_for(atoms, cell)
        system = dataclasses.replace(lists.system,
                                     total_charge=np.float64(self.parameters["total_charge"]))
        energy, forces, virial, charges = jax.device_get(evaluate_padded(
            lists.padded_positions(atoms.positions), system, self.params,
            topology=self.topology))
        n = len(atoms)
        energy = float(energy) / KCAL_PER_EV
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": np.array(forces[:n]) / KCAL_PER_EV,
                        "charges": np.array(charges[:n])}
        if cell is not None:
            volume = abs(np.linalg.det(cell))
            self.results["stress"] = full_3x3_to_voigt_6_stress(
                -np.asarray(virial) / (volume * KCAL_PER_EV))
