#!/usr/bin/env python
"""Generate reaxopt's bundled C/H/O reference dataset with PySCF, as extended XYZ.

Level of theory (identical for every structure, also written into each structure's info):
  - method: restricted Kohn-Sham (RKS), closed-shell singlet, total charge 0, for every structure,
    including the stretched ends of the bond scans (no broken-symmetry/unrestricted solutions), so
    the far ends of the dissociation scans lie above the true (open-shell) curve;
  - functional: B3LYP as PySCF >= 2.3 defines it: libxc HYB_GGA_XC_B3LYP (id 402), i.e. with
    VWN-RPA local correlation, the same B3LYP as Gaussian's;
  - basis: 6-31G* with Cartesian d functions (6d, the Pople convention);
  - integration grid: PySCF ``grids.level = 3`` (Treutler-Ahlrichs radial, Lebedev angular, NWChem
    pruning, Becke partitioning); forces include the grid-weight response (``grid_response``);
  - SCF: ``conv_tol = 1e-10`` Hartree on the energy, ``conv_tol_grad = 1e-6``, MINAO initial guess,
    at most 100 DIIS cycles (then a second-order Newton solver if DIIS failed).

Units in the output: energies (total electronic energies) in kcal/mol, forces in kcal/mol/Angstrom,
positions in Angstrom. Hartree -> kcal/mol uses ASE's CODATA constants,
``ase.units.Hartree / (ase.units.kcal / ase.units.mol)`` (627.50947389...), and Hartree/Bohr ->
kcal/mol/Angstrom additionally divides by ``ase.units.Bohr``.

Geometries are built here, deterministically: equilibrium-like molecules from ``ase.build.molecule``
(the G2 set's MP2/6-31G* geometries, used as given), bond-stretch and angle-bend scans of them,
linearly interpolated reaction-like paths, and randomly rattled copies (fixed seeds).

Usage:
  OMP_NUM_THREADS=1 python datasets/make_cho.py --out datasets/cho/cho.extxyz [--only NAME] [--workers 1]
      [--atoms-out datasets/cho/atom_energies.json] [--list]

The output is rewritten atomically after every finished structure and the script skips names the
output already holds, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.neighborlist import natural_cutoffs, neighbor_list

HARTREE_TO_KCAL_MOL = units.Hartree / (units.kcal / units.mol)
HARTREE_PER_BOHR_TO_KCAL_MOL_ANGSTROM = HARTREE_TO_KCAL_MOL / units.Bohr

XC = "B3LYP"
BASIS = "6-31G*"
CARTESIAN = True
GRID_LEVEL = 3
CONV_TOL = 1e-10
CONV_TOL_GRAD = 1e-6
MAX_CYCLE = 100
GRID_RESPONSE = True
LEVEL_OF_THEORY = "B3LYP/6-31G*"

# Equilibrium-like molecules: dataset name -> ase.build.molecule name (G2 geometries).
MOLECULES = {
    "h2": "H2",
    "methane": "CH4",
    "ethane": "C2H6",
    "ethylene": "C2H4",
    "acetylene": "C2H2",
    "water": "H2O",
    "methanol": "CH3OH",
    "formaldehyde": "H2CO",
    "co": "CO",
    "co2": "CO2",
    "formic_acid": "HCOOH",
    "acetaldehyde": "CH3CHO",
    "ethanol": "CH3CH2OH",
    "h2o2": "H2O2",
    "dimethyl_ether": "CH3OCH3",
    "oxirane": "CH2OCH2",
    "ketene": "H2CCO",
    "propane": "C3H8",
    "acetic_acid": "CH3COOH",
    "acetone": "CH3COCH3",
    "benzene": "C6H6",
}

# Rattled copies of each molecule: displacement standard deviations in Angstrom (one copy each).
RATTLE_SIGMAS = (0.05, 0.065, 0.08, 0.1)
RATTLE_MAX_ATOMS = 9  # larger molecules get only the first RATTLE_COPIES_LARGE copies
RATTLE_COPIES_LARGE = 2
RATTLE_SEED = 20080101

# Bond-stretch scans: (molecule, element of the fixed atom, element of the moved atom, bond label).
# The moved side is everything bonded to the second atom once the bond is cut.
STRETCHES = (
    ("methane", "C", "H", "CH"),
    ("ethane", "C", "C", "CC"),
    ("water", "O", "H", "OH"),
    ("methanol", "C", "O", "CO"),
    ("formaldehyde", "C", "O", "CO"),
)
STRETCH_FACTORS = (0.85, 0.92, 1.0, 1.08, 1.18, 1.3, 1.45, 1.6, 1.8, 2.0)

# Angle scans: (molecule, end element, apex element, moved element, label, angles in degrees);
# None in the angle list stands for the molecule's own angle.
BENDS = (
    ("water", "H", "O", "H", "HOH", (70.0, 80.0, 90.0, None, 115.0, 130.0, 150.0, 170.0)),
    ("methane", "H", "C", "H", "HCH", (80.0, 90.0, 100.0, None, 120.0, 130.0, 145.0, 160.0)),
    ("formaldehyde", "O", "C", "H", "HCO", (85.0, 95.0, 105.0, None, 135.0, 145.0, 155.0, 165.0)),
)

PATH_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class Job:
    """One structure to compute: its geometry and the info keys describing it."""

    name: str
    family: str
    atoms: Atoms
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------- geometry builders


def equilibrium(key: str) -> Atoms:
    """The G2 geometry of a dataset molecule, centred at the origin, without any info."""
    atoms = molecule(MOLECULES[key])
    atoms.info.clear()
    atoms.set_initial_magnetic_moments(None)
    atoms.positions -= atoms.positions.mean(axis=0)
    return atoms


def bonded_pairs(atoms: Atoms) -> set[tuple[int, int]]:
    """Covalent bonds (i < j): distance below 1.2 times the sum of ASE's covalent radii."""
    first, second = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    return {(int(i), int(j)) for i, j in zip(first, second) if i < j}


def first_bond(atoms: Atoms, element_a: str, element_b: str) -> tuple[int, int]:
    """The lowest-index bonded pair (a, b) with the given elements, a of element_a."""
    symbols = atoms.get_chemical_symbols()
    for i, j in sorted(bonded_pairs(atoms)):
        for a, b in ((i, j), (j, i)):
            if symbols[a] == element_a and symbols[b] == element_b:
                return a, b
    raise ValueError(f"no {element_a}-{element_b} bond in {atoms.get_chemical_formula()}")


def side_of_bond(atoms: Atoms, fixed: int, moved: int) -> list[int]:
    """Atoms connected to ``moved`` once the fixed-moved bond is cut (``moved`` included)."""
    neighbours: dict[int, set[int]] = {k: set() for k in range(len(atoms))}
    for i, j in bonded_pairs(atoms):
        if {i, j} != {fixed, moved}:
            neighbours[i].add(j)
            neighbours[j].add(i)
    seen, queue = {moved}, deque([moved])
    while queue:
        for k in neighbours[queue.popleft()] - seen:
            seen.add(k)
            queue.append(k)
    if fixed in seen:
        raise ValueError(f"bond {fixed}-{moved} is in a ring; a rigid stretch is undefined")
    return sorted(seen)


def stretched(atoms: Atoms, fixed: int, moved: int, length: float) -> Atoms:
    """Copy with the moved side translated along the bond so that |r_moved - r_fixed| = length (Å)."""
    out = atoms.copy()
    bond = out.positions[moved] - out.positions[fixed]
    shift = (length - np.linalg.norm(bond)) * bond / np.linalg.norm(bond)
    out.positions[side_of_bond(atoms, fixed, moved)] += shift
    return out


def angle_deg(atoms: Atoms, end: int, apex: int, moved: int) -> float:
    return float(atoms.get_angle(end, apex, moved))


def bent(atoms: Atoms, end: int, apex: int, moved: int, angle: float) -> Atoms:
    """Copy with the moved side rotated about the apex, in the end-apex-moved plane, to ``angle`` degrees."""
    out = atoms.copy()
    u = out.positions[end] - out.positions[apex]
    v = out.positions[moved] - out.positions[apex]
    axis = np.cross(u, v)
    axis /= np.linalg.norm(axis)
    turn = np.radians(angle - angle_deg(atoms, end, apex, moved))
    # Rodrigues rotation about ``axis`` (right-handed, u -> v sense), through the apex.
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    rotation = np.eye(3) + np.sin(turn) * k + (1.0 - np.cos(turn)) * k @ k
    side = side_of_bond(atoms, apex, moved)
    out.positions[side] = (out.positions[side] - out.positions[apex]) @ rotation.T + out.positions[apex]
    return out


def rattled(atoms: Atoms, sigma: float, seed: int) -> Atoms:
    """Copy with every coordinate displaced by a normal deviate of ``sigma`` Å (numpy default_rng(seed))."""
    out = atoms.copy()
    out.positions += np.random.default_rng(seed).normal(0.0, sigma, size=out.positions.shape)
    return out


def interpolated(start: Atoms, end: Atoms, fraction: float) -> Atoms:
    out = start.copy()
    out.positions = (1.0 - fraction) * start.positions + fraction * end.positions
    return out


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def methanol_h_transfer_end() -> tuple[Atoms, Atoms]:
    """CH3OH and the CH2OH2 ylide made by moving one methyl H onto the O (O-H 0.97 Å, C-O-H 109.5°)."""
    start = equilibrium("methanol")
    carbon, oxygen = first_bond(start, "C", "O")
    _, hydroxyl = first_bond(start, "O", "H")
    normal = unit(np.cross(start.positions[oxygen] - start.positions[carbon],
                           start.positions[hydroxyl] - start.positions[carbon]))
    methyl = [j for i, j in sorted(bonded_pairs(start)) if i == carbon and start.symbols[j] == "H"]
    # An out-of-plane methyl H (the first of the two mirror images).
    hydrogen = max(methyl, key=lambda k: round(abs((start.positions[k] - start.positions[carbon]) @ normal), 6))
    axis = unit(start.positions[oxygen] - start.positions[carbon])
    ch = start.positions[hydrogen] - start.positions[carbon]
    across = unit(ch - (ch @ axis) * axis)
    theta = np.radians(180.0 - 109.5)
    end = start.copy()
    end.positions[hydrogen] = start.positions[oxygen] + 0.97 * (np.cos(theta) * axis + np.sin(theta) * across)
    return start, end


def formaldehyde_h2_loss_end() -> tuple[Atoms, Atoms]:
    """H2CO and CO + H2: both H moved 2.2 Å behind the C along the O=C axis, 0.74 Å apart."""
    start = equilibrium("formaldehyde")
    carbon, oxygen = first_bond(start, "C", "O")
    axis = unit(start.positions[oxygen] - start.positions[carbon])
    hydrogens = [k for k, s in enumerate(start.get_chemical_symbols()) if s == "H"]
    across = unit(start.positions[hydrogens[0]] - start.positions[hydrogens[1]])
    end = start.copy()
    behind = start.positions[carbon] - 2.2 * axis
    end.positions[hydrogens[0]] = behind + 0.37 * across
    end.positions[hydrogens[1]] = behind - 0.37 * across
    return start, end


PATHS = {
    "methanol_h_transfer": methanol_h_transfer_end,
    "formaldehyde_h2_loss": formaldehyde_h2_loss_end,
}


def all_jobs() -> list[Job]:
    """Every structure of the dataset, in file order. Deterministic (no dependence on what ran)."""
    jobs: list[Job] = []
    for key in MOLECULES:
        jobs.append(Job(key, "molecules", equilibrium(key), {"source_geometry": f"ase G2 {MOLECULES[key]}"}))

    for mol_key, a_el, b_el, label in STRETCHES:
        base = equilibrium(mol_key)
        fixed, moved = first_bond(base, a_el, b_el)
        r0 = base.get_distance(fixed, moved)
        family = f"{mol_key}_stretch_{label}"
        for factor in STRETCH_FACTORS:
            length = round(factor * r0, 3)
            jobs.append(Job(f"{family}_{length:.3f}", family, stretched(base, fixed, moved, length),
                            {"coordinate": length, "coordinate_unit": "angstrom", "equilibrium_value": round(r0, 4),
                             "scan_atoms": np.array([fixed, moved])}))

    for mol_key, end_el, apex_el, moved_el, label, angles in BENDS:
        base = equilibrium(mol_key)
        apex, end = first_bond(base, apex_el, end_el)
        moved = next(j for i, j in sorted(bonded_pairs(base)) if i == apex and j != end
                     and base.get_chemical_symbols()[j] == moved_el)
        theta0 = round(angle_deg(base, end, apex, moved), 1)
        family = f"{mol_key}_angle_{label}"
        for angle in angles:
            angle = theta0 if angle is None else angle
            jobs.append(Job(f"{family}_{angle:.1f}", family, bent(base, end, apex, moved, angle),
                            {"coordinate": angle, "coordinate_unit": "degree", "equilibrium_value": theta0,
                             "scan_atoms": np.array([end, apex, moved])}))

    for family, make_ends in PATHS.items():
        start, end = make_ends()
        for fraction in PATH_FRACTIONS:
            jobs.append(Job(f"{family}_{fraction:.2f}", family, interpolated(start, end, fraction),
                            {"coordinate": fraction, "coordinate_unit": "path_fraction"}))

    for m, key in enumerate(MOLECULES):
        base = equilibrium(key)
        copies = RATTLE_SIGMAS if len(base) <= RATTLE_MAX_ATOMS else RATTLE_SIGMAS[:RATTLE_COPIES_LARGE]
        for c, sigma in enumerate(copies):
            seed = RATTLE_SEED + 100 * m + c
            jobs.append(Job(f"{key}_rattle_{c}", f"{key}_rattle", rattled(base, sigma, seed),
                            {"rattle_sigma": sigma, "rattle_seed": seed}))

    names = [job.name for job in jobs]
    assert len(names) == len(set(names)), "duplicate structure names"
    return jobs


def job_by_name(name: str) -> Job:
    for job in all_jobs():
        if job.name == name:
            return job
    raise KeyError(f"no structure named {name!r}")


# ---------------------------------------------------------------- DFT


def pyscf_version() -> str:
    import pyscf

    return pyscf.__version__


def compute(atoms: Atoms) -> tuple[float, np.ndarray]:
    """RKS B3LYP/6-31G* total energy (kcal/mol) and forces (kcal/mol/Å) of a neutral closed-shell structure."""
    from pyscf import dft, gto

    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                unit="Angstrom", basis=BASIS, cart=CARTESIAN, charge=0, spin=0, verbose=0)
    mf = dft.RKS(mol)
    mf.xc = XC
    mf.grids.level = GRID_LEVEL
    mf.conv_tol = CONV_TOL
    mf.conv_tol_grad = CONV_TOL_GRAD
    mf.max_cycle = MAX_CYCLE
    mf.kernel()
    if not mf.converged:
        mf = mf.newton()
        mf.kernel(mf.mo_coeff, mf.mo_occ)
    if not mf.converged:
        raise RuntimeError(f"SCF did not converge for {atoms.get_chemical_formula()}")
    gradient = mf.nuc_grad_method()
    gradient.grid_response = GRID_RESPONSE
    forces = -gradient.kernel() * HARTREE_PER_BOHR_TO_KCAL_MOL_ANGSTROM
    return float(mf.e_tot) * HARTREE_TO_KCAL_MOL, np.asarray(forces)


ATOM_SPINS = {"H": 1, "C": 2, "O": 2}  # 2S: ground states 2S, 3P, 3P


def atom_reference_energies() -> dict[str, float]:
    """UKS B3LYP/6-31G* energies (kcal/mol) of the free atoms H (doublet), C and O (triplets).

    Same basis, grid and tolerances as the molecules; spherical symmetry is not imposed (the
    lowest solution the default guess finds). Subtract them to get atomization energies.
    """
    from pyscf import dft, gto

    energies = {}
    for symbol, spin in ATOM_SPINS.items():
        mol = gto.M(atom=[(symbol, (0.0, 0.0, 0.0))], basis=BASIS, cart=CARTESIAN, charge=0, spin=spin, verbose=0)
        mf = dft.UKS(mol)
        mf.xc = XC
        mf.grids.level = GRID_LEVEL
        mf.conv_tol = CONV_TOL
        mf.max_cycle = MAX_CYCLE
        mf.kernel()
        if not mf.converged:
            raise RuntimeError(f"SCF did not converge for the {symbol} atom")
        energies[symbol] = float(mf.e_tot) * HARTREE_TO_KCAL_MOL
    return energies


def settings_info() -> dict:
    """Info keys describing the calculation, written on every structure."""
    return {
        "level_of_theory": LEVEL_OF_THEORY,
        "program": f"PySCF {pyscf_version()}",
        "method": "RKS closed-shell singlet",
        "xc": "B3LYP (libxc 402, VWN-RPA)",
        "basis": BASIS + (" cartesian" if CARTESIAN else " spherical"),
        "grid": f"PySCF level {GRID_LEVEL}, grid response in forces: {GRID_RESPONSE}",
        "scf_conv_tol": CONV_TOL,
        "scf_conv_tol_grad": CONV_TOL_GRAD,
        "energy_unit": "kcal/mol",
        "forces_unit": "kcal/mol/Angstrom",
        "hartree_to_kcal_mol": HARTREE_TO_KCAL_MOL,
        "total_charge": 0,
        "multiplicity": 1,
        "run_type": "single_point",
    }


def run_job(job: Job) -> Atoms:
    """Compute one job and return its Atoms with info, energy and forces attached."""
    start = time.perf_counter()
    energy, forces = compute(job.atoms)
    atoms = job.atoms.copy()
    atoms.info = {"name": job.name, "family": job.family, **job.info, **settings_info(),
                  "wall_seconds": round(time.perf_counter() - start, 2)}
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


# ---------------------------------------------------------------- output


def read_existing(path: str) -> list[Atoms]:
    return read(path, index=":", format="extxyz") if os.path.exists(path) else []


def write_atomically(path: str, structures: list[Atoms]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".cho-", suffix=".extxyz.tmp")
    os.close(handle)
    try:
        write(tmp, structures, format="extxyz")
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json_atomically(path: str, data: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".atoms-", suffix=".json.tmp")
    with os.fdopen(handle, "w") as stream:
        json.dump(data, stream, indent=2)
        stream.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def ordered(structures: dict[str, Atoms], jobs: list[Job]) -> list[Atoms]:
    """Structures in job order, then any unknown names (kept, never dropped) in their old order."""
    known = [structures[j.name] for j in jobs if j.name in structures]
    names = {j.name for j in jobs}
    return known + [a for n, a in structures.items() if n not in names]


def selected(jobs: list[Job], patterns: list[str] | None) -> list[Job]:
    """Jobs whose name or family matches any shell-style pattern (all when no pattern)."""
    if not patterns:
        return jobs
    return [j for j in jobs if any(fnmatch.fnmatchcase(j.name, p) or fnmatch.fnmatchcase(j.family, p)
                                   for p in patterns)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "cho", "cho.extxyz"),
                        help="output extxyz file (default: datasets/cho/cho.extxyz); existing names are skipped")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="compute only structures whose name or family matches (shell pattern; repeatable)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (set OMP_NUM_THREADS=1)")
    parser.add_argument("--list", action="store_true", help="list the structures and exit")
    parser.add_argument("--atoms-out", metavar="JSON",
                        help="also write the free-atom reference energies (kcal/mol) to this JSON file")
    args = parser.parse_args(argv)

    jobs = all_jobs()
    todo = selected(jobs, args.only)
    if args.only and not todo:
        parser.error(f"--only {args.only} matches no structure name or family")
    if args.list:
        for job in todo:
            print(f"{job.name:40s} {job.family:32s} {len(job.atoms):3d} atoms, "
                  f"shortest distance {min_distance(job.atoms):.3f} Å")
        print(f"{len(todo)} structures")
        return 0

    done = {a.info["name"]: a for a in read_existing(args.out)}
    todo = [j for j in todo if j.name not in done]
    print(f"{len(done)} structures already in {args.out}; {len(todo)} to compute "
          f"(PySCF {pyscf_version()}, {LEVEL_OF_THEORY})", flush=True)
    start = time.perf_counter()

    def store(atoms: Atoms, count: int) -> None:
        done[atoms.info["name"]] = atoms
        write_atomically(args.out, ordered(done, jobs))
        print(f"[{count}/{len(todo)}] {atoms.info['name']:40s} E = {atoms.get_potential_energy():.6f} kcal/mol "
              f"({atoms.info['wall_seconds']:.1f} s, total {time.perf_counter() - start:.0f} s)", flush=True)

    if args.workers <= 1:
        for count, job in enumerate(todo, start=1):
            store(run_job(job), count)
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            futures = [pool.submit(run_job, job) for job in todo]
            for count, future in enumerate(as_completed(futures), start=1):
                store(future.result(), count)
    if args.atoms_out:
        settings = settings_info()
        reference = {key: settings[key] for key in ("level_of_theory", "program", "xc", "basis", "grid",
                                                       "scf_conv_tol", "hartree_to_kcal_mol")}
        reference.update(method="UKS free atoms: H doublet, C and O triplets", energy_unit="kcal/mol",
                         energies=atom_reference_energies())
        write_json_atomically(args.atoms_out, reference)
        print(f"free-atom energies (kcal/mol) written to {args.atoms_out}: {reference['energies']}")
    print(f"done: {len(done)} structures in {args.out}, {time.perf_counter() - start:.0f} s", flush=True)
    return 0


def min_distance(atoms: Atoms) -> float:
    d = atoms.get_all_distances()
    return float(np.min(d[np.triu_indices(len(atoms), 1)])) if len(atoms) > 1 else float("nan")


if __name__ == "__main__":
    sys.exit(main())
