"""The ReaxFF loss: training items compiled into index arrays against a model's structure order.

Every item contributes ``scale * residual**2`` with ``residual = computed - reference``. For
``trainset.in`` items ``scale = 1 / weight**2`` (ReaxFF's convention: the "weight" is the
accuracy, error = ((reference - computed) / weight)**2). For structured inputs (extended XYZ)
``scale`` is the file's ``weight_energy`` / ``weight_forces`` (``loss.energy_weight`` /
``loss.forces_weight`` by default).

What each item compares (units kcal/mol, Å, e; angles in radians inside, degrees in reports):

* ENERGY: sum of sign * E(name) / divisor over the item's terms.
* HEATFO: the structure's ReaxFF energy as computed (no per-atom heat increments are added), so
  the reference must be on the ReaxFF energy scale.
* CHARGE: the QEq charge of one atom.
* FORCES: each component of one atom's force (three items per trainset line); the RMS form
  compares sqrt(sum |F|^2 / (3 N)) over the structure's N atoms.
* GEOMETRY: a bond length, valence angle or torsion angle (IUPAC sign) of the positions (the
  minimised geometry when the structure is minimised, else the input; minimum-image vectors in
  periodic cells); torsion residuals are wrapped into (-pi, pi]. RMSG is the RMS force as above.
* CELL PARAMETERS: a, b, c (Å) or alpha, beta, gamma of the structure's cell.
* Structured inputs, energy: ``energy_mode: absolute`` compares each structure's energy with
  its reference. ``relative`` (default) compares differences: the structures of one file are
  grouped by composition (element counts), and within a group each structure's energy minus
  that of the group's reference structure -- the one with the lowest reference energy -- is
  compared with the same difference of the references. A per-element offset between the DFT and
  ReaxFF energy scales cancels exactly; a structure alone in its group carries no energy item.
  Grouping by composition rather than by family links, e.g., a rattled or scanned molecule to
  its equilibrium geometry in another family. Forces: every component of every atom.

``compile_items(data, index, config)`` builds a ``CompiledItems`` pytree (device arrays) and a
host-side list of ``ItemInfo`` for the report; ``residuals(items, predictions)`` and
``loss(items, predictions)`` are pure and jittable.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.geometry import angle_between, bond_angle_torsion, wrapped_angle


KINDS = ("energy", "forces", "charge", "geometry", "cell", "heatfo")
CELL_PARAMETERS = ("a", "b", "c", "alpha", "beta", "gamma")
GEOMETRY_CODES = {"bond": 0, "angle": 1, "torsion": 2, "rmsg": 3}
FORCE_COMPONENT_RMS = 3  # component code of an RMS-force item


@dataclass(frozen=True)
class ItemInfo:
    """One loss item as the report shows it (host side).

    kind: one of KINDS; what: a readable description (structure, atoms, component); reference
    in report units (degrees for angles); weight: the trainset weight (None for structured
    inputs); scale: the multiplier of the squared residual; angle: report in degrees;
    source: where the item came from (file and line).
    """

    kind: str
    what: str
    structures: tuple[str, ...]
    reference: float
    weight: float | None
    scale: float
    angle: bool = False
    source: str = ""


def _arrays(**fields):
    return {k: jnp.asarray(np.asarray(v)) for k, v in fields.items()}


@partial(jax.tree_util.register_dataclass, data_fields=["energy", "forces", "charge",
                                                        "geometry", "cell", "heatfo"],
         meta_fields=[])
@dataclass
class CompiledItems:
    """Index arrays per item kind (each a dict of equally long arrays; see ``compile_items``).

    energy: rows (I, K) structure rows, coefficients (I, K); forces: row, atom, component (0..2,
    3 = RMS force); charge: row, atom; geometry: row, atoms (G, 4), code (GEOMETRY_CODES);
    cell: row, parameter (index into CELL_PARAMETERS); heatfo: row. Every kind also has
    reference and scale.
    """

    energy: dict
    forces: dict
    charge: dict
    geometry: dict
    cell: dict
    heatfo: dict

    def counts(self) -> dict[str, int]:
        return {k: int(getattr(self, k)["reference"].shape[0]) for k in KINDS}


class _Builder:
    """Collects items kind by kind, then turns them into arrays."""

    def __init__(self):
        self.rows = {k: [] for k in KINDS}
        self.info = {k: [] for k in KINDS}

    def add(self, kind: str, row: dict, info: ItemInfo) -> None:
        self.rows[kind].append(row)
        self.info[kind].append(info)

    def compiled(self) -> tuple[CompiledItems, list[ItemInfo]]:
        out = {}
        for kind in KINDS:
            rows = self.rows[kind]
            if kind == "energy":
                width = max([1] + [len(r["rows"]) for r in rows])
                out[kind] = _arrays(
                    rows=np.array([r["rows"] + [0] * (width - len(r["rows"])) for r in rows],
                                  np.int64).reshape(len(rows), width),
                    coefficients=np.array([r["coefficients"] + [0.0] * (width - len(r["rows"]))
                                           for r in rows], float).reshape(len(rows), width),
                    reference=np.array([r["reference"] for r in rows], float),
                    scale=np.array([r["scale"] for r in rows], float))
                continue
            keys = {"forces": ("row", "atom", "component"), "charge": ("row", "atom"),
                    "geometry": ("row", "atoms", "code"), "cell": ("row", "parameter"),
                    "heatfo": ("row",)}[kind]
            fields = {}
            for key in keys:
                if key == "atoms":
                    fields[key] = np.array([r[key] for r in rows], np.int64).reshape(-1, 4)
                else:
                    fields[key] = np.array([r[key] for r in rows], np.int64)
            fields["reference"] = np.array([r["reference"] for r in rows], float)
            fields["scale"] = np.array([r["scale"] for r in rows], float)
            out[kind] = _arrays(**fields)
        info = [i for kind in KINDS for i in self.info[kind]]
        return CompiledItems(**out), info


def _where(item, source) -> str:
    return f"{source}, line {item.line}" if source else f"line {item.line}"


def _trainset_items(builder: _Builder, trainset, index: dict[str, int]) -> None:
    source = trainset.source or "trainset"
    for item in trainset.energy:
        rows = [index[t.name] for t in item.terms]
        coefficients = [t.sign / t.divisor for t in item.terms]
        what = " ".join(("+" if t.sign > 0 else "-") + t.name + (f"/{t.divisor}" if t.divisor != 1
                                                                  else "") for t in item.terms)
        builder.add("energy", dict(rows=rows, coefficients=coefficients,
                                   reference=item.reference, scale=item.weight ** -2),
                    ItemInfo("energy", what, tuple(t.name for t in item.terms), item.reference,
                             item.weight, item.weight ** -2, source=_where(item, source)))
    for item in trainset.charge:
        builder.add("charge", dict(row=index[item.name], atom=item.atom,
                                   reference=item.reference, scale=item.weight ** -2),
                    ItemInfo("charge", f"{item.name} atom {item.atom + 1}", (item.name,),
                             item.reference, item.weight, item.weight ** -2,
                             source=_where(item, source)))
    for item in trainset.heatfo:
        builder.add("heatfo", dict(row=index[item.name], reference=item.reference,
                                   scale=item.weight ** -2),
                    ItemInfo("heatfo", item.name, (item.name,), item.reference, item.weight,
                             item.weight ** -2, source=_where(item, source)))
    for item in trainset.geometry:
        angle = item.kind in ("angle", "torsion")
        # an angle's weight is in degrees like its reference in the file
        weight = math.radians(item.weight) if angle else item.weight
        atoms = list(item.atoms) + [0] * (4 - len(item.atoms))
        label = (f"{item.name} {item.kind} " + "-".join(str(a + 1) for a in item.atoms)
                 if item.atoms else f"{item.name} RMSG")
        reference = math.degrees(item.reference) if angle else item.reference
        builder.add("geometry", dict(row=index[item.name], atoms=atoms,
                                     code=GEOMETRY_CODES[item.kind], reference=item.reference,
                                     scale=weight ** -2),
                    ItemInfo("geometry", label, (item.name,), reference, item.weight,
                             weight ** -2, angle=angle, source=_where(item, source)))
    for item in trainset.forces:
        if item.atom is None:
            builder.add("forces", dict(row=index[item.name], atom=0,
                                       component=FORCE_COMPONENT_RMS, reference=item.reference,
                                       scale=item.weight ** -2),
                        ItemInfo("forces", f"{item.name} RMS force", (item.name,),
                                 item.reference, item.weight, item.weight ** -2,
                                 source=_where(item, source)))
            continue
        for c, value in enumerate(item.reference):
            builder.add("forces", dict(row=index[item.name], atom=item.atom, component=c,
                                       reference=value, scale=item.weight ** -2),
                        ItemInfo("forces", f"{item.name} atom {item.atom + 1} f{'xyz'[c]}",
                                 (item.name,), value, item.weight, item.weight ** -2,
                                 source=_where(item, source)))
    for item in trainset.cell:
        angle = item.parameter in ("alpha", "beta", "gamma")
        weight = math.radians(item.weight) if angle else item.weight
        builder.add("cell", dict(row=index[item.name],
                                 parameter=CELL_PARAMETERS.index(item.parameter),
                                 reference=item.reference, scale=weight ** -2),
                    ItemInfo("cell", f"{item.name} {item.parameter}", (item.name,),
                             math.degrees(item.reference) if angle else item.reference,
                             item.weight, weight ** -2, angle=angle,
                             source=_where(item, source)))


def composition(structure) -> tuple:
    """Element counts, sorted: the key that groups structures for relative energies."""
    return tuple(sorted(Counter(s.capitalize() for s in structure.symbols).items()))


def _structured_items(builder: _Builder, structured, index: dict[str, int],
                      energy_mode: str) -> None:
    source = str(structured.path)
    with_energy = [s for s in structured.structures if s.energy is not None]
    if energy_mode == "absolute":
        for s in with_energy:
            builder.add("energy", dict(rows=[index[s.name]], coefficients=[1.0],
                                       reference=s.energy, scale=structured.weight_energy),
                        ItemInfo("energy", s.name, (s.name,), s.energy, None,
                                 structured.weight_energy, source=source))
    else:
        groups: dict[tuple, list] = {}
        for s in with_energy:
            groups.setdefault(composition(s), []).append(s)
        for members in groups.values():
            base = min(members, key=lambda s: s.energy)
            for s in members:
                if s is base:
                    continue
                reference = s.energy - base.energy
                builder.add("energy", dict(rows=[index[s.name], index[base.name]],
                                           coefficients=[1.0, -1.0], reference=reference,
                                           scale=structured.weight_energy),
                            ItemInfo("energy", f"{s.name} - {base.name}", (s.name, base.name),
                                     reference, None, structured.weight_energy, source=source))
    for s in structured.structures:
        if s.forces is None:
            continue
        for a, vector in enumerate(np.asarray(s.forces)):
            for c in range(3):
                builder.add("forces", dict(row=index[s.name], atom=a, component=c,
                                           reference=float(vector[c]),
                                           scale=structured.weight_forces),
                            ItemInfo("forces", f"{s.name} atom {a + 1} f{'xyz'[c]}", (s.name,),
                                     float(vector[c]), None, structured.weight_forces,
                                     source=source))


def used_structures(data) -> list:
    """The structures of a ``reaxopt.inputs.DataSet`` that some item refers to, in data order."""
    names = set()
    if data.trainset is not None:
        names.update(data.trainset.structure_names())
    out = [s for s in data.geometries if s.name in names]
    for st in data.structured:
        out += [s for s in st.structures if s.energy is not None or s.forces is not None]
    return out


def compile_items(data, index: dict[str, int], energy_mode: str = "relative"
                  ) -> tuple[CompiledItems, list[ItemInfo]]:
    """Every item of a ``DataSet`` as index arrays; ``index`` maps structure name -> model row.

    Returns the arrays and the items' ``ItemInfo`` in the order of ``residual_vector``.
    """
    builder = _Builder()
    if data.trainset is not None:
        _trainset_items(builder, data.trainset, index)
    for st in data.structured:
        _structured_items(builder, st, index, energy_mode)
    return builder.compiled()


# --------------------------------------------------------------------------------- on device


def rms_forces(predictions) -> Any:
    """(S,) root mean square force component over each structure's real atoms, kcal/mol/Å."""
    mask = predictions.atom_mask[..., None]
    square = jnp.sum(jnp.where(mask, predictions.forces ** 2, 0.0), axis=(1, 2))
    count = 3.0 * jnp.maximum(jnp.sum(predictions.atom_mask, axis=1), 1)
    return jnp.sqrt(square / count + 1e-300)


def cell_parameters(cell):
    """(…, 6): a, b, c (Å), alpha, beta, gamma (radians) of row-vector cells (…, 3, 3)."""
    a, b, c = cell[..., 0, :], cell[..., 1, :], cell[..., 2, :]
    lengths = [jnp.linalg.norm(v, axis=-1) for v in (a, b, c)]
    angles = [angle_between(b, c), angle_between(a, c), angle_between(a, b)]
    return jnp.stack(lengths + angles, axis=-1)


def _geometry_values(items: dict, predictions):
    x = predictions.positions[items["row"]]  # (G, N, 3)
    cell = predictions.cell[items["row"]]
    pick = jax.vmap(lambda xs, k: xs[k])
    bond, angle, torsion = bond_angle_torsion(*(pick(x, items["atoms"][:, k]) for k in range(4)),
                                              cell)
    rmsg = rms_forces(predictions)[items["row"]]
    code = items["code"]
    return jnp.select([code == 0, code == 1, code == 2], [bond, angle, torsion], rmsg)


def residuals(items: CompiledItems, predictions) -> dict:
    """computed - reference for every item, per kind (angles in radians; torsions wrapped)."""
    out = {}
    e = items.energy
    out["energy"] = jnp.sum(predictions.energy[e["rows"]] * e["coefficients"], axis=1) \
        - e["reference"]
    f = items.forces
    component = jnp.minimum(f["component"], 2)
    values = predictions.forces[f["row"], f["atom"], component]
    values = jnp.where(f["component"] == FORCE_COMPONENT_RMS, rms_forces(predictions)[f["row"]],
                       values)
    out["forces"] = values - f["reference"]
    q = items.charge
    out["charge"] = predictions.charges[q["row"], q["atom"]] - q["reference"]
    g = items.geometry
    r = _geometry_values(g, predictions) - g["reference"]
    out["geometry"] = jnp.where(g["code"] == GEOMETRY_CODES["torsion"], wrapped_angle(r), r)
    c = items.cell
    values = cell_parameters(predictions.cell[c["row"]])
    out["cell"] = jnp.take_along_axis(values, c["parameter"][:, None], axis=1)[:, 0] \
        - c["reference"]
    h = items.heatfo
    out["heatfo"] = predictions.energy[h["row"]] - h["reference"]
    return out


def contributions(items: CompiledItems, predictions) -> dict:
    """scale * residual**2 for every item, per kind."""
    r = residuals(items, predictions)
    return {k: getattr(items, k)["scale"] * r[k] ** 2 for k in KINDS}


def loss(items: CompiledItems, predictions):
    """The total loss: the sum of every item's scale * residual**2."""
    parts = contributions(items, predictions)
    return sum(jnp.sum(parts[k]) for k in KINDS)


def residual_vector(items: CompiledItems, predictions):
    """Every residual in one vector, in the order of ``compile_items``' ItemInfo list."""
    r = residuals(items, predictions)
    return jnp.concatenate([r[k] for k in KINDS])


def finite_structures(predictions):
    """(S,) bool: the structure's energy, forces and charges are all finite."""
    mask = predictions.atom_mask
    forces_ok = jnp.all(jnp.where(mask[..., None], jnp.isfinite(predictions.forces), True),
                        axis=(1, 2))
    charges_ok = jnp.all(jnp.where(mask, jnp.isfinite(predictions.charges), True), axis=1)
    return jnp.isfinite(predictions.energy) & forces_ok & charges_ok


def regularization(theta, theta0, lower, upper, weight: float):
    """weight * sum(((theta - theta0) / (upper - lower))**2); zero-width ranges count as 1."""
    span = jnp.where(upper > lower, upper - lower, 1.0)
    return weight * jnp.sum(((theta - theta0) / span) ** 2)


# --------------------------------------------------------------------------------- host side


def report_values(info: list[ItemInfo], residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(computed, error) per item in report units (angles in degrees), from residuals."""
    residual = np.asarray(residual, float)
    factor = np.array([180.0 / math.pi if i.angle else 1.0 for i in info])
    reference = np.array([i.reference for i in info])
    error = residual * factor
    return reference + error, error


def rmse_by_kind(info: list[ItemInfo], residual: np.ndarray) -> dict:
    """RMSE of the residuals per item kind (angles in degrees); kinds without items are left out.

    Unit mix: geometry pools bonds (Å), angles (degrees) and RMSG (kcal/mol/Å); cell pools
    lengths (Å) and angles (degrees); use report.csv for item-level detail.
    """
    _, error = report_values(info, residual)
    out = {}
    for kind in KINDS:
        pick = np.array([i.kind == kind for i in info], bool)
        if pick.any():
            out[kind] = float(np.sqrt(np.mean(error[pick] ** 2)))
    return out
