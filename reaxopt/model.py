"""The fitting model: structures clustered into a few padded shapes, and their ReaxFF predictions.

``build_model(structures, params, topology, options)`` runs once on the host: it builds every
structure's pair and bonded lists (``reaxopt.evaluate.build_system``, with a skin for the
structures that will be minimised), groups the structures with
``reaxopt.cluster.clustering.cluster_structures`` (config ``clusters``: "auto" chooses K, an
integer sets it, up to one cluster per structure) and pads every cluster to its own padded sizes
(``reaxopt.cluster.padding``), one stacked batch per cluster.

Evaluation is one jitted, vmapped call per cluster (``cluster_predictions``; its forward and
pullback ``_cluster_forward`` / ``_pullback`` in a fit), so a cluster shape compiles once and
every later loss evaluation, optimizer iteration and outer step reuses it.

* ``predict(model, params)`` (also ``model.predict(params)``): pure, jittable and
  differentiable; the predictions of every structure in structure order.
* ``clustered_value_and_grad(objective)``: an objective of the predictions with its exact
  gradient in the fitted parameters, evaluated cluster by cluster (forward, then the objective
  and its cotangents in one jitted call, then one pullback per cluster).

Predictions (structure order; ``N`` = the largest padded atom count)
    energy (S,) kcal/mol; forces (S, N, 3) kcal/mol/Å at fixed QEq charges (as LAMMPS computes
    them); charges (S, N) e; positions (S, N, 3) Å (the input geometry); cell (S, 3, 3) Å
    (zeros for molecules); atom_mask (S, N). Padding atoms have zero forces and charges.
    Parameter derivatives of every prediction are total derivatives: the charges respond to
    the parameters.

Lists that move with the geometry: the lists of a structure with a skin (``Model.skins``) hold
every interaction of any geometry within skin/2 of where they were built (``Model.anchors``);
the energy drops the nonbonded pairs beyond the taper radius at the current positions
(``pairs_within``) and the bonded ones by its bond-order thresholds. ``reaxopt.minimize``
rebuilds a structure's lists before one of its atoms leaves that range.

``ThetaMap`` links the fitted parameters (a flat vector ``theta`` in the params file's order
and units) with ``Params``: ``to_params(theta, base)`` is pure, jittable and differentiable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.cluster.clustering import (AutoK, Clustering, cluster_structures,
                                        clustering_summary, summary_lines)
from reaxopt.cluster.lists import bond_cutoffs
from reaxopt.cluster.neighbours import pairs_within
from reaxopt.cluster.padding import pad_system_sizes, system_interaction_sizes
from reaxopt.cluster.sizes import Cutoffs, InteractionSizes
from reaxopt.device import on_device
from reaxopt.energy.total import (System, energy_forces_charges, energy_forces_virial,
                                  energy_terms)
from reaxopt.evaluate import build_system, pad_system, stack_systems
from reaxopt.forcefield import ATOM, BOND, OFFDIAG, Params, Topology, expand
from reaxopt.io.ffield import SECTIONS
from reaxopt.packed import SIZE_NAMES, pack_model, packed_outputs, unpacked
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
    ``build_model``, e.g. ``loosest_params``); clusters: "auto" (K chosen by ``auto``) or the
    number of clusters (compiled shapes; at least the number of structures gives one per
    structure); skin: Å added to every cutoff of the structures that are minimised (run type
    other than single_point), so that their lists stay complete while atoms move up to skin/2
    (at least twice FIRE's largest step, 0.2 Å); packed: predictions and gradients evaluate
    all structures as one packed system (``reaxopt.packed``: one compilation whatever the
    clusters) instead of batch by batch.
    """

    bond_margin: float = 0.1
    clusters: int | str = "auto"
    skin: float = 0.5
    auto: AutoK = AutoK()
    packed: bool = False


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


@partial(jax.tree_util.register_dataclass,
         data_fields=["batches", "order", "anchors", "cell_anchors", "packed"],
         meta_fields=["topology", "names", "n_atoms", "n_max", "sizes", "clustering", "cutoffs",
                      "skins", "with_forces"])
@dataclass
class Model:
    """Stacked padded batches of structures, one per cluster (a pytree: pass it to jitted
    functions).

    batches: tuple of (positions (B, n, 3), System with a leading axis B) per cluster, its
    structures in ``clustering.members`` order; order: (S,) int, the row of each structure in
    the batches' concatenation; anchors: per batch, the positions (B, n, 3) its lists were built
    at; cell_anchors: per batch, the cells (B, 3, 3) they were built with; names: structure
    names in order; n_atoms: real atom counts; n_max: the largest padded atom count; sizes:
    each batch's padded sizes (``InteractionSizes``); clustering: the clustering the model was
    built with; cutoffs: the lists' cutoffs before the skin; skins:
    per structure, the skin (Å) its lists were built with (0: a fixed geometry); with_forces:
    whether predictions carry forces (False: zeros, and the energy's derivatives are only taken
    once, so a loss without force items compiles and runs without second derivatives);
    packed: the structures as one packed system (``reaxopt.packed.Packed``, kept in step with
    the batches by ``refresh_packed``) or None: predictions then come from it.
    """

    batches: tuple
    order: Any
    anchors: tuple
    cell_anchors: tuple
    topology: Topology
    names: tuple[str, ...]
    n_atoms: tuple[int, ...]
    n_max: int
    sizes: tuple[InteractionSizes, ...]
    clustering: Clustering
    cutoffs: Cutoffs
    skins: tuple[float, ...]
    with_forces: bool = True
    packed: Any = None

    def predict(self, params: Params) -> Predictions:
        return predict(self, params)

    @property
    def n_structures(self) -> int:
        return len(self.names)

    @property
    def members(self) -> tuple[np.ndarray, ...]:
        """Per batch, the indices of its structures (in batch order)."""
        return tuple(self.clustering.members(c) for c in range(len(self.batches)))

    def summary_lines(self) -> list[str]:
        """The clustering as a table (``reaxopt cluster``'s): clusters, structures, padded sizes,
        padded vs unpadded cost, compile count; for a packed model its padded totals."""
        if self.packed is not None:
            return [f"packed: {self.n_structures} structures in one system of "
                    + ", ".join(f"{size} {name.replace('_', ' ')}" for name, size in
                                zip(SIZE_NAMES, self.packed.sizes))
                    + " (padded totals; one compilation)"]
        summary = clustering_summary(self.clustering, list(self.names))
        chosen = "chosen automatically" if self.clustering.candidates else "as configured"
        shapes = {(sizes, len(members)) for sizes, members in zip(self.sizes, self.members)}
        return summary_lines(summary, chosen) + [
            f"compile count: {len(shapes)} (one per cluster shape)"]


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


def build_model(structures: list[Structure], params: Params, topology: Topology,
                options: ModelOptions | None = None, cutoff_params: Params | None = None
                ) -> Model:
    """Cluster, pad and stack ``structures`` (host side; lists built at the input geometry).

    cutoff_params: the parameters whose bond-candidate cutoffs the lists use (default
    ``params``; a fit passes ``loosest_params`` so the lists stay complete within the bounds).
    """
    options = options or ModelOptions()
    if not structures:
        raise ValueError("build_model needs at least one structure")
    cutoffs = Cutoffs(nonbonded=float(params.general[12]),
                      bond=bond_cutoffs(expand(params if cutoff_params is None else cutoff_params,
                                               topology), margin=options.bond_margin))
    skins = tuple(0.0 if s.run_type == "single_point" else float(options.skin)
                  for s in structures)
    built = [build_system(s, params, topology, cutoffs=cutoffs.bond, skin=skin)
             for s, skin in zip(structures, skins)]
    k = None if options.clusters == "auto" else int(options.clusters)
    clustering = cluster_structures([system_interaction_sizes(system) for _, system in built], k,
                                    auto=options.auto)
    batches, anchors, cell_anchors = [], [], []
    rows, offset = np.empty(len(structures), np.int64), 0
    for c, padded in enumerate(clustering.padded):
        members = clustering.members(c)
        positions, system = stack_systems([pad_system(*built[m], pad_system_sizes(padded))
                                           for m in members])
        positions, system = on_device((np.asarray(positions), system))
        batches.append((positions, system))
        anchors.append(positions)  # immutable: the lists' anchors start where the batch is
        cell_anchors.append(system.cell)
        rows[members] = offset + np.arange(len(members))
        offset += len(members)
    model = Model(batches=tuple(batches), order=jnp.asarray(rows), anchors=tuple(anchors),
                  cell_anchors=tuple(cell_anchors),
                  topology=topology, names=tuple(s.name for s in structures),
                  n_atoms=tuple(s.n_atoms for s in structures),
                  n_max=max(p.atoms for p in clustering.padded), sizes=clustering.padded,
                  clustering=clustering, cutoffs=cutoffs, skins=skins)
    return refresh_packed(model) if options.packed else model


def refresh_packed(model: Model) -> Model:
    """``model`` with its packed system rebuilt from its batches (host; the previous packing's
    sizes are kept while they suffice, so the compiled shape stays)."""
    previous = () if model.packed is None else model.packed.sizes
    return dataclasses.replace(model, packed=on_device(pack_model(model, previous)))


# --------------------------------------------------------------------------------- evaluation


def energy_forces_charges_moving(positions, system: System, params: Params, topology: Topology):
    """``energy_forces_charges`` of one padded structure whose lists may hold pairs beyond the
    taper radius (built with a skin): those are dropped at these positions first."""
    pairs = pairs_within(system.pairs, positions, system.cell, params.general[12])
    energy, _, forces, charges = energy_forces_charges(
        positions, dataclasses.replace(system, pairs=pairs), params, topology)
    return energy, forces, charges


def energy_forces_virial_moving(positions, system: System, params: Params, topology: Topology):
    """(energy, forces (N, 3), virial (3, 3) kcal/mol) of one padded structure with moving lists
    (``energy_forces_virial`` after dropping the pairs beyond the taper radius)."""
    pairs = pairs_within(system.pairs, positions, system.cell, params.general[12])
    energy, forces, virial, _ = energy_forces_virial(
        positions, dataclasses.replace(system, pairs=pairs), params, topology)
    return energy, forces, virial


def energy_charges_moving(positions, system: System, params: Params, topology: Topology):
    """(energy, zero forces (N, 3), charges) of one padded structure with moving lists: the
    energy alone, for losses that need no forces."""
    pairs = pairs_within(system.pairs, positions, system.cell, params.general[12])
    terms, charges = energy_terms(positions, dataclasses.replace(system, pairs=pairs), params,
                                  topology)
    return sum(terms.values()), jnp.zeros_like(positions), charges


def _cluster_outputs(positions, system: System, params: Params, topology: Topology,
                     forces: bool = True):
    """(energy (B,), forces (B, n, 3), charges (B, n)) of one cluster's batch (forces zero
    unless ``forces``)."""
    one = energy_forces_charges_moving if forces else energy_charges_moving
    return jax.vmap(one, in_axes=(0, 0, None, None))(positions, system, params, topology)


cluster_predictions = jax.jit(_cluster_outputs, static_argnames=("topology", "forces"))
cluster_predictions.__doc__ = """Jitted ``_cluster_outputs``: one compilation per cluster shape."""


@partial(jax.jit, static_argnames=("topology", "forces"))
def _cluster_forward(positions, system: System, params: Params, topology: Topology,
                     forces: bool = True):
    """(outputs of one cluster, their pullback to ``params``), one compilation per shape."""
    return jax.vjp(lambda p: _cluster_outputs(positions, system, p, topology, forces), params)


@partial(jax.jit, static_argnames=("topology", "forces"))
def _packed_forward(positions, system, segments, params: Params, topology: Topology,
                    forces: bool = True, gates=None):
    """(outputs of the packed system, their pullback to ``params``): one compilation."""
    return jax.vjp(lambda p: packed_outputs(positions, system, segments, p, topology, forces,
                                            gates), params)


@jax.jit
def _pullback(vjp, cotangent):
    """d/d(inputs) of a pullback returned by a jitted ``jax.vjp`` (its first input's)."""
    return vjp(cotangent)[0]


@partial(jax.jit, static_argnames="tmap")
def _params_and_pullback(theta, base: Params, tmap: ThetaMap):
    return jax.vjp(lambda t: tmap.to_params(t, base), theta)


@jax.jit
def _theta_gradient(to_theta, params_cotangents):
    total = jax.tree_util.tree_map(lambda *xs: sum(xs), *params_cotangents)
    return to_theta(total)[0]


def _pad_atoms(x, n_max: int):
    extra = n_max - x.shape[1]
    if extra == 0:
        return x
    widths = [(0, 0), (0, extra)] + [(0, 0)] * (x.ndim - 2)
    return jnp.pad(x, widths)


def assemble(model: Model, outputs) -> Predictions:
    """Predictions in structure order from each cluster's (energy, forces, charges) (pure)."""
    parts = {k: [] for k in ("energy", "forces", "charges", "positions", "cell", "atom_mask")}
    for (positions, system), (energy, forces, charges) in zip(model.batches, outputs):
        parts["energy"].append(energy)
        parts["forces"].append(_pad_atoms(forces, model.n_max))
        parts["charges"].append(_pad_atoms(charges, model.n_max))
        parts["positions"].append(_pad_atoms(positions, model.n_max))
        parts["cell"].append(system.cell)
        parts["atom_mask"].append(_pad_atoms(system.atom_mask, model.n_max))
    return Predictions(**{k: jnp.concatenate(v)[model.order] for k, v in parts.items()})


def packed_predictions(model: Model, outputs) -> Predictions:
    """Predictions in structure order from the packed system's (energy, forces, charges)."""
    packed = model.packed
    energy, forces, charges = outputs
    return Predictions(energy=energy, forces=unpacked(packed, forces, model.n_max),
                       charges=unpacked(packed, charges, model.n_max),
                       positions=unpacked(packed, packed.positions, model.n_max),
                       cell=packed.cells,
                       atom_mask=unpacked(packed, packed.system.atom_mask, model.n_max, False))


def predict(model: Model, params: Params) -> Predictions:
    """Energies, forces, charges of every structure (pure, jittable, differentiable in params):
    one ``packed_outputs`` call for a packed model, else one ``cluster_predictions`` call per
    cluster."""
    if model.packed is not None:
        packed = model.packed
        return packed_predictions(model, packed_outputs(
            packed.positions, packed.system, packed.segments, params, topology=model.topology,
            forces=model.with_forces, gates=packed.gates))
    return assemble(model, [cluster_predictions(positions, system, params,
                                                topology=model.topology,
                                                forces=model.with_forces)
                            for positions, system in model.batches])


def clustered_value_and_grad(objective: Callable, static_argnames=()) -> Callable:
    """Value and exact parameter gradient of ``objective``, one energy call per cluster.

    objective(theta, predictions, *args, **static) -> (value, aux), pure; static: the keyword
    arguments named in ``static_argnames`` (hashable). Returns
    ``value_and_grad(theta, model, mapping, base_params, /, *args, **static) -> ((value,
    aux), d value / d theta)`` with the predictions ``model.predict(mapping.to_params(theta,
    base_params))``: the derivative is total (through the parameters and the predictions).
    Every cluster shape compiles its forward and its pullback once; the objective compiles once.
    """

    def of_outputs(theta, outputs, model, /, *args, **static):
        return objective(theta, assemble(model, outputs), *args, **static)

    gradient = jax.jit(jax.value_and_grad(of_outputs, argnums=(0, 1), has_aux=True),
                       static_argnames=static_argnames)

    def of_packed(theta, outputs, model, /, *args, **static):
        return objective(theta, packed_predictions(model, outputs), *args, **static)

    packed_gradient = jax.jit(jax.value_and_grad(of_packed, argnums=(0, 1), has_aux=True),
                              static_argnames=static_argnames)

    def value_and_grad(theta, model: Model, mapping: ThetaMap, base_params: Params, /, *args,
                       **static):
        params, to_theta = _params_and_pullback(theta, base_params, tmap=mapping)
        if model.packed is not None:
            packed = model.packed
            outputs, vjp = _packed_forward(packed.positions, packed.system, packed.segments,
                                           params, topology=model.topology,
                                           forces=model.with_forces, gates=packed.gates)
            (value, aux), (d_theta, d_outputs) = packed_gradient(theta, outputs, model, *args,
                                                                 **static)
            return (value, aux), d_theta + _theta_gradient(to_theta, [_pullback(vjp, d_outputs)])
        forward = [_cluster_forward(positions, system, params, topology=model.topology,
                                    forces=model.with_forces)
                   for positions, system in model.batches]
        (value, aux), (d_theta, d_outputs) = gradient(
            theta, tuple(out for out, _ in forward), model, *args, **static)
        d_params = [_pullback(vjp, d) for (_, vjp), d in zip(forward, d_outputs)]
        return (value, aux), d_theta + _theta_gradient(to_theta, d_params)

    return value_and_grad
