"""All structures of a model as one packed system: one compiled energy for every structure.

The padded batches of ``reaxopt.model`` compile the energy once per cluster shape; packing
concatenates the real atoms and interaction lists of every structure instead (indices offset,
periodic images premultiplied by each structure's cell, so the packed cell is the identity) and
pads only the totals. Each energy term then sums per structure (``reaxopt.energy.segments``),
and QEq solves one dense block per structure. The energies, forces and charges are those of the
batches, term by term; the packed system compiles once whatever the structures' sizes, and pads
only the totals.

Units: Å, kcal/mol, kcal/mol/Å, e.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.cluster.clustering import round_up
from reaxopt.cluster.neighbours import PairList, pairs_within
from reaxopt.energy.gates import Gates, threshold_gates
from reaxopt.energy.segments import Segments, charges_vanish
from reaxopt.energy.total import System, energy_at_charges, equilibrate_charges
from reaxopt.forcefield import Params, Topology, expand

PACK_MULTIPLE = 64  # packed totals are padded to a multiple of this
FAR = 1.0e5  # Å: padding atoms sit this far apart, away from everything

# bonded-list fields holding atom indices, pair indices and periodic images
_ATOM_FIELDS = ("angle_center", "hbond_acceptor")
_PAIR_FIELDS = ("angle_pair1", "angle_pair2", "torsion_jk", "torsion_ij", "torsion_kl",
                "hbond_xh")
_IMAGE_FIELDS = ("hbond_acceptor_images",)
_MASKS = {"angle": "angle_mask", "torsion": "torsion_mask", "hbond": "hbond_mask"}


@partial(jax.tree_util.register_dataclass,
         data_fields=["positions", "system", "segments", "cells", "gates"],
         meta_fields=["sizes"])
@dataclass
class Packed:
    """S structures packed into one system (a pytree).

    positions: (N, 3) Å; system: the packed ``System`` (identity cell, images in Å, total
    charge unused); segments: each atom's structure and QEq slot, per-structure total charges;
    cells: (S, 3, 3) Å, each structure's cell (zeros: a molecule);
    sizes: the padded totals (``SIZE_NAMES``), which fix the compiled shape; gates: the
    bond-order gates (``reaxopt.energy.gates``) its energies keep, as ``gated`` recorded them
    (None: LAMMPS's thresholds wherever it is evaluated; a re-packing drops them).
    """

    positions: Any
    system: System
    segments: Segments
    cells: Any
    sizes: tuple[int, ...] = field(default=())
    gates: Any = None


SIZE_NAMES = ("atoms", "nonbonded_pairs", "bonded_pairs", "angle", "torsion", "hbond")
GROWTH_HEADROOM = 0.25  # extra room when a re-packed total outgrows the previous padding


def padded_sizes(counts: tuple[int, ...], previous: tuple[int, ...] = (),
                 multiple: int = PACK_MULTIPLE) -> tuple[int, ...]:
    """Padded totals for real ``counts``: the ``previous`` ones while they hold the counts (the
    compiled shape is kept), else the counts with GROWTH_HEADROOM extra, rounded up to
    ``multiple``."""
    if previous and all(c <= p for c, p in zip(counts, previous)):
        return tuple(previous)
    grow = 1.0 + (GROWTH_HEADROOM if previous else 0.0)
    return tuple(int(round_up(np.array([max(int(np.ceil(c * grow)), 1)]), multiple)[0])
                 for c in counts)


def ladder_sizes(full: tuple[int, ...], counts: tuple[int, ...], factor: int = 4,
                 multiple: int = PACK_MULTIPLE) -> tuple[int, ...]:
    """The smallest of the padded totals full / factor**L (L = 0, 1, ..., each rounded up to
    ``multiple``) that holds ``counts``: subsets of the structures packed into ``full`` reuse a
    few compiled shapes. ``full`` itself if none holds them (``pack`` then grows it)."""
    chosen = tuple(full)
    for level in range(1, 16):
        sizes = tuple(int(round_up(np.array([max(-(-f // factor ** level), 1)]), multiple)[0])
                      for f in full)
        if not all(c <= size for c, size in zip(counts, sizes)):
            break
        chosen = sizes
    return chosen


def pack_counts(structures: list[tuple[Any, System]]) -> tuple[int, ...]:
    """The real totals (``SIZE_NAMES`` order) of (positions, System) structures packed."""
    def counts(system):
        lists = system.lists
        own = (int(np.sum(system.atom_mask)), int(np.sum(system.pairs.mask)))
        if lists is None:
            return own + (0,) * (len(SIZE_NAMES) - 2)
        return own + (int(np.sum(lists.pairs.mask)),) + tuple(
            int(np.sum(getattr(lists, mask))) for mask in _MASKS.values())

    return tuple(int(sum(c)) for c in zip(*(counts(system) for _, system in structures)))


def _real(lists_field, count):
    return np.asarray(lists_field)[:count]


def _pairs(pairs: PairList, count: int, offset: int, cell) -> tuple:
    return (np.asarray(pairs.i)[:count] + offset, np.asarray(pairs.j)[:count] + offset,
            np.asarray(pairs.images, float)[:count] @ cell)


def _pad(parts, size, fill, dtype=None):
    values = np.concatenate(parts) if parts else np.zeros((0,))
    values = values.astype(dtype) if dtype is not None else values
    padding = np.full((size - len(values),) + values.shape[1:], fill, dtype=values.dtype)
    return np.concatenate([values, padding])


def _pair_list(parts, size: int) -> PairList:
    count = sum(len(i) for i, _, _ in parts)
    return PairList(i=_pad([p[0] for p in parts], size, 0, np.int32),
                    j=_pad([p[1] for p in parts], size, 0, np.int32),
                    images=_pad([p[2].reshape(-1, 3) for p in parts], size, 0.0, float),
                    mask=np.arange(size) < count)


def pack(structures: list[tuple[Any, System]], previous: tuple[int, ...] = (),
         round_qeq: bool = False) -> Packed:
    """Pack (positions (n, 3), System) per structure (unpadded or padded: padding atoms and
    list entries, masked, are dropped) into one ``Packed`` (host numpy), padded to
    ``padded_sizes`` (``previous``: the sizes of an earlier packing of the same structures,
    kept while they suffice). The QEq blocks, part of the compiled shape: one per structure
    whose charges do not vanish by symmetry (``charges_vanish``), the largest structure's atom
    count in size; ``round_qeq``: both rounded up to powers of two (re-packed subsets of the
    structures then share a few compiled shapes)."""
    atoms, pair_parts, bonded_parts = [], [], []
    lists_parts: dict[str, list] = {}
    offset = pair_offset = 0
    has_lists = structures[0][1].lists is not None
    for s, (positions, system) in enumerate(structures):
        n = int(np.sum(system.atom_mask))
        cell = np.asarray(system.cell, float)
        atoms.append((np.asarray(positions, float)[:n], np.asarray(system.types)[:n], s, n))
        pair_parts.append(_pairs(system.pairs, int(np.sum(system.pairs.mask)), offset, cell))
        if has_lists:
            lists = system.lists
            n_pairs = int(np.sum(lists.pairs.mask))
            bonded_parts.append(_pairs(lists.pairs, n_pairs, offset, cell))
            for f in dataclasses.fields(lists):
                if f.name == "pairs":
                    continue
                kind = f.name.split("_")[0]
                value = _real(getattr(lists, f.name), int(np.sum(getattr(lists, _MASKS[kind]))))
                if f.name in _ATOM_FIELDS:
                    value = value + offset
                elif f.name in _PAIR_FIELDS:
                    value = value + pair_offset
                elif f.name in _IMAGE_FIELDS:
                    value = np.asarray(value, float).reshape(-1, 3) @ cell
                lists_parts.setdefault(f.name, []).append(value)
            pair_offset += n_pairs
        offset += n
    sizes = padded_sizes(pack_counts(structures), previous)
    n_total = sizes[0]
    block = max(n for *_, n in atoms)
    positions = np.concatenate([x for x, *_ in atoms])
    far = FAR * (1.0 + np.arange(n_total - offset))[:, None] * np.ones(3)
    structure = np.concatenate([np.full(n, s) for _, _, s, n in atoms])
    local = np.concatenate([np.arange(n) for *_, n in atoms])
    lists = None
    if has_lists:
        list_sizes = dict(zip(_MASKS, sizes[3:]))
        values = {"pairs": _pair_list(bonded_parts, sizes[2])}
        template = structures[0][1].lists
        for f in dataclasses.fields(template):
            if f.name == "pairs":
                continue
            kind = f.name.split("_")[0]
            parts = lists_parts[f.name]
            dtype = np.asarray(getattr(template, f.name)).dtype
            fill = False if dtype == bool else (1.0 if "sign" in f.name else 0)
            if f.name in _IMAGE_FIELDS:
                dtype = float
            values[f.name] = _pad(parts, list_sizes[kind], fill, dtype)
        lists = type(template)(**values)
    system = System(cell=np.eye(3),
                    types=_pad([t for _, t, _, _ in atoms], n_total, 0, np.int32),
                    atom_mask=np.arange(n_total) < offset, total_charge=np.float64(0.0),
                    pairs=_pair_list(pair_parts, sizes[1]), lists=lists)
    total_charge = np.array([float(sy.total_charge) for _, sy in structures])
    charged = np.array([not charges_vanish(t, q) for (_, t, _, _), q in zip(atoms, total_charge)])
    blocks = int(np.sum(charged))
    if round_qeq:
        block, blocks = _power_of_two(block), _power_of_two(blocks)
    segments = Segments(structure=_pad([structure], n_total, 0, np.int32),
                        local=_pad([local], n_total, block, np.int32),
                        total_charge=total_charge,
                        charged=np.where(charged, np.cumsum(charged) - 1, blocks).astype(np.int32),
                        count=len(structures), block=block, blocks=blocks)
    return Packed(positions=np.concatenate([positions, far]), system=system, segments=segments,
                  cells=np.stack([np.asarray(sy.cell, float) for _, sy in structures]),
                  sizes=sizes)


def _power_of_two(n: int) -> int:
    """The smallest power of two >= n (0 for 0)."""
    return 0 if n == 0 else 1 << (n - 1).bit_length()


def row_systems(model) -> list[tuple[Any, System]]:
    """(positions (n_max, 3) Å, padded System) of every structure of a ``reaxopt.model.Model``,
    by model row, as its batch holds them (host numpy)."""
    found = {}
    for (positions, system), members in zip(model.batches, model.members):
        host_positions = np.asarray(positions)
        host = jax.tree_util.tree_map(np.asarray, system)
        for b, k in enumerate(members):
            found[int(k)] = (host_positions[b], jax.tree_util.tree_map(lambda a: a[b], host))
    return [found[k] for k in range(model.n_structures)]


def pack_model(model, previous: tuple[int, ...] = ()) -> Packed:
    """``reaxopt.model.Model``'s structures (in structure order) packed, at their current
    positions and lists (host; ``previous``: see ``pack``)."""
    return pack(row_systems(model), previous)


@partial(jax.jit, static_argnames=("topology", "forces"))
def packed_outputs(positions, system: System, segments: Segments, params: Params,
                   topology: Topology, forces: bool = True, gates=None):
    """(energy (S,) kcal/mol, forces (N, 3) kcal/mol/Å at fixed charges (zeros unless
    ``forces``), charges (N,) e) of a packed system; lists built with a skin are reduced to the
    pairs within the taper radius first. gates: see ``Packed``. One compilation per packed
    shape."""
    pairs = pairs_within(system.pairs, positions, system.cell, params.general[12])
    system = dataclasses.replace(system, pairs=pairs)
    ff = expand(params, topology)
    charges = equilibrate_charges(positions, system, ff, segments)

    def total(x, q):
        energy = sum(energy_at_charges(x, q, system, ff, topology, segments, gates).values())
        return jnp.sum(energy), energy

    if not forces:
        return total(positions, charges)[1], jnp.zeros_like(positions), charges
    (_, energy), gradient = jax.value_and_grad(total, has_aux=True)(positions, charges)
    return energy, jnp.where(system.atom_mask[:, None], -gradient, 0.0), charges


@partial(jax.jit, static_argnames="topology")
def _gates(positions, system: System, params: Params, topology: Topology) -> Gates:
    return threshold_gates(positions, system.cell, system.lists, expand(params, topology),
                           topology, system.types, system.atom_mask)


def gated(packed: Packed, params: Params, topology: Topology) -> Packed:
    """``packed`` with its energies' bond-order gates held at ``params`` (its positions as
    they are): exact there and smooth in the parameters around it (``reaxopt.energy.gates``).
    Unchanged without bonded lists."""
    if packed.system.lists is None:
        return packed
    return dataclasses.replace(packed, gates=_gates(packed.positions, packed.system, params,
                                                    topology=topology))


@partial(jax.jit, static_argnames="topology")
def _gates_equal(positions, system: System, params: Params, topology: Topology, held: Gates):
    live = _gates(positions, system, params, topology=topology)
    same = jax.tree_util.tree_map(lambda a, b: jnp.all(a == b), live, held)
    return jnp.all(jnp.stack(jax.tree_util.tree_leaves(same)))


def gates_hold(packed: Packed, params: Params, topology: Topology) -> bool:
    """Whether ``packed``'s held gates are LAMMPS's at ``params`` (its positions as they are),
    so that its energies there are exact; True when it holds none (``gated`` holds none
    without bonded lists)."""
    if packed.gates is None:
        return True
    return bool(_gates_equal(packed.positions, packed.system, params, topology=topology,
                             held=packed.gates))


def deformed(system: System, segments: Segments, deformation) -> System:
    """``system`` with every periodic image vector (Å) of structure s right-multiplied by
    ``deformation[s]`` (S, 3, 3): the images of a cell deformed from C to C D."""
    owner = segments.structure

    def moved(vectors, atoms):
        return jnp.einsum("pi,pij->pj", vectors, deformation[owner[atoms]])

    lists = system.lists
    if lists is not None:
        lists = dataclasses.replace(
            lists, pairs=dataclasses.replace(lists.pairs, images=moved(lists.pairs.images,
                                                                       lists.pairs.i)),
            hbond_acceptor_images=moved(lists.hbond_acceptor_images, lists.hbond_acceptor))
    return dataclasses.replace(system, pairs=dataclasses.replace(
        system.pairs, images=moved(system.pairs.images, system.pairs.i)), lists=lists)


def packed_energy_forces_virial(positions, system: System, segments: Segments, deformation,
                                params: Params, topology: Topology):
    """(energy (S,) kcal/mol, forces (N, 3) kcal/mol/Å, virial (S, 3, 3) kcal/mol) of a packed
    system whose structure s has its cell deformed by ``deformation[s]`` since packing (its
    image vectors times it; identity: as packed), at fixed QEq charges, with lists built with
    a skin reduced to the taper radius first.

    The virial of structure s is minus the derivative of its energy under a homogeneous strain
    eps_s of its atoms and cell together, x -> x (1 + eps_s), symmetrised:
    ``reaxopt.energy.total.energy_forces_virial``'s, per structure."""
    system = deformed(system, segments, deformation)
    system = dataclasses.replace(system, pairs=pairs_within(system.pairs, positions, system.cell,
                                                            params.general[12]))
    ff = expand(params, topology)
    charges = equilibrate_charges(positions, system, ff, segments)
    unit = jnp.broadcast_to(jnp.eye(3), deformation.shape)

    def total(x, strain):
        strained_x = x + jnp.einsum("ni,nij->nj", x, strain[segments.structure])
        energy = sum(energy_at_charges(strained_x, charges,
                                       deformed(system, segments, unit + strain), ff, topology,
                                       segments).values())
        return jnp.sum(energy), energy

    (_, energy), (d_x, d_strain) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
        positions, jnp.zeros_like(deformation))
    virial = -0.5 * (d_strain + jnp.swapaxes(d_strain, 1, 2))
    return energy, jnp.where(system.atom_mask[:, None], -d_x, 0.0), virial


def unpacked(packed: Packed, values, n_max: int, fill=0.0):
    """Per-atom ``values`` (N, ...) of a packed system as (S, n_max, ...) (pure)."""
    s = packed.segments
    local = jnp.where(packed.system.atom_mask, s.local, n_max)  # padding atoms: dropped
    out = jnp.full((s.count, n_max) + values.shape[1:], fill, values.dtype)
    return out.at[s.structure, local].set(values, mode="drop")
