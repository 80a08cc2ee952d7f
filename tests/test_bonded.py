"""Bonded ReaxFF terms against LAMMPS (computed live), term by term, and forces against
finite differences of our own energy.

Cases per force field: perturbed small molecules (ase's g2 set mapped onto the force field's
elements), a stretched bond, periodic cells (orthorhombic, triclinic, smaller than the 10 Å
cutoff, an atom bonded to its own images). All cases of a force field are padded to one shape,
so each force field compiles once.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (float64)
from reaxopt.cluster.lists import bond_cutoffs, build_bonded_lists
from reaxopt.energy.bonded import bonded_terms
from reaxopt.forcefield import build_forcefield, expand
from reaxopt.io.ffield import read_ffield

from lammps_oracle import lammps_evaluate

BONDED = ("bond", "over_under", "lone_pair", "valence", "penalty", "coalition", "hydrogen_bond",
          "torsion", "conjugation")
ABS_TOL, REL_TOL = 1e-6, 1e-8
N_ATOMS = 32  # every case is padded to this many atoms

_bonded_jit = jax.jit(bonded_terms, static_argnums=(4,))


def _total_bonded(positions, cell, lists, ff, topology, types, atom_mask):
    return sum(bonded_terms(positions, cell, lists, ff, topology, types, atom_mask).values())


_gradient_jit = jax.jit(jax.grad(_total_bonded), static_argnums=(4,))


def _potential(name: str) -> Path:
    import lammps

    return Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / name


def _molecule(name, rng, amplitude=0.15, mapping=None):
    from ase.build import molecule

    m = molecule(name)
    symbols = [(mapping or {}).get(s, s) for s in m.get_chemical_symbols()]
    return symbols, m.positions + rng.uniform(-amplitude, amplitude, m.positions.shape)


def _stretched(name, rng, factor=1.6, mapping=None):
    """A molecule with its first bond (atoms 0-1) stretched by ``factor``, slightly perturbed."""
    symbols, x = _molecule(name, rng, 0.05, mapping)
    x = x.copy()
    x[1] = x[0] + factor * (x[1] - x[0])
    return symbols, x


def _organic_cases(rng, elements, mapping=None):
    """Perturbed molecules, a stretched bond, an orthorhombic and a triclinic periodic cell."""
    pick = [n for n in ("CH3CH2OH", "CH3COOH", "CH3NO2", "C2H2", "CH3SCH3", "N2H4")
            if set(_molecule(n, rng, 0.0, mapping)[0]) <= set(elements)]
    cases = [(f"{n}", *_molecule(n, rng, mapping=mapping), None) for n in pick[:3]]
    cases.append(("stretched", *_stretched(pick[0], rng, mapping=mapping), None))
    cases.append(("linear C2H2", *_molecule("C2H2", rng, 0.0, mapping), None)
                 if "C2H2" in pick else ("H2O exact", *_molecule("H2O", rng, 0.0, mapping), None))
    s, x = _molecule("H2O", rng, 0.1, mapping)
    cases.append(("water in a 3.1 Å cell", s, x, np.diag([3.1, 3.3, 2.9])))
    s, x = _molecule(pick[0], rng, 0.1, mapping)
    x = x - x.min(axis=0)
    cases.append(("triclinic 6 Å cell", s, x, np.array([[6.0, 0, 0], [1.0, 5.5, 0],
                                                        [0.5, 0.7, 6.2]])))
    if {"H", "O"} <= set(elements):
        cases.append(("8 waters in a 6.2 Å cell", *_water_box(rng, mapping)))
    if "S" in elements:
        cases += [(n, *_molecule(n, rng, mapping=mapping), None) for n in ("CH3SCH3", "SO2")]
    if "C" in elements and mapping is None:
        # dicarbon: LAMMPS's C2 lone-pair correction (BO - Delta - 0.04 Delta^4 > 3)
        cases.append(("C2", ["C", "C"], np.array([[0.0, 0, 0], [1.24, 0.02, 0]]), None))
    if {"C", "O"} <= set(elements) and mapping is None:
        # carbon monoxide: the triple-bond stabilisation (C/O masses, BO >= 1)
        cases.append(("CO", *_molecule("CO", rng, 0.02), None))
    return cases


def _water_box(rng, mapping=None, spacing=3.1):
    """Eight randomly oriented waters on a 2x2x2 grid in a cubic cell (hydrogen bonds, images)."""
    from scipy.spatial.transform import Rotation

    symbols, x = _molecule("H2O", rng, 0.0, mapping)
    x = x - x[0]
    blocks, names = [], []
    for corner in np.ndindex(2, 2, 2):
        rotation = Rotation.random(random_state=rng.integers(2**31)).as_matrix()
        blocks.append(x @ rotation.T + spacing * np.array(corner) + rng.uniform(-0.2, 0.2, 3))
        names += symbols
    return names, np.vstack(blocks), np.eye(3) * 2 * spacing


def _cobalt_cases(rng):
    from ase.build import bulk

    tri = np.array([[0.0, 0.0, 0.0], [2.4, 0.1, 0.0], [1.1, 2.2, 0.1]])
    tet = np.vstack([tri, [1.2, 0.8, 2.0]])
    fcc = bulk("Co", "fcc", a=3.50)  # one atom, triclinic primitive cell: bonds to its own images
    hcp = bulk("Co", "hcp", a=2.51, c=4.07) * (1, 1, 2)
    return [
        ("Co3", ["Co"] * 3, tri + rng.uniform(-0.1, 0.1, tri.shape), None),
        ("Co4", ["Co"] * 4, tet + rng.uniform(-0.1, 0.1, tet.shape), None),
        ("Co2 stretched", ["Co"] * 2, np.array([[0.0, 0, 0], [3.6, 0.1, 0]]), None),
        ("fcc primitive (triclinic, 1 atom)", ["Co"], fcc.positions, np.array(fcc.cell)),
        ("hcp 1x1x2 perturbed", ["Co"] * 4,
         hcp.positions + rng.uniform(-0.1, 0.1, hcp.positions.shape), np.array(hcp.cell)),
    ]


FORCE_FIELDS = {
    "cho": (lambda d: _potential("ffield.reax.cho"), "CHO", None),
    "mattsson": (lambda d: _potential("ffield.reax.mattsson"), "CHONS", None),
    "rdx": (lambda d: _potential("ffield.reax.rdx"), "CHON", None),
    "budzien": (lambda d: _potential("ffield.reax.budzien"), "CHON", None),
    "AB": (lambda d: _potential("ffield.reax.AB"), "HONB", {"C": "B"}),
    "lg": (lambda d: _potential("ffield.reax.lg"), "CHONS", None),
    "disulfide": (lambda d: d / "disulfide" / "ffield_lit", "CHOS", None),
    "cobalt": (lambda d: d / "cobalt" / "ffield_lit", "Co", None),
}


def _elements(spec):
    return ["Co"] if spec == "Co" else list(spec)


def _round_up(n: int) -> int:
    return 1 << max(4, int(np.ceil(np.log2(max(n, 1)))))


class Prepared:
    """One force field's cases: parameters, tables, padded inputs, LAMMPS's terms."""

    def __init__(self, path: Path, cases):
        self.path = path
        self.ffield = read_ffield(path)
        self.params, self.topology = build_forcefield(self.ffield)
        self.ff = expand(self.params, self.topology)
        cutoffs = bond_cutoffs(self.ff, margin=0.3)
        raw = []
        for name, symbols, x, cell in cases:
            types = np.array([self.ffield.type_index(s) - 1 for s in symbols])
            raw.append((name, symbols, x, cell, types,
                        build_bonded_lists(x, cell, types, self.topology, cutoffs)))
        sizes = {k: _round_up(max(r[5].counts()[k] for r in raw)) for k in raw[0][5].counts()}
        self.cases = []
        for name, symbols, x, cell, types, lists in raw:
            padded = build_bonded_lists(x, cell, types, self.topology, cutoffs, sizes)
            n = len(symbols)
            positions = np.vstack([x, 1000.0 + 10.0 * np.arange(N_ATOMS - n)[:, None]
                                   * np.ones((1, 3))])
            self.cases.append(dict(
                name=name, symbols=symbols, x=x, cell=cell, lists=padded,
                positions=jnp.asarray(positions),
                cell_matrix=jnp.asarray(np.zeros((3, 3)) if cell is None else cell),
                types=jnp.asarray(np.concatenate([types, np.zeros(N_ATOMS - n, int)])),
                atom_mask=jnp.asarray(np.arange(N_ATOMS) < n)))

    def args(self, case, positions=None):
        return (case["positions"] if positions is None else positions, case["cell_matrix"],
                case["lists"], self.ff, self.topology, case["types"], case["atom_mask"])

    def ours(self, case, positions=None):
        return {k: float(v) for k, v in _bonded_jit(*self.args(case, positions)).items()}

    def lammps(self, case):
        if "lammps" not in case:  # one LAMMPS run per case per session
            case["lammps"] = lammps_evaluate(self.path, case["symbols"], case["x"],
                                             case["cell"])["terms"]
        return case["lammps"]


_prepared: dict = {}


def prepared(name: str, shared_datasets: Path) -> Prepared:
    if name not in _prepared:
        path_of, elements, mapping = FORCE_FIELDS[name]
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        cases = (_cobalt_cases(rng) if name == "cobalt"
                 else _organic_cases(rng, _elements(elements), mapping))
        _prepared[name] = Prepared(path_of(shared_datasets), cases)
    return _prepared[name]


def _deviations(prep: Prepared):
    rows = []
    for case in prep.cases:
        ours, ref = prep.ours(case), prep.lammps(case)
        rows.append((case["name"], {k: (ours[k], ref[k]) for k in BONDED}))
    return rows


@pytest.mark.parametrize("name", list(FORCE_FIELDS))
def test_bonded_terms_match_lammps(name, shared_datasets):
    prep = prepared(name, shared_datasets)
    failures = []
    nonzero = set()
    for case_name, terms in _deviations(prep):
        for term, (ours, ref) in terms.items():
            if abs(ref) > 1e-12:
                nonzero.add(term)
            if abs(ours - ref) > max(ABS_TOL, REL_TOL * abs(ref)):
                failures.append(f"{case_name}: {term} ours {ours:.10f} LAMMPS {ref:.10f}")
    assert not failures, "\n".join(failures)
    assert {"bond", "over_under"} <= nonzero  # the comparison is not vacuous


def test_the_cases_exercise_every_term(shared_datasets):
    """Over the organic force fields, every bonded term is nonzero in some LAMMPS case."""
    seen = set()
    for name in ("cho", "mattsson"):
        prep = prepared(name, shared_datasets)
        for case in prep.cases:
            seen |= {k for k, v in prep.lammps(case).items() if k in BONDED and abs(v) > 1e-8}
    assert seen == set(BONDED)


@pytest.mark.parametrize("name,index", [("cho", 0), ("cho", 4), ("cho", 7), ("disulfide", 6),
                                        ("cobalt", 3), ("cobalt", 4)])
def test_bonded_forces_match_finite_differences(name, index, shared_datasets):
    prep = prepared(name, shared_datasets)
    case = prep.cases[index]
    gradient = np.asarray(_gradient_jit(*prep.args(case)))
    n = len(case["symbols"])
    assert np.all(np.isfinite(gradient)) and np.all(gradient[n:] == 0.0)
    h = 1e-5
    rng = np.random.default_rng(index)
    for atom in rng.choice(n, size=min(n, 4), replace=False):
        for axis in range(3):
            shifted = []
            for sign in (1.0, -1.0):
                x = case["positions"].at[atom, axis].add(sign * h)
                shifted.append(sum(prep.ours(case, x).values()))
            fd = (shifted[0] - shifted[1]) / (2 * h)
            assert abs(gradient[atom, axis] - fd) <= 1e-5 * max(1.0, abs(fd)), (
                case["name"], atom, axis, gradient[atom, axis], fd)


def test_padding_does_not_change_the_energy(shared_datasets):
    prep = prepared("cho", shared_datasets)
    case = prep.cases[0]
    more = build_bonded_lists(case["x"], case["cell"], np.asarray(case["types"])[:len(case["x"])],
                              prep.topology, bond_cutoffs(prep.ff, 0.3),
                              {k: 2 * v for k, v in case["lists"].sizes().items()})
    a = prep.ours(case)
    b = {k: float(v) for k, v in _bonded_jit(case["positions"], case["cell_matrix"], more,
                                             prep.ff, prep.topology, case["types"],
                                             case["atom_mask"]).items()}
    assert all(abs(a[k] - b[k]) <= 1e-10 * max(1.0, abs(a[k])) for k in BONDED)


def test_energy_gradients_reach_the_file_values(shared_datasets):
    """jax.grad of the bonded energy with respect to Params (through expand) vs central
    differences, for entries of every section that the chosen structure uses."""
    import dataclasses

    from reaxopt.forcefield import ANGLE, ATOM, BOND, HBOND, TORSION

    prep = prepared("cho", shared_datasets)
    case = prep.cases[1]  # CH3COOH: every bonded term but none zero
    ffile = prep.ffield

    def energy(params):
        ff = expand(params, prep.topology)
        return sum(bonded_terms(case["positions"], case["cell_matrix"], case["lists"], ff,
                                prep.topology, case["types"], case["atom_mask"]).values())

    value_and_grad = jax.jit(jax.value_and_grad(energy))  # one compile for both
    grad = value_and_grad(prep.params)[1]
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(grad))

    def row(section, types):
        return next(n for n, e in enumerate(getattr(ffile, section)) if tuple(e.types) == types)

    c, h, o = (ffile.type_index(s) for s in "CHO")
    picks = [("general", (0,)), ("general", (1,)), ("general", (14,)), ("general", (23,)),
             ("atoms", (c - 1, ATOM["valency"])), ("atoms", (o - 1, ATOM["p_lp2"])),
             ("atoms", (c - 1, ATOM["r_s"])), ("atoms", (h - 1, ATOM["b_o_131"])),
             ("bonds", (row("bonds", (c, o)), BOND["p_bo1"])),
             ("bonds", (row("bonds", (c, h)), BOND["De_s"])),
             ("angles", (row("angles", (c, c, o)), ANGLE["theta_00"])),
             ("angles", (row("angles", (h, c, h)), ANGLE["p_val1"])),
             ("torsions", (0, TORSION["V2"])),
             ("hbonds", (0, HBOND["p_hb1"]))]
    h_step = 1e-6
    nonzero = 0
    for section, index in picks:
        table = getattr(prep.params, section)
        shifted = []
        for sign in (1.0, -1.0):
            p = dataclasses.replace(prep.params, **{
                section: table.at[index].add(sign * h_step * max(1.0, abs(float(table[index]))))})
            shifted.append(float(value_and_grad(p)[0]))
        fd = (shifted[0] - shifted[1]) / (2 * h_step * max(1.0, abs(float(table[index]))))
        ad = float(getattr(grad, section)[index])
        assert abs(ad - fd) <= 1e-5 * max(1.0, abs(fd)), (section, index, ad, fd)
        nonzero += abs(ad) > 1e-6
    assert nonzero >= len(picks) - 1  # the picks matter for this structure


def _water_dimer(rng):
    from ase.build import molecule

    w = molecule("H2O")
    x = w.positions - w.positions[0]
    second = x @ np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]) + np.array([2.9, 0.3, 0.2])
    return list(w.get_chemical_symbols()) * 2, np.vstack([x, second])


def _scan_cases():
    """Bonds pulled through LAMMPS's thresholds (bond-order cutoff, thb_cut 0.001, the 0.01
    hydrogen-bond threshold): an O-H of a water dimer and the C-O of ethanol."""
    rng = np.random.default_rng(7)
    cases = []
    symbols, x = _water_dimer(rng)
    h = 1  # an H of the first water, pulled away from its O towards the other water
    direction = (x[h] - x[0]) / np.linalg.norm(x[h] - x[0])
    for d in np.concatenate([np.linspace(1.0, 1.8, 3), np.linspace(1.9, 2.5, 13)]):
        y = x.copy()
        y[h] = x[0] + d * direction
        cases.append((f"water dimer O-H {d:.2f} Å", symbols, y, None))
    symbols, x = _molecule("CH3CH2OH", rng, 0.05)
    o = symbols.index("O")
    c = int(np.argmin([np.linalg.norm(x[o] - x[k]) if s == "C" else 1e9
                       for k, s in enumerate(symbols)]))
    direction = (x[o] - x[c]) / np.linalg.norm(x[o] - x[c])
    for d in np.concatenate([np.linspace(1.4, 2.0, 3), np.linspace(2.1, 2.9, 17)]):
        y = x.copy()
        shift = x[c] + d * direction - x[o]
        for k in range(len(symbols)):  # move O with its H
            if k == o or (symbols[k] == "H" and np.linalg.norm(x[k] - x[o]) < 1.2):
                y[k] = x[k] + shift
        cases.append((f"ethanol C-O {d:.2f} Å", symbols, y, None))
    return cases


@pytest.mark.parametrize("name", ["cho", "mattsson"])
def test_bond_scans_through_the_thresholds_match_lammps(name, shared_datasets):
    prep = Prepared(FORCE_FIELDS[name][0](shared_datasets), _scan_cases())
    failures = []
    for case_name, terms in _deviations(prep):
        for term, (ours, ref) in terms.items():
            if abs(ours - ref) > max(ABS_TOL, REL_TOL * abs(ref)):
                failures.append(f"{case_name}: {term} ours {ours:.10f} LAMMPS {ref:.10f}")
    assert not failures, "\n".join(failures)


def test_vmap_over_structures_of_one_padded_shape(shared_datasets):
    prep = prepared("cho", shared_datasets)
    chosen = [prep.cases[1], prep.cases[6]]  # a molecule and a triclinic cell
    stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])  # noqa: E731
    batched = jax.tree_util.tree_map(stack, *[prep.args(c)[:3] for c in chosen])
    types = stack(*[c["types"] for c in chosen])
    masks = stack(*[c["atom_mask"] for c in chosen])
    f = jax.vmap(lambda x, cell, lists, t, m: bonded_terms(x, cell, lists, prep.ff, prep.topology,
                                                          t, m))
    out = jax.jit(f)(*batched, types, masks)
    for n, case in enumerate(chosen):
        single = prep.ours(case)
        assert all(abs(float(out[k][n]) - single[k]) <= 1e-9 * max(1.0, abs(single[k]))
                   for k in BONDED)


def test_the_cases_exercise_lammps_special_cases(shared_datasets):
    """The C2 lone-pair correction and the triple-bond stabilisation contribute in the cho cases
    (so the agreement with LAMMPS above covers them)."""
    import dataclasses

    prep = prepared("cho", shared_datasets)
    plain = dataclasses.replace(prep.topology, is_carbon=np.zeros_like(prep.topology.is_carbon),
                                triple_pair=np.zeros_like(prep.topology.triple_pair))
    by_name = {case["name"]: case for case in prep.cases}
    changed = {}
    for name, term in (("C2", "lone_pair"), ("CO", "bond")):
        case = by_name[name]
        without = float(_bonded_jit(case["positions"], case["cell_matrix"], case["lists"],
                                    prep.ff, plain, case["types"], case["atom_mask"])[term])
        changed[name] = abs(prep.ours(case)[term] - without)
    assert changed["C2"] > 1.0 and changed["CO"] > 1.0, changed
