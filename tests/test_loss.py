"""The loss items against hand computations on tiny hand-made predictions (no energy compile)."""

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (float64)
from reaxopt.forcefield import build_forcefield
from reaxopt.inputs import DataSet, StructuredSet
from reaxopt.io.ffield import read_ffield
from reaxopt.io.params import get_value, parse_params
from reaxopt.io.trainset import parse_trainset
from reaxopt.loss import (compile_items, contributions, finite_structures, loss, regularization,
                          residual_vector, residuals, rmse_by_kind)
from reaxopt.model import Predictions, theta_map
from reaxopt.structure import Structure

ROOT = Path(__file__).resolve().parents[1]
FFIELD = ROOT / "datasets" / "cho" / "ffield_cho"

# four atoms: a chain 0-1-2-3 with bond 1.5, angle 0-1-2 90 degrees and torsion 0-1-2-3 -60
# degrees (IUPAC: looking from atom 1 to atom 2 along +y, the bond to atom 0 (+x) turns
# counterclockwise by 60 degrees onto the bond to atom 3 (x 0.75, z 1.3))
CHAIN = np.array([[1.5, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.5, 0.0],
                  [1.5 * math.cos(math.radians(60)), 1.5, 1.5 * math.sin(math.radians(60))]])


def _structure(name, symbols, positions=None, energy=None, forces=None, cell=None):
    n = len(symbols)
    positions = np.zeros((n, 3)) if positions is None else np.asarray(positions, float)
    return Structure(name=name, symbols=list(symbols), positions=positions, cell=cell,
                     energy=energy, forces=forces)


def _predictions(energy, forces, charges, positions, cell=None, mask=None):
    energy = jnp.asarray(energy, float)
    forces = jnp.asarray(forces, float)
    s, n = forces.shape[:2]
    return Predictions(
        energy=energy, forces=forces, charges=jnp.asarray(charges, float),
        positions=jnp.asarray(positions, float),
        cell=jnp.zeros((s, 3, 3)) if cell is None else jnp.asarray(cell, float),
        atom_mask=jnp.ones((s, n), bool) if mask is None else jnp.asarray(mask))


TRAINSET = """\
ENERGY
 2.0  a  -  b/2   5.0
 0.5  +b           -1.0
ENDENERGY
CHARGE
 a  0.1  2  0.3
ENDCHARGE
HEATFO
 b  4.0  10.0
ENDHEATFO
GEOMETRY
 a  0.01  1 2       1.4
 a  1.0   1 2 3     95.0
 a  2.0   1 2 3 4   -170.0
 a  4.0   1 2 3 4    170.0
 b  0.5             0.0
ENDGEOMETRY
FORCES
 a  2.0  4  1.0 2.0 3.0
 b  1.0  5.0
ENDFORCES
CELL PARAMETERS
 b  0.1  a      4.5
 b  1.0  gamma  80.0
ENDCELL PARAMETERS
"""


@pytest.fixture(scope="module")
def trainset_case():
    trainset = parse_trainset(TRAINSET)
    data = DataSet(geometries=[_structure("a", "CHHO", CHAIN), _structure("b", "CH")],
                   trainset=trainset)
    items, info = compile_items(data, {"a": 0, "b": 1})
    forces = np.zeros((2, 4, 3))
    forces[0, 3] = [1.5, 2.0, 2.0]
    forces[1, 0] = [3.0, 0.0, 4.0]  # structure b: two real atoms
    forces[1, 1] = [0.0, 0.0, 0.0]
    charges = np.zeros((2, 4))
    charges[0, 1] = 0.25
    positions = np.stack([CHAIN, np.zeros((4, 3))])
    cell = np.zeros((2, 3, 3))
    cell[1] = [[4.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 6.0]]
    mask = np.array([[True] * 4, [True, True, False, False]])
    predictions = _predictions([-3.0, 8.0], forces, charges, positions, cell, mask)
    return items, info, predictions


def test_trainset_residuals_match_hand_computation(trainset_case):
    items, info, p = trainset_case
    r = {k: np.asarray(v) for k, v in residuals(items, p).items()}
    # ENERGY: E(a) - E(b)/2 = -3 - 4 = -7 vs 5; +E(b) = 8 vs -1
    np.testing.assert_allclose(r["energy"], [-7.0 - 5.0, 8.0 + 1.0])
    np.testing.assert_allclose(r["charge"], [0.25 - 0.3])
    np.testing.assert_allclose(r["heatfo"], [8.0 - 10.0])
    # GEOMETRY: bond 1.5 vs 1.4; angle 90 vs 95 degrees; torsion -60 vs -170 -> 110 and
    # -60 vs 170 -> -230, wrapped to 130; RMSG of b: sqrt((9 + 16) / (3 * 2))
    expected = [0.1, math.radians(-5.0), math.radians(110.0), math.radians(130.0),
                math.sqrt(25.0 / 6.0)]
    np.testing.assert_allclose(r["geometry"], expected, atol=1e-12)
    # FORCES: atom 4 of a, three components, then the RMS force of b (5.0 reference)
    np.testing.assert_allclose(r["forces"], [0.5, 0.0, -1.0, math.sqrt(25.0 / 6.0) - 5.0])
    # CELL: a = 4 vs 4.5, gamma = 90 vs 80 degrees
    np.testing.assert_allclose(r["cell"], [-0.5, math.radians(10.0)], atol=1e-12)


def test_trainset_loss_is_sum_of_weighted_squares(trainset_case):
    items, info, p = trainset_case
    # ((computed - reference) / weight)^2, angles' weights in degrees like their errors
    terms = [(-12.0 / 2.0) ** 2, (9.0 / 0.5) ** 2, (-0.05 / 0.1) ** 2, (-2.0 / 4.0) ** 2,
             (0.1 / 0.01) ** 2, (-5.0 / 1.0) ** 2, (110.0 / 2.0) ** 2, (130.0 / 4.0) ** 2,
             (math.sqrt(25.0 / 6.0) / 0.5) ** 2,
             (0.5 / 2.0) ** 2, 0.0, (-1.0 / 2.0) ** 2, ((math.sqrt(25.0 / 6.0) - 5.0) / 1.0) ** 2,
             (-0.5 / 0.1) ** 2, (10.0 / 1.0) ** 2]
    assert float(loss(items, p)) == pytest.approx(sum(terms), rel=1e-12)
    parts = contributions(items, p)
    assert float(jnp.sum(parts["geometry"])) == pytest.approx(sum(terms[4:9]), rel=1e-12)
    assert len(info) == len(np.asarray(residual_vector(items, p))) == len(terms)


def test_rmse_reports_angles_in_degrees(trainset_case):
    items, info, p = trainset_case
    rmse = rmse_by_kind(info, np.asarray(residual_vector(items, p)))
    expected = math.sqrt((0.1 ** 2 + 5.0 ** 2 + 110.0 ** 2 + 130.0 ** 2 + 25.0 / 6.0) / 5.0)
    assert rmse["geometry"] == pytest.approx(expected, rel=1e-12)
    assert rmse["energy"] == pytest.approx(math.sqrt((144.0 + 81.0) / 2.0))
    assert set(rmse) == {"energy", "charge", "heatfo", "geometry", "forces", "cell"}


def _structured_case(energy_mode):
    ch4 = [_structure(f"m{k}", "CHHHH", energy=e) for k, e in enumerate([-10.0, -12.0, -7.0])]
    forces = np.array([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]])
    h2 = _structure("h2", "HH", energy=-5.0, forces=forces)
    st = StructuredSet(Path("x.extxyz"), ch4 + [h2], weight_energy=2.0, weight_forces=0.1)
    data = DataSet(structured=[st])
    index = {"m0": 0, "m1": 1, "m2": 2, "h2": 3}
    return compile_items(data, index, energy_mode)


def test_relative_energies_subtract_the_lowest_of_each_composition():
    items, info = _structured_case("relative")
    predicted = np.array([1.0, 2.0, 6.0, 100.0])
    forces = np.zeros((4, 5, 3))
    forces[3, 0] = [1.5, 2.0, 3.0]
    p = _predictions(predicted, forces, np.zeros((4, 5)), np.zeros((4, 5, 3)))
    r = residuals(items, p)
    # CH4 group: m1 (-12) is the reference; m0 and m2 compared with it; h2 alone: no energy item
    np.testing.assert_allclose(np.asarray(r["energy"]),
                               [(1.0 - 2.0) - (-10.0 + 12.0), (6.0 - 2.0) - (-7.0 + 12.0)])
    np.testing.assert_allclose(np.asarray(r["forces"]), [0.5, 0.0, 0.0, 1.0, 2.0, 3.0])
    expected = 2.0 * (3.0 ** 2 + 1.0 ** 2) + 0.1 * (0.25 + 1.0 + 4.0 + 9.0)
    assert float(loss(items, p)) == pytest.approx(expected, rel=1e-12)
    assert [i.what for i in info[:2]] == ["m0 - m1", "m2 - m1"]


def test_absolute_energies():
    items, _ = _structured_case("absolute")
    p = _predictions([1.0, 2.0, 6.0, 100.0], np.zeros((4, 5, 3)), np.zeros((4, 5)),
                     np.zeros((4, 5, 3)))
    np.testing.assert_allclose(np.asarray(residuals(items, p)["energy"]),
                               [11.0, 14.0, 13.0, 105.0])


def test_finite_structures_flags_nan_on_real_atoms_only():
    forces = np.zeros((3, 2, 3))
    forces[1, 0, 2] = np.nan
    forces[2, 1, 0] = np.nan  # a padding atom of structure 2
    mask = np.array([[True, True], [True, True], [True, False]])
    p = _predictions([1.0, 2.0, 3.0], forces, np.zeros((3, 2)), np.zeros((3, 2, 3)), mask=mask)
    assert np.asarray(finite_structures(p)).tolist() == [True, False, True]
    p2 = _predictions([np.inf, 2.0, 3.0], np.zeros((3, 2, 3)), np.zeros((3, 2)),
                      np.zeros((3, 2, 3)))
    assert np.asarray(finite_structures(p2)).tolist() == [False, True, True]


def test_regularization_scales_by_bound_range():
    value = regularization(jnp.array([2.0, 0.5]), jnp.array([1.0, 0.0]), jnp.array([0.0, -1.0]),
                           jnp.array([4.0, 1.0]), 3.0)
    assert float(value) == pytest.approx(3.0 * ((1.0 / 4.0) ** 2 + (0.5 / 2.0) ** 2))


PARAMS_TEXT = """\
1 2 1 0.01 9.0 10.0       ! general parameter 2
2 1 4 0.01 1.6 2.2        ! atom C r_vdw
3 2 13 0.01 -0.0625 -0.0375
4 1 2 0.01 1.0 2.0
5 3 2 0.01 16.0 34.0
"""


def test_theta_map_round_trip():
    ff = read_ffield(FFIELD)
    specs = parse_params(PARAMS_TEXT, ff)
    params, _ = build_forcefield(ff)
    tmap = theta_map(specs)
    theta0 = tmap.from_params(params)
    np.testing.assert_array_equal(theta0, [get_value(ff, s) for s in specs])
    theta = theta0 + np.arange(1, 6) * 0.01
    changed = tmap.to_params(jnp.asarray(theta), params)
    np.testing.assert_allclose(tmap.from_params(changed), theta, rtol=0, atol=0)
    # only the selected entries changed
    assert float(changed.general[1]) == pytest.approx(theta[0])
    assert float(changed.atoms[0, 3]) == pytest.approx(theta[1])
    assert float(changed.bonds[1, 12]) == pytest.approx(theta[2])
    diff = np.asarray(changed.atoms) != np.asarray(params.atoms)
    assert diff.sum() == 1
    np.testing.assert_array_equal(tmap.lower, [s.lower for s in specs])
    assert hash(tmap) == hash(theta_map(specs)) and tmap == theta_map(specs)


def test_geometry_items_reproduce_published_references(shared_datasets):
    """The disulfide validation set's GEOMETRY references were measured on its geo file's
    (quantum-chemistry) geometries: bonds, angles and signed torsions computed from those
    positions agree with them to the file's precision."""
    import dataclasses

    from reaxopt.io.geometry import read_geometries
    from reaxopt.io.trainset import read_trainset

    folder = shared_datasets / "disulfide" / "valSet"
    full = read_trainset(folder / "trainset.in")
    trainset = dataclasses.replace(full, energy=(), charge=(), heatfo=(), forces=(), cell=())
    names = set(trainset.structure_names())
    structures = [s for s in read_geometries(folder / "geo") if s.name in names]
    items, info = compile_items(DataSet(structures, trainset),
                                {s.name: k for k, s in enumerate(structures)})
    n = max(s.n_atoms for s in structures)
    positions = np.zeros((len(structures), n, 3))
    for k, s in enumerate(structures):
        positions[k, :s.n_atoms] = s.positions
    mask = np.arange(n)[None, :] < np.array([s.n_atoms for s in structures])[:, None]
    p = _predictions(np.zeros(len(structures)), np.zeros((len(structures), n, 3)),
                     np.zeros((len(structures), n)), positions, mask=mask)
    error = np.abs(np.asarray(residual_vector(items, p)))
    for kind, tolerance in (("bond", 1e-3), ("angle", math.radians(2e-3)),
                            ("torsion", math.radians(0.06))):
        picked = [k for k, i in enumerate(info) if f" {kind} " in i.what]
        assert len(picked) > 100
        assert error[picked].max() < tolerance, kind
    torsions = [i.reference for i in info if " torsion " in i.what]
    assert min(torsions) < -60 and max(torsions) > 60  # both signs are exercised


def test_angle_and_torsion_have_finite_gradients_where_undefined():
    """Collinear vectors (a linear molecule, or the unused branches of a bond item) give a zero,
    not NaN, gradient: a NaN there would poison the loss gradient of a whole fit."""
    import jax
    import jax.numpy as jnp

    from reaxopt.geometry import angle_between as _angle_between, dihedral as _dihedral

    u, v = jnp.array([1.0, 0.0, 0.0]), jnp.array([-2.0, 0.0, 0.0])
    assert float(_angle_between(u, v)) == pytest.approx(np.pi)
    assert np.all(np.asarray(jax.grad(lambda a: _angle_between(a, v))(u)) == 0.0)
    assert np.all(np.asarray(jax.grad(lambda b: _dihedral(b, u, u))(u)) == 0.0)
    # away from the kink the gradient is the usual one: d angle / d u_y at 90 degrees
    w = jnp.array([0.0, 1.0, 0.0])
    assert np.asarray(jax.grad(lambda a: _angle_between(a, w))(u)) == pytest.approx([0, -1, 0])
