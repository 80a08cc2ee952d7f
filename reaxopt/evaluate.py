"""Single-point evaluation of many structures: energy, the 12 terms, forces and charges.

By default the structures' lists are built on the host (``host_systems``) and the structures
packed into one system and evaluated by one compiled call, kept on disk
(``reaxopt.single_points``): a later run on the same file neither traces nor compiles. With
``clusters`` given they are grouped by
``reaxopt.cluster.clustering.cluster_structures`` instead, every cluster padded to its padded
sizes and evaluated by one vmapped call per chunk (``batched_energy_forces_charges``), one
compilation per cluster shape. Units: kcal/mol, Å, e.

``build_system`` / ``system_at`` build one structure's lists on the host (optionally with a skin,
for structures that move), ``pad_system`` pads them to a cluster's sizes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from types import SimpleNamespace

import jax
import numpy as np

from reaxopt.cluster.clustering import ONE_PASS, cluster_structures
from reaxopt.cluster.lists import bond_cutoffs, build_bonded_lists
from reaxopt.cluster.neighbours import PairList, half_pair_images, pad_pairs
from reaxopt.cluster.padding import pad_system_sizes, stack_trees, system_interaction_sizes
from reaxopt.cluster.sizes import Cutoffs
from reaxopt.energy.total import TERMS, System, energy_forces_charges
from reaxopt.errors import InputError
from reaxopt.executables import cached_executable, static_text
from reaxopt.forcefield import Params, Topology, build_forcefield, expand
from reaxopt.io.ffield import read_ffield
from reaxopt.io.files import write_text_atomic
from reaxopt.io.geometry import read_geometries
from reaxopt.single_points import packed_evaluation
from reaxopt.structure import Structure


def padded_size(n: int, minimum: int = 8) -> int:
    """Smallest m * 2^k >= max(n, minimum) with m in 4..7."""
    n = max(int(n), minimum)
    k = max(0, n.bit_length() - 3)
    while True:
        for m in (4, 5, 6, 7):
            if m << k >= n:
                return m << k
        k += 1


def atom_types(structure: Structure, topology: Topology) -> np.ndarray:
    """0-based force-field type of every atom; InputError for an element the file lacks."""
    index = {s.lower(): k for k, s in enumerate(topology.symbols)}
    missing = [s for s in structure.symbols if s.lower() not in index]
    if missing:
        raise InputError(f"structure '{structure.name}' has element {missing[0]}, which the "
                         f"force field does not define (it has {', '.join(topology.symbols)})",
                         file=structure.source, line=structure.line)
    return np.array([index[s.lower()] for s in structure.symbols], dtype=np.int32)


# the expanded tables that decide the bond-candidate cutoffs (``bond_cutoffs`` reads these)
_BOND_TABLES = ("bo_cut", "r_s_atom", "r_pi_atom", "r_pipi_atom", "r_s", "r_p", "r_pp", "p_bo1",
                "p_bo2", "p_bo3", "p_bo4", "p_bo5", "p_bo6")


@functools.partial(jax.jit, static_argnames="topology")
def _bond_tables(params: Params, topology: Topology) -> tuple:
    ff = expand(params, topology)
    return tuple(getattr(ff, name) for name in _BOND_TABLES)


def bond_cutoffs_for(params: Params, topology: Topology) -> np.ndarray:
    """(T,T) Å bond-candidate cutoffs of this force field (``reaxopt.cluster.lists``); the
    tables come from one compiled call, kept on disk (``cached_executable``)."""
    run = cached_executable(_bond_tables, (params,), name="bond_tables",
                            n_outputs=len(_BOND_TABLES), static={"topology": topology},
                            static_key=static_text(topology))
    tables = jax.device_get(run(params))
    return bond_cutoffs(SimpleNamespace(**dict(zip(_BOND_TABLES, tables))))


def build_system(structure: Structure, params: Params, topology: Topology, *,
                 bonded: bool = True, cutoffs: np.ndarray | None = None, skin: float = 0.0
                 ) -> tuple[np.ndarray, System]:
    """(positions (N, 3), System) for one structure, unpadded (host numpy; see ``pad_system``).

    bonded: also build the bonded terms' lists (``reaxopt.cluster.lists``; ``cutoffs`` from
    ``bond_cutoffs_for``, computed here if not given); False gives a System whose bonded terms
    are zero (nonbonded only). skin (Å): widen every cutoff by it (``Cutoffs.widened``), for a
    structure whose atoms will move; the energy must then drop the nonbonded pairs beyond the
    taper radius (``reaxopt.cluster.neighbours.pairs_within``).
    """
    positions = np.asarray(structure.positions, float)
    types = atom_types(structure, topology)
    if bonded and cutoffs is None:
        cutoffs = bond_cutoffs_for(params, topology)
    bond = cutoffs if bonded else np.zeros((topology.n_types,) * 2)
    limits = Cutoffs(nonbonded=float(params.general[12]), bond=np.asarray(bond, float))
    return positions, system_at(positions, structure.cell, types, structure.total_charge,
                                topology, limits.widened(skin) if skin else limits, bonded)


def system_at(positions, cell, types, total_charge: float, topology: Topology,
              cutoffs: Cutoffs, bonded: bool = True) -> System:
    """The unpadded System of atoms of ``types`` at ``positions`` (Å) in ``cell`` (row vectors,
    None for a molecule), with lists built with ``cutoffs`` (host numpy)."""
    positions = np.asarray(positions, float)
    i, j, images = half_pair_images(positions, cell, cutoffs.nonbonded)
    lists = None
    if bonded:  # bond and hydrogen-bond candidates from the nonbonded pairs when they hold them
        wide = cutoffs.nonbonded >= max(cutoffs.bond_max, cutoffs.hbond)
        lists = build_bonded_lists(positions, cell, types, topology, np.asarray(cutoffs.bond),
                                   hbond_cut=cutoffs.hbond, bond_cut=cutoffs.bond_max,
                                   pairs=(i, j, images) if wide else None)
    return System(cell=np.zeros((3, 3)) if cell is None else np.asarray(cell, float),
                  types=np.asarray(types, np.int32), atom_mask=np.ones(len(types), bool),
                  total_charge=np.float64(total_charge), pairs=pad_pairs(i, j, images, len(i)),
                  lists=lists)


def host_cutoffs(params: Params, topology: Topology, bonded: bool = True) -> Cutoffs:
    """The lists' cutoffs (Å) for this force field, without a skin; bond cutoffs zero unless
    ``bonded``."""
    return Cutoffs(nonbonded=float(np.asarray(params.general)[12]),  # no device operation
                   bond=(bond_cutoffs_for(params, topology) if bonded
                         else np.zeros((topology.n_types,) * 2)))


def host_systems(structures: list[Structure], topology: Topology, cutoffs: Cutoffs,
                 bonded: bool = True) -> list[tuple[np.ndarray, System]]:
    """(positions (n, 3) Å, unpadded System) of every structure, lists built with ``cutoffs``
    (``host_cutoffs``; host numpy)."""
    return [(np.asarray(s.positions, float),
             system_at(s.positions, s.cell, atom_types(s, topology), s.total_charge, topology,
                       cutoffs, bonded)) for s in structures]


def system_sizes(system: System) -> dict:
    """The sizes that fix a System's compiled shape: atoms, nonbonded pairs and list lengths."""
    sizes = {"atoms": len(system.types), "nonbonded_pairs": len(system.pairs.mask)}
    if system.lists is not None:
        sizes.update(system.lists.sizes())
    return sizes


def _pad_rows(array, size: int, fill):
    array = np.asarray(array)
    extra = np.full((size - len(array),) + array.shape[1:], fill, dtype=array.dtype)
    return np.concatenate([array, extra])


def _pad_pair_list(pairs: PairList, size: int) -> PairList:
    return PairList(i=_pad_rows(pairs.i, size, 0), j=_pad_rows(pairs.j, size, 0),
                    images=_pad_rows(pairs.images, size, 0.0),
                    mask=_pad_rows(pairs.mask, size, False))


# which size each bonded-list field follows, by its name's prefix
_LIST_KIND = {"angle_": "angles", "torsion_": "torsions", "hbond_": "hbonds"}


def _pad_lists(lists, sizes: dict):
    """The bonded lists padded to ``sizes``: masks False, bond-end signs +1, indices 0."""
    values = {}
    for f in dataclasses.fields(lists):
        value = getattr(lists, f.name)
        if isinstance(value, PairList):
            values[f.name] = _pad_pair_list(value, sizes["pairs"])
            continue
        kind = next(k for prefix, k in _LIST_KIND.items() if f.name.startswith(prefix))
        fill = False if np.asarray(value).dtype == bool else (1.0 if "sign" in f.name else 0)
        values[f.name] = _pad_rows(value, sizes[kind], fill)
    return type(lists)(**values)


def pad_system(positions, system: System, sizes: dict) -> tuple[np.ndarray, System]:
    """Pad an unpadded system to ``sizes`` (keys as ``system_sizes``); padding atoms are inert."""
    n, n_atoms = len(positions), sizes["atoms"]
    padded = np.zeros((n_atoms, 3))
    padded[:n] = positions
    # padding atoms sit far from everything and from each other (also when an already padded
    # system is padded further); no list holds them
    padded[n:] = 1.0e4 * (1.0 + np.arange(n, n_atoms))[:, None]
    lists = None if system.lists is None else _pad_lists(system.lists, sizes)
    return padded, System(cell=system.cell, types=_pad_rows(system.types, n_atoms, 0),
                          atom_mask=_pad_rows(system.atom_mask, n_atoms, False),
                          total_charge=system.total_charge,
                          pairs=_pad_pair_list(system.pairs, sizes["nonbonded_pairs"]),
                          lists=lists)


def shared_sizes(systems: list[System]) -> dict:
    """Padded sizes that hold every system given: the largest of each, rounded up."""
    largest: dict = {}
    for system in systems:
        for key, value in system_sizes(system).items():
            largest[key] = max(largest.get(key, 1), value)
    return {key: padded_size(value, 8) for key, value in largest.items()}


def atom_bucket(n_atoms: int) -> int:
    """The power of two (at least 8) that groups structures into one compiled shape."""
    return max(8, 1 << (int(n_atoms) - 1).bit_length())


def stack_systems(padded: list[tuple[np.ndarray, System]]) -> tuple[np.ndarray, System]:
    """(positions (B, N, 3), System with a leading batch axis) from equally padded systems."""
    return stack_trees(padded)


@functools.partial(jax.jit, static_argnames="topology")
def batched_energy_forces_charges(positions, systems: System, params: Params,
                                  topology: Topology):
    """``energy_forces_charges`` vmapped over a ``stack_systems`` batch (one compile per shape)."""
    def one(x, system):
        return energy_forces_charges(x, system, params, topology)

    return jax.vmap(one)(positions, systems)


def _chunks(members: list[int], sizes: dict, budget: int) -> list[list[int]]:
    """``members`` split into equal chunks whose padded list entries stay within ``budget``.

    All chunks have the same length (the last one is filled up by repeating its final member),
    so a group compiles once whatever its count.
    """
    per_structure = max(1, sum(sizes.values()))
    length = max(1, min(len(members), budget // per_structure))
    chunks = [members[k:k + length] for k in range(0, len(members), length)]
    chunks[-1] = chunks[-1] + [chunks[-1][-1]] * (length - len(chunks[-1]))
    return chunks


def batch_structures(structures: list[Structure], params: Params, topology: Topology, *,
                     bonded: bool = True, batch_budget: int = 2_000_000,
                     clusters: int | None = None
                     ) -> list[tuple[list[int], np.ndarray, System]]:
    """[(members, positions (B, N, 3), systems)]: the structures in stacked, padded batches.

    Structures are grouped by ``cluster_structures`` (``clusters`` clusters, default chosen for
    one pass: ``ONE_PASS``), each cluster padded to its padded sizes and split into equal
    chunks of at most ``batch_budget`` padded list entries (atoms + pairs + angles + ...) in
    all; the last chunk of a cluster repeats its final member to keep the shape. members:
    indices into ``structures`` (repeats included). Host numpy throughout.
    """
    cutoffs = bond_cutoffs_for(params, topology) if bonded else None
    built = [build_system(s, params, topology, bonded=bonded, cutoffs=cutoffs)
             for s in structures]
    clustering = cluster_structures([system_interaction_sizes(system) for _, system in built],
                                    clusters, auto=ONE_PASS)
    batches = []
    for c, padded in enumerate(clustering.padded):
        sizes = pad_system_sizes(padded)
        for chunk in _chunks(clustering.members(c).tolist(), sizes, batch_budget):
            positions, systems = stack_systems([pad_system(*built[k], sizes) for k in chunk])
            batches.append((chunk, positions, systems))
    return batches


def evaluate_structures(ffield_path, structures: list[Structure], *, bonded: bool = True,
                        enobonds: bool = True, batch_budget: int = 2_000_000,
                        clusters: int | None = None) -> list[dict]:
    """[dict(name, energy, terms, forces (N, 3), charges (N,))] for every structure, in order.

    Default: the structures packed (``reaxopt.single_points.packed_evaluation``: one compiled
    shape for the file, kept on disk). ``clusters`` given: one ``batched_energy_forces_charges``
    call per ``batch_structures`` batch, so the energy compiles once per cluster shape.
    batch_budget: the most list entries of one call. The force field is read from
    ``ffield_path``; enobonds: LAMMPS's keyword (default yes).
    """
    params, topology = build_forcefield(read_ffield(ffield_path), enobonds=enobonds)
    if clusters is None:
        built = host_systems(structures, topology, host_cutoffs(params, topology, bonded), bonded)
        return [{"name": s.name, **result} for s, result in
                zip(structures, packed_evaluation(built, params, topology, batch_budget))]
    results: list = [None] * len(structures)
    for members, positions, systems in batch_structures(structures, params, topology,
                                                        bonded=bonded,
                                                        batch_budget=batch_budget,
                                                        clusters=clusters):
        energy, terms, forces, charges = jax.device_get(batched_energy_forces_charges(
            positions, systems, params, topology=topology))
        for b, k in enumerate(members):
            n = structures[k].n_atoms
            results[k] = {
                "name": structures[k].name,
                "energy": float(energy[b]),
                "terms": {name: float(terms[name][b]) for name in TERMS},
                "forces": np.asarray(forces[b])[:n],
                "charges": np.asarray(charges[b])[:n],
            }
    return results


def _finite_or_none(value):
    """JSON has no NaN: non-finite numbers (nested in lists) become null."""
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value if np.isfinite(value) else None


def evaluate_to_jsonl(ffield_path, geo_path, out, warn=None) -> int:
    """Evaluate every structure of ``geo_path``; one JSON line per structure to ``out``.

    out: a path or an open text stream. Non-finite values are written as null, and ``warn``
    (a callable taking one line; default ``warnings.warn``) names their structures. Returns
    the number of structures written.
    """
    structures = read_geometries(geo_path)
    results = evaluate_structures(ffield_path, structures)
    text = jsonl_text(results, warn)
    if isinstance(out, (str, os.PathLike)):
        write_text_atomic(out, text)
    else:
        out.write(text)
    return len(results)


def jsonl_text(results: list[dict], warn=None) -> str:
    """``evaluate_structures``'s results as JSON lines, one per structure: name, energy, terms,
    forces, charges. Non-finite values become null, and ``warn`` (a callable taking one line;
    default ``warnings.warn``) names their structures."""
    import warnings

    lines, bad = [], []
    for r in results:
        record = {"name": r["name"], "energy": r["energy"], "terms": r["terms"],
                  "forces": r["forces"].tolist(), "charges": r["charges"].tolist()}
        terms = [name for name, value in r["terms"].items() if not np.isfinite(value)]
        if terms or not all(np.all(np.isfinite(r[k])) for k in ("energy", "forces", "charges")):
            bad.append(f"{r['name']}" + (f" ({', '.join(terms)})" if terms else ""))
            record = {k: ({t: _finite_or_none(v) for t, v in value.items()}
                          if k == "terms" else value if k == "name" else _finite_or_none(value))
                      for k, value in record.items()}
        lines.append(json.dumps(record, allow_nan=False))
    if bad:
        (warn or (lambda line: warnings.warn(line, stacklevel=3)))(
            f"{len(bad)} structure(s) have non-finite energies, forces or charges, written as "
            f"null: {', '.join(bad[:10])}" + (", ..." if len(bad) > 10 else ""))
    return "".join(line + "\n" for line in lines)
