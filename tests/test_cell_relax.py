"""CELL OPT: the virial against LAMMPS and finite differences, and cell relaxation against
LAMMPS's ``fix box/relax``.

* The virial (the strain derivative of the energy at fixed charges, LAMMPS's pressure tensor
  times the volume) of a triclinic C/H/O/S cell with charges and of a cobalt cell, against
  LAMMPS computed live; for cobalt (one element: charges exactly zero) also against central
  differences of the energy under strain.
* Strained cobalt crystals from the published set (hcp, 2 atoms; fcc, 4 atoms: compressed,
  sheared and displaced) relaxed with their cells by ``relax(..., cell_rows)`` reach LAMMPS's
  minimum at zero pressure: the same energy and the same cell lengths and angles, batched
  (``fire_batch``) and packed (``fire_packed``: strained images of the packed system).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from lammps_oracle import lammps_evaluate, lammps_relax_cell
from reaxopt.energy.total import energy_forces_virial
from reaxopt.evaluate import build_system
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import read_ffield
from reaxopt.io.geometry import read_geometries
from reaxopt.minimize import relax
from reaxopt.model import ModelOptions, build_model
from reaxopt.structure import Structure

virial_of = jax.jit(energy_forces_virial, static_argnames="topology")


def _virial(path, structure):
    params, topology = build_forcefield(read_ffield(path))
    positions, system = build_system(structure, params, topology)
    energy, _, virial, _ = virial_of(jnp.asarray(positions),
                                     jax.tree_util.tree_map(jnp.asarray, system), params,
                                     topology=topology)
    return float(energy), np.asarray(virial)


def _shortest_lattice_vectors(cell, count: int = 12) -> np.ndarray:
    """The ``count`` shortest nonzero lattice vector lengths (Å), sorted: basis-independent."""
    grid = np.stack(np.meshgrid(*[np.arange(-3, 4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lengths = np.linalg.norm(grid @ np.asarray(cell, float), axis=1)
    return np.sort(lengths[lengths > 1e-9])[:count]


def _strained(structure: Structure, strain) -> Structure:
    deformation = np.eye(3) + np.asarray(strain, float)
    return Structure(name=structure.name, symbols=structure.symbols,
                     positions=structure.positions @ deformation,
                     cell=structure.cell @ deformation, run_type="cell_opt")


@pytest.fixture(scope="module")
def cobalt(shared_datasets):
    path = shared_datasets / "cobalt" / "ffield_lit"
    crystals = {s.name: s for s in read_geometries(shared_datasets / "cobalt" / "geo")
                if s.name in ("hcp_opt", "fcc_opt")}
    return path, crystals


def test_virial_matches_lammps_with_charges(shared_datasets):
    path = shared_datasets / "disulfide" / "ffield_lit"
    cell = np.array([[6.1, 0.3, 0.2], [0.8, 5.7, -0.4], [0.5, 0.6, 6.4]])
    x = np.random.default_rng(0).random((8, 3)) @ cell
    structure = Structure(name="cell", symbols=["C", "H", "S", "S", "O", "H", "C", "H"],
                          positions=x, cell=cell)
    energy, virial = _virial(path, structure)
    ref = lammps_evaluate(path, structure.symbols, x, cell)
    assert energy == pytest.approx(ref["energy"], rel=1e-10)
    assert np.max(np.abs(ref["charges"])) > 0.05  # charges take part
    scale = np.max(np.abs(ref["virial"]))
    assert scale > 10.0
    np.testing.assert_allclose(virial, ref["virial"], rtol=0, atol=1e-9 * scale)


def test_cobalt_virial_matches_lammps_and_finite_differences(cobalt):
    path, crystals = cobalt
    structure = _strained(crystals["hcp_opt"], [[0.02, 0.01, 0.0], [0.01, -0.03, 0.0],
                                                [0.0, 0.0, 0.04]])
    energy, virial = _virial(path, structure)
    ref = lammps_evaluate(path, structure.symbols, structure.positions, structure.cell)
    scale = np.max(np.abs(ref["virial"]))
    assert scale > 1.0
    np.testing.assert_allclose(virial, ref["virial"], rtol=0, atol=1e-9 * scale)
    # strained copies with the same lists (the taper makes pairs crossing the cutoff irrelevant)
    params, topology = build_forcefield(read_ffield(path))
    positions, system = build_system(structure, params, topology)
    system = jax.tree_util.tree_map(jnp.asarray, system)

    def energy_at(strain):
        deformation = jnp.eye(3) + strain
        moved = dataclasses.replace(system, cell=system.cell @ deformation)
        return float(virial_of(jnp.asarray(positions) @ deformation, moved, params,
                               topology=topology)[0])

    h = 1e-5
    for a, b in ((0, 0), (2, 2), (0, 1), (1, 2)):
        e = np.zeros((3, 3))
        e[a, b] = e[b, a] = h / (2.0 if a != b else 1.0)
        plus, minus = energy_at(e), energy_at(-e)
        # a symmetric strain h/2 in (a, b) and (b, a) changes E by h W_ab (W symmetric)
        numeric = -(plus - minus) / (2 * h)
        assert virial[a, b] == pytest.approx(numeric, rel=1e-6, abs=1e-6 * scale)


@pytest.mark.parametrize("packed", [False, True], ids=["batched", "packed"])
def test_cell_relaxation_reaches_lammps_minimum(cobalt, packed):
    path, crystals = cobalt
    rng = np.random.default_rng(1)
    start = []
    for name, strain in (("hcp_opt", [[-0.03, 0.02, 0.0], [0.02, 0.01, 0.0], [0.0, 0.0, 0.03]]),
                         ("fcc_opt", [[0.04, 0.0, 0.01], [0.0, 0.02, 0.0], [0.01, 0.0, 0.03]])):
        s = _strained(crystals[name], strain)
        start.append(dataclasses.replace(
            s, positions=s.positions + rng.normal(0.0, 0.05, s.positions.shape)))
    params, topology = build_forcefield(read_ffield(path))
    model = build_model(start, params, topology, ModelOptions(clusters=1, packed=packed))
    rows = list(range(len(start)))
    relaxed, steps, rms = relax(model, params, rows, [3000] * len(rows), 1e-4, cell_rows=rows)
    predictions = relaxed.predict(params)
    assert np.all(rms < 1e-4) and np.all(steps < 3000)
    for k, s in enumerate(start):
        ref = lammps_relax_cell(path, s.symbols, s.positions, s.cell)
        initial = lammps_evaluate(path, s.symbols, s.positions, s.cell)["energy"]
        assert initial - ref["energy"] > 0.5  # a real relaxation
        assert float(predictions.energy[k]) == pytest.approx(ref["energy"], abs=1e-6)
        # LAMMPS may describe the lattice by another basis (its tilt limits): compare the
        # volume and the shortest lattice vectors, which do not depend on the basis
        ours, theirs = np.asarray(predictions.cell[k]), ref["cell"]
        assert abs(np.linalg.det(ours)) == pytest.approx(abs(np.linalg.det(theirs)), rel=1e-5)
        np.testing.assert_allclose(_shortest_lattice_vectors(ours),
                                   _shortest_lattice_vectors(theirs), rtol=1e-5)
        assert abs(np.linalg.det(ours)) != pytest.approx(abs(np.linalg.det(s.cell)), rel=1e-3)
        # the lists were rebuilt for the new cell: energies at the relaxed geometry agree
        n = s.n_atoms
        at_end = lammps_evaluate(path, s.symbols, np.asarray(predictions.positions[k])[:n],
                                 np.asarray(predictions.cell[k]))
        assert float(predictions.energy[k]) == pytest.approx(at_end["energy"], abs=1e-8)
