"""The fitting model: structures padded into a few stacked batches, and their ReaxFF predictions.

``build_model(structures, params, topology, options)`` runs once on the host: it builds every
structure's pair and bonded lists (``reaxopt.evaluate.build_system``), groups the structures
into batches of one padded shape each and stacks them. ``predict(model, params)`` (also
``model.predict(params)``) is pure and jittable: one vmapped energy per batch, gathered back
into structure order.

Predictions (structure order; ``N`` = the largest padded atom count)
    energy (S,) kcal/mol; forces (S, N, 3) kcal/mol/Å at fixed QEq charges (as LAMMPS computes
    them); charges (S, N) e; positions (S, N, 3) Å (the input geometry); cell (S, 3, 3) Å
    (zeros for molecules); atom_mask (S, N). Padding atoms have zero forces and charges.
    Parameter derivatives of every prediction are total derivatives: the charges respond to
    the parameters.

``ThetaMap`` links the fitted parameters (a flat vector ``theta`` in the params file's order
and units) with ``Params``: ``to_params(theta, base)`` is pure, jittable and differentiable.

``batch_members`` is the one place that decides which structures share a compiled shape (config
``clusters``: "auto" = one batch, or K batches from ``reaxopt.cluster.clustering``); each batch
is padded to ``evaluate.shared_sizes`` of its members.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.energy.total import energy_forces_charges
from reaxopt.evaluate import atom_bucket, build_system, pad_system, shared_sizes
from reaxopt.forcefield import ATOM, BOND, OFFDIAG, Params, Topology, expand
from reaxopt.io.ffield import SECTIONS
from reaxopt.structure import Structure

# Params field of each params-file section
PARAMS_FIELD = {"general": "general", "atoms": "atoms", "bonds": "bonds",
                "offdiagonal": "offdiag", "angles": "angles", "torsions": "torsions",
                "hbonds": "hbonds"}


# --------------------------------------------------------------------------------- theta map


@dataclass(frozen=True, eq=False)
class ThetaMap:
    """Where each fitted parameter sits in ``Params``, with its bounds (params-file order).

    fields: Params field name per parameter; rows, columns: 0-based indices into that field
    (general parameters: row = the general index, column unused); lower, upper: bounds (P,)
    in the file's units; labels: readable names.
    """

    fields: tuple[str, ...]
    rows: np.ndarray
    columns: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    labels: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.fields)

    def to_params(self, theta, base: Params) -> Params:
        """``base`` with the fitted values ``theta`` (P,) set (pure, jittable)."""
        theta = jnp.asarray(theta)
        values = {}
        for name in dict.fromkeys(self.fields):
            picks = np.array([k for k, f in enumerate(self.fields) if f == name])
            array = getattr(base, name)
            if name == "general":
                array = array.at[self.rows[picks]].set(theta[picks])
            else:
                array = array.at[self.rows[picks], self.columns[picks]].set(theta[picks])
            values[name] = array
        return dataclasses.replace(base, **values)

    def _key(self):
        return (self.fields, self.rows.tobytes(), self.columns.tobytes(), self.lower.tobytes(),
                self.upper.tobytes())

    def __hash__(self):  # a static argument of jitted functions
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, ThetaMap) and self._key() == other._key()

    def from_params(self, params: Params) -> np.ndarray:
        """The fitted parameters' values in ``params`` (host numpy, (P,))."""
        out = np.empty(self.size)
        for k, name in enumerate(self.fields):
            array = np.asarray(getattr(params, name))
            out[k] = array[self.rows[k]] if name == "general" else array[self.rows[k],
                                                                         self.columns[k]]
        return out


def theta_map(specs) -> ThetaMap:
    """The ThetaMap of a list of ``reaxopt.io.params.ParamSpec``."""
    fields = tuple(PARAMS_FIELD[SECTIONS[s.section]] for s in specs)
    rows = np.array([s.entry - 1 for s in specs], dtype=np.int64)
    columns = np.array([0 if f == "general" else s.parameter - 1
                        for s, f in zip(specs, fields)], dtype=np.int64)
    return ThetaMap(fields, rows, columns, np.array([s.lower for s in specs], float),
                    np.array([s.upper for s in specs], float), tuple(s.label for s in specs))


# --------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ModelOptions:
    """How structures are turned into padded batches.

    bond_margin: Å added to the bond-candidate cutoffs (computed from ``cutoff_params`` in
    ``build_model``, e.g. ``loosest_params``); clusters: see ``batch_members``.
    """

    bond_margin: float = 0.1
    clusters: int | str = "auto"


@partial(jax.tree_util.register_dataclass, data_fields=["energy", "forces", "charges",
                                                        "positions", "cell", "atom_mask"],
         meta_fields=[])
@dataclass
class Predictions:
    """Per-structure predictions in structure order (see the module docstring for units)."""

    energy: Any
    forces: Any
    charges: Any
    positions: Any
    cell: Any
    atom_mask: Any


@partial(jax.tree_util.register_dataclass, data_fields=["batches", "order"],
         meta_fields=["topology", "names", "n_atoms", "n_max", "sizes"])
@dataclass
class Model:
    """Stacked padded batches of structures (a pytree: pass it to jitted functions).

    batches: tuple of (positions (B, n, 3), System with a leading axis B) per padded shape;
    order: (S,) int, the row of each structure in the batches' concatenation; names: structure
    names in order; n_atoms: real atom counts; n_max: the largest padded atom count.
    """

    batches: tuple
    order: Any
    topology: Topology
    names: tuple[str, ...]
    n_atoms: tuple[int, ...]
    n_max: int
    sizes: tuple = ()  # the padded sizes of each batch, ((key, size), ...)

    def predict(self, params: Params) -> Predictions:
        return predict(self, params)

    @property
    def n_structures(self) -> int:
        return len(self.names)


def batch_members(structures: list[Structure], clusters: int | str = "auto",
                  systems: list | None = None) -> list[list[int]]:
    """Which structures share one padded shape (model rows, grouped).

    clusters: the number of batches, chosen by ``reaxopt.cluster.clustering`` from the
    structures' list sizes (``systems``, as ``evaluate.build_system`` gives them; without them,
    equal groups by atom count); "auto": one batch, because within a fit every batch is traced
    into the one compiled loss and gradient, and on a CPU each extra shape costs more compile
    time than its smaller padding saves over a few hundred evaluations.
    """
    n = 1 if clusters == "auto" else max(1, min(int(clusters), len(structures)))
    if n == 1:
        return [list(range(len(structures)))]
    if systems is not None:
        from reaxopt.cluster.clustering import cluster_structures
        from reaxopt.cluster.sizes import InteractionSizes
        from reaxopt.evaluate import system_sizes

        sizes = []
        for system in systems:
            found = system_sizes(system)
            sizes.append(InteractionSizes(
                atoms=found["atoms"], nonbonded_pairs=found["nonbonded_pairs"],
                bonded_pairs=found.get("pairs", 0), angles=found.get("angles", 0),
                torsions=found.get("torsions", 0), hbonds=found.get("hbonds", 0)))
        clustering = cluster_structures(sizes, n)
        return [clustering.members(c).tolist() for c in range(clustering.n_clusters)
                if len(clustering.members(c))]
    order = sorted(range(len(structures)), key=lambda k: (structures[k].n_atoms, k))
    return [sorted(part.tolist()) for part in np.array_split(np.array(order), n) if len(part)]


# bond-order parameters and the bound that lengthens the bond-candidate cutoff
_LOOSEST = {("atoms", ATOM[n]): "upper" for n in ("r_s", "r_pi", "r_pipi")}
_LOOSEST.update({("offdiag", OFFDIAG[n]): "upper" for n in ("r_s", "r_p", "r_pp")})
_LOOSEST.update({("bonds", BOND[n]): "upper" for n in ("p_bo1", "p_bo3", "p_bo5")})
_LOOSEST.update({("bonds", BOND[n]): "lower" for n in ("p_bo2", "p_bo4", "p_bo6")})


def loosest_params(theta_map: ThetaMap, params: Params) -> Params:
    """``params`` with each fitted bond-order parameter at the bound giving the longest bonds.

    Radii r_s, r_pi, r_pipi at their upper bounds, p_bo1, p_bo3, p_bo5 (negative) at their
    upper bounds, p_bo2, p_bo4, p_bo6 at their lower bounds, the bond-order cutoff (general 30)
    at its lower bound: bond-candidate lists built with these hold every bond a fit can form.
    """
    theta = theta_map.from_params(params)
    for k, (name, row, column) in enumerate(zip(theta_map.fields, theta_map.rows,
                                                 theta_map.columns)):
        side = "lower" if (name == "general" and row == 29) else _LOOSEST.get((name, column))
        if side is not None:
            theta[k] = getattr(theta_map, side)[k]
    return theta_map.to_params(theta, params)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *trees)


def build_model(structures: list[Structure], params: Params, topology: Topology,
                options: ModelOptions | None = None, cutoff_params: Params | None = None
                ) -> Model:
    """Pad and stack ``structures`` into batches (host side; lists built at the input geometry).

    cutoff_params: the parameters whose bond-candidate cutoffs the lists use (default
    ``params``; a fit passes ``loosest_params`` so the lists stay complete within the bounds).
    """
    from reaxopt.cluster.lists import bond_cutoffs

    options = options or ModelOptions()
    if not structures:
        raise ValueError("build_model needs at least one structure")
    cutoffs = bond_cutoffs(expand(params if cutoff_params is None else cutoff_params, topology),
                           margin=options.bond_margin)
    built = [build_system(s, params, topology, cutoffs=cutoffs) for s in structures]
    batches, rows, sizes_used = [], np.empty(len(structures), np.int64), []
    offset = 0
    for members in batch_members(structures, options.clusters, [b[1] for b in built]):
        sizes = shared_sizes([built[k][1] for k in members])
        sizes["atoms"] = atom_bucket(max(structures[k].n_atoms for k in members))
        padded = [pad_system(*built[k], sizes) for k in members]
        batches.append((jnp.asarray(np.stack([p for p, _ in padded])),
                        _stack([s for _, s in padded])))
        rows[members] = offset + np.arange(len(members))
        offset += len(members)
        sizes_used.append(tuple(sorted(sizes.items())))
    n_max = max(int(b[0].shape[1]) for b in batches)
    return Model(batches=tuple(batches), order=jnp.asarray(rows), topology=topology,
                 names=tuple(s.name for s in structures),
                 n_atoms=tuple(s.n_atoms for s in structures), n_max=n_max,
                 sizes=tuple(sizes_used))


def _pad_atoms(x, n_max: int):
    extra = n_max - x.shape[1]
    if extra == 0:
        return x
    widths = [(0, 0), (0, extra)] + [(0, 0)] * (x.ndim - 2)
    return jnp.pad(x, widths)


def predict(model: Model, params: Params) -> Predictions:
    """Energies, forces, charges of every structure (pure, jittable, differentiable in params)."""
    evaluate = jax.vmap(partial(energy_forces_charges, topology=model.topology),
                        in_axes=(0, 0, None))
    parts = {k: [] for k in ("energy", "forces", "charges", "positions", "cell", "atom_mask")}
    for positions, system in model.batches:
        energy, _, forces, charges = evaluate(positions, system, params)
        parts["energy"].append(energy)
        parts["forces"].append(_pad_atoms(forces, model.n_max))
        parts["charges"].append(_pad_atoms(charges, model.n_max))
        parts["positions"].append(_pad_atoms(positions, model.n_max))
        parts["cell"].append(system.cell)
        parts["atom_mask"].append(_pad_atoms(system.atom_mask, model.n_max))
    values = {k: jnp.concatenate(v)[model.order] for k, v in parts.items()}
    return Predictions(**values)
