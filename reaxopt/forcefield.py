"""ReaxFF parameters as JAX pytrees: the file's values (``Params``), the static type bookkeeping
(``Topology``) and the dense per-type tables the energy terms use (``ForceField``).

``build_forcefield(ffield) -> (params, topology)`` runs once on the host. ``expand(params,
topology) -> ForceField`` is pure, jittable and differentiable: it applies LAMMPS's reader
(``reaxff_ffield.cpp``) mixing rules and quirks, so that gradients of any energy reach the
file's values in ``Params`` (which a params file's section/entry/parameter addresses directly).

Params (float64, the file's values exactly, file order)
    general (G,), atoms (T, 32 or 34), bonds (Nb, 16), offdiag (No, 7; 7th = lgvdw value or 0),
    angles (Na, 7), torsions (Nt, 7), hbonds (Nh, 4).

Topology (host numpy, static, hashable)
    symbols; bond_row (T,T), offdiag_rows (T,T,K) (every off-diagonal line of the pair in file
    order, -1 padded: LAMMPS applies them one after another), angle_rows (T,T,T,K) (LAMMPS's
    parameter slots of ``thbp[i][j][k]``, -1 = empty slot), torsion_row (T,T,T,T) (after
    ``0 j k 0`` wildcard resolution: a specific line always wins, a later wildcard overrides an
    earlier one), hbond_row (T,T,T) (donor X, H, acceptor Z; later lines override); entries naming
    types above T are skipped. Read-time choices: p_hbond (T,) (1 = H, 2 = acceptor), vdw_type
    (1 shielding, 2 inner wall, 3 both), lgvdw, first_row (mass < 21: valency_val := valency_boc),
    heavy (mass > 21: no lone-pair term in over-coordination, dfvl = 0), is_carbon (name "C":
    C2 lone-pair correction), triple_pair (T,T) (the triple-bond stabilisation applies: general
    38 == 2 or a C/O pair by mass 12.0000/15.9990). Run option: enobonds (LAMMPS's pair_style
    reaxff keyword, default True: atoms without any bond still get their lone-pair and
    under-coordination energies; False drops both for such atoms).

ForceField (dense tables, units)
    general (G,): the file's general parameters (unitless / as in the file); the named ones:
      bo_cut: bond-order cutoff = 0.01 * general[29]; swa, swb: taper radii (Å) = general[11],
      general[12]; p_vdw1: vdW shielding exponent = general[28].
    Per type (T,):
      mass (amu); r_s, r_pi, r_pipi: atomic bond radii (Å) as in the file (only their sign is used:
      LAMMPS drops a sigma/pi/pipi bond order if either atom's radius is <= 0);
      valency, valency_e, valency_boc, valency_val (after the first-row substitution);
      nlp_opt = (valency_e - valency) / 2; p_lp2 (kcal/mol); p_ovun2; p_ovun5 (kcal/mol);
      p_val3; p_val5; chi (eV); eta (eV, = 2 x file value, as LAMMPS stores it); gamma_atom (1/Å,
      the file value).
    Per pair (T,T):
      r_s, r_p, r_pp: bond-order radii (Å; mean of the atoms' or the off-diagonal value if > 0);
      p_bo1..p_bo6, p_boc3 = sqrt(b_o_132_i b_o_132_j), p_boc4 = sqrt(b_o_131 ...),
      p_boc5 = sqrt(b_o_133 ...); De_s, De_p, De_pp (kcal/mol); p_be1, p_be2; p_ovun1; v13cor; ovc;
      gamma = (gamma_i gamma_j)^(-3/2) (Å^3, fix qeq/reaxff's shielding); vdw_D (kcal/mol),
      vdw_r (Å, = 2 sqrt(rvdw_i rvdw_j) or 2 x off-diagonal), vdw_alpha, vdw_gamma_w (Å),
      vdw_rcore (Å), vdw_ecore (kcal/mol), vdw_acore, lg_c, lg_re (Å; zeros without lgvdw).
      Type pairs without a bond line have all bond parameters 0, as in LAMMPS.
    Per angle slot (T,T,T,K) (i, centre j, k): theta_00 (degrees, as LAMMPS uses it), p_val1
      (kcal/mol), p_val2, p_coa1 (kcal/mol), p_val7, p_pen1 (kcal/mol), p_val4; angle_mask.
    Per torsion (T,T,T,T): V1, V2, V3 (kcal/mol), p_tor1, p_cot1 (kcal/mol); torsion_mask.
    Per hydrogen bond (T,T,T) (X, H, Z): r0_hb (Å, -1 where absent), p_hb1 (kcal/mol), p_hb2,
      p_hb3.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reaxopt.errors import InputError
from reaxopt.energy.safe_math import safe_pow, safe_sqrt
from reaxopt.io.ffield import (ANGLE_VALUES, ATOM_VALUES, BOND_VALUES, HBOND_VALUES,
                               OFFDIAG_VALUES, TORSION_VALUES, FField)

# LAMMPS's fixed number of general parameters it may read (l[0]..l[38]).
N_GENERAL_USED = 39

# 0-based columns of an atom's values (file order, four lines of eight).
ATOM = dict(r_s=0, valency=1, mass=2, r_vdw=3, epsilon=4, gamma=5, r_pi=6, valency_e=7,
            alpha=8, gamma_w=9, valency_boc=10, p_ovun5=11, chi=13, eta=14, p_hbond=15,
            r_pipi=16, p_lp2=17, b_o_131=19, b_o_132=20, b_o_133=21, p_ovun2=24, p_val3=25,
            valency_val=27, p_val5=28, rcore=29, ecore=30, acore=31, lg_c=32, lg_re=33)
BOND = dict(De_s=0, De_p=1, De_pp=2, p_be1=3, p_bo5=4, v13cor=5, p_bo6=6, p_ovun1=7, p_be2=8,
            p_bo3=9, p_bo4=10, p_bo1=12, p_bo2=13, ovc=14)
OFFDIAG = dict(D=0, r_vdw=1, alpha=2, r_s=3, r_p=4, r_pp=5, lg_c=6)
ANGLE = dict(theta_00=0, p_val1=1, p_val2=2, p_coa1=3, p_val7=4, p_pen1=5, p_val4=6)
TORSION = dict(V1=0, V2=1, V3=2, p_tor1=3, p_cot1=4)
HBOND = dict(r0_hb=0, p_hb1=1, p_hb2=2, p_hb3=3)


def _pytree(cls):
    """Register a dataclass as a pytree whose fields are all data (arrays)."""
    names = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


@_pytree
@dataclass
class Params:
    """The force-field file's values, float64, in file order (see the module docstring)."""

    general: Any
    atoms: Any
    bonds: Any
    offdiag: Any
    angles: Any
    torsions: Any
    hbonds: Any


@dataclass(frozen=True, eq=False)
class Topology:
    """Static type bookkeeping (host numpy): which file line serves which type tuple."""

    symbols: tuple[str, ...]
    bond_row: np.ndarray  # (T,T) int, -1 = no bond line
    offdiag_rows: np.ndarray  # (T,T,K) int, file order, -1 padded
    angle_rows: np.ndarray  # (T,T,T,K) int, LAMMPS parameter slots, -1 = empty
    torsion_row: np.ndarray  # (T,T,T,T) int, -1 = no torsion parameters
    hbond_row: np.ndarray  # (T,T,T) int, -1 = no hydrogen-bond parameters
    p_hbond: np.ndarray  # (T,) int
    first_row: np.ndarray  # (T,) bool, mass < 21
    heavy: np.ndarray  # (T,) bool, mass > 21
    is_carbon: np.ndarray  # (T,) bool
    triple_pair: np.ndarray  # (T,T) bool
    vdw_type: int
    lgvdw: bool
    enobonds: bool = True

    @property
    def n_types(self) -> int:
        return len(self.symbols)

    @functools.cached_property
    def _key(self):
        """Everything that identifies the topology (computed once; jit hashes it per call)."""
        parts = [self.symbols, self.vdw_type, self.lgvdw, self.enobonds]
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                parts.append((f.name, v.shape, v.dtype.str, v.tobytes()))
        return tuple(parts)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, Topology) and self._key == other._key


@_pytree
@dataclass
class ForceField:
    """Dense per-type tables (see the module docstring for meanings and units)."""

    general: Any
    bo_cut: Any
    swa: Any
    swb: Any
    p_vdw1: Any
    # per type (T,)
    mass: Any
    r_s_atom: Any
    r_pi_atom: Any
    r_pipi_atom: Any
    valency: Any
    valency_e: Any
    valency_boc: Any
    valency_val: Any
    nlp_opt: Any
    p_lp2: Any
    p_ovun2: Any
    p_ovun5: Any
    p_val3: Any
    p_val5: Any
    chi: Any
    eta: Any
    gamma_atom: Any
    # per pair (T,T)
    r_s: Any
    r_p: Any
    r_pp: Any
    p_bo1: Any
    p_bo2: Any
    p_bo3: Any
    p_bo4: Any
    p_bo5: Any
    p_bo6: Any
    p_boc3: Any
    p_boc4: Any
    p_boc5: Any
    De_s: Any
    De_p: Any
    De_pp: Any
    p_be1: Any
    p_be2: Any
    p_ovun1: Any
    v13cor: Any
    ovc: Any
    gamma: Any
    vdw_D: Any
    vdw_r: Any
    vdw_alpha: Any
    vdw_gamma_w: Any
    vdw_rcore: Any
    vdw_ecore: Any
    vdw_acore: Any
    lg_c: Any
    lg_re: Any
    # per angle slot (T,T,T,K)
    theta_00: Any
    p_val1: Any
    p_val2: Any
    p_coa1: Any
    p_val7: Any
    p_pen1: Any
    p_val4: Any
    angle_mask: Any
    # per torsion (T,T,T,T)
    V1: Any
    V2: Any
    V3: Any
    p_tor1: Any
    p_cot1: Any
    torsion_mask: Any
    # per hydrogen bond (T,T,T)
    r0_hb: Any
    p_hb1: Any
    p_hb2: Any
    p_hb3: Any

    def g(self, index: int):
        """General parameter ``index`` (0-based, LAMMPS's gp.l[index]); 0 if the file has fewer."""
        return self.general[index] if index < self.general.shape[0] else jnp.zeros(())


# ----------------------------------------------------------------------------- host side


def _matrix(rows, width):
    return np.array([list(r)[:width] + [0.0] * (width - len(r)) for r in rows],
                    dtype=np.float64).reshape(len(rows), width)


def params_from_ffield(ff: FField) -> Params:
    """The file's values as float64 arrays (``Params``)."""
    atom_width = ATOM_VALUES + (2 if ff.lgvdw else 0)
    return Params(
        general=jnp.asarray(np.array(ff.general, dtype=np.float64)),
        atoms=jnp.asarray(_matrix([a.values for a in ff.atoms], atom_width)),
        bonds=jnp.asarray(_matrix([e.values for e in ff.bonds], BOND_VALUES)),
        offdiag=jnp.asarray(_matrix([e.values for e in ff.offdiagonal], OFFDIAG_VALUES + 1)),
        angles=jnp.asarray(_matrix([e.values for e in ff.angles], ANGLE_VALUES)),
        torsions=jnp.asarray(_matrix([e.values for e in ff.torsions], TORSION_VALUES)),
        hbonds=jnp.asarray(_matrix([e.values for e in ff.hbonds], HBOND_VALUES)),
    )


def _vdw_type(ff: FField) -> int:
    """LAMMPS's vdW flavour, decided from the atoms in file order (first one wins)."""
    vdw_type = 0
    for a in ff.atoms:
        v = a.values
        wall = v[ATOM["rcore"]] > 0.01 and v[ATOM["acore"]] > 0.01
        shield = v[ATOM["gamma_w"]] > 0.5
        if not wall and not shield:
            raise InputError(f"atom {a.symbol} has neither vdW shielding (gamma_w > 0.5) nor an "
                             f"inner wall (rcore2, acore2 > 0.01); LAMMPS rejects such a file",
                             file=ff.source, key=f"atoms.{a.symbol}")
        kind = 3 if (wall and shield) else (2 if wall else 1)
        if vdw_type == 0:
            vdw_type = kind
    return vdw_type


def topology_from_ffield(ff: FField) -> Topology:
    """Index tables and read-time choices, emulating LAMMPS's reader line by line."""
    T = len(ff.atoms)
    mass = np.array([a.values[ATOM["mass"]] for a in ff.atoms])

    bond_row = -np.ones((T, T), dtype=np.int64)
    for n, e in enumerate(ff.bonds):
        a, b = e.types[0] - 1, e.types[1] - 1
        if a < T and b < T:
            bond_row[a, b] = bond_row[b, a] = n

    off_lists = [[[] for _ in range(T)] for _ in range(T)]
    for n, e in enumerate(ff.offdiagonal):
        a, b = e.types[0] - 1, e.types[1] - 1
        if a < T and b < T:
            off_lists[a][b].append(n)
            if a != b:
                off_lists[b][a].append(n)
    k_off = max([1] + [len(x) for row in off_lists for x in row])
    offdiag_rows = -np.ones((T, T, k_off), dtype=np.int64)
    for a in range(T):
        for b in range(T):
            offdiag_rows[a, b, :len(off_lists[a][b])] = off_lists[a][b]

    # thbp[j][k][l].prm[cnt]: cnt of (j,k,l) picks the slot; both (j,k,l) and (l,k,j) counters
    # advance (so a symmetric j-k-j line leaves an empty slot behind it, as LAMMPS does).
    cnt = np.zeros((T, T, T), dtype=np.int64)
    slots: dict[tuple[int, int, int, int], int] = {}
    for n, e in enumerate(ff.angles):
        a, b, c = (t - 1 for t in e.types)
        if a < T and b < T and c < T:
            s = cnt[a, b, c]
            cnt[a, b, c] += 1
            cnt[c, b, a] += 1
            slots[(a, b, c, s)] = n
            slots[(c, b, a, s)] = n
    k_ang = max(1, int(cnt.max()) if cnt.size else 1)
    angle_rows = -np.ones((T, T, T, k_ang), dtype=np.int64)
    for (a, b, c, s), n in slots.items():
        angle_rows[a, b, c, s] = n

    torsion_row = -np.ones((T, T, T, T), dtype=np.int64)
    specific = np.zeros((T, T, T, T), dtype=bool)
    for n, e in enumerate(ff.torsions):
        a, b, c, d = (t - 1 for t in e.types)
        if a >= 0 and d >= 0:
            if max(a, b, c, d) < T:
                specific[a, b, c, d] = specific[d, c, b, a] = True
                torsion_row[a, b, c, d] = torsion_row[d, c, b, a] = n
        elif b < T and c < T:
            for p in range(T):
                for o in range(T):
                    if not specific[p, b, c, o]:
                        torsion_row[p, b, c, o] = n
                    if not specific[o, c, b, p]:
                        torsion_row[o, c, b, p] = n

    hbond_row = -np.ones((T, T, T), dtype=np.int64)
    for n, e in enumerate(ff.hbonds):
        a, b, c = (t - 1 for t in e.types)
        if a < T and b < T and c < T:
            hbond_row[a, b, c] = n

    general = list(ff.general) + [0.0] * N_GENERAL_USED
    c_o_switch = int(general[37]) == 2
    is_c = np.abs(mass - 12.0000) < 1e-4
    is_o = np.abs(mass - 15.9990) < 1e-4
    triple_pair = c_o_switch | (is_c[:, None] & is_o[None, :]) | (is_o[:, None] & is_c[None, :])

    return Topology(
        symbols=tuple(ff.symbols),
        bond_row=bond_row, offdiag_rows=offdiag_rows, angle_rows=angle_rows,
        torsion_row=torsion_row, hbond_row=hbond_row,
        p_hbond=np.array([int(a.values[ATOM["p_hbond"]]) for a in ff.atoms], dtype=np.int64),
        first_row=mass < 21.0, heavy=mass > 21.0,
        is_carbon=np.array([s.upper()[:3] == "C" for s in ff.symbols]),
        triple_pair=np.asarray(triple_pair, dtype=bool),
        vdw_type=_vdw_type(ff), lgvdw=ff.lgvdw)


def build_forcefield(ffield: FField, *, enobonds: bool = True) -> tuple[Params, Topology]:
    """Host-side: the file's values and the static tables that ``expand`` needs.

    enobonds: LAMMPS's ``pair_style reaxff ... enobonds`` (default yes), see ``Topology``.
    """
    topology = topology_from_ffield(ffield)
    if not enobonds:
        topology = dataclasses.replace(topology, enobonds=False)
    return params_from_ffield(ffield), topology


# ----------------------------------------------------------------------------- expand


def _gather(table, rows: np.ndarray, column: int, fill=0.0):
    """table[rows, column] where rows >= 0, ``fill`` elsewhere (rows static numpy)."""
    present = rows >= 0
    if table.shape[0] == 0 or not present.any():
        return jnp.full(rows.shape, fill, dtype=jnp.float64)
    values = table[np.where(present, rows, 0), column]
    return jnp.where(present, values, fill)


def expand(params: Params, topology: Topology) -> ForceField:
    """Dense tables from the file's values with LAMMPS's mixing rules (pure, differentiable)."""
    top = topology
    atoms, general = params.atoms, params.general
    col = lambda name: atoms[:, ATOM[name]]  # noqa: E731
    g = lambda k: general[k] if k < general.shape[0] else jnp.zeros(())  # noqa: E731

    def mean(x):
        return 0.5 * (x[:, None] + x[None, :])

    def geo(x):
        return safe_sqrt(x[:, None] * x[None, :])

    valency_boc = col("valency_boc")
    valency_val = jnp.where(top.first_row, valency_boc, col("valency_val"))

    # Off-diagonal lines override the mixed value only where their value is > 0 (lg_c: >= 0),
    # one line after another in file order.
    r_s, r_p, r_pp = mean(col("r_s")), mean(col("r_pi")), mean(col("r_pipi"))
    vdw_D, vdw_alpha = geo(col("epsilon")), geo(col("alpha"))
    vdw_r = 2.0 * geo(col("r_vdw"))
    if top.lgvdw:
        lg_c = geo(col("lg_c"))
        lg_re = 2.0 * g(35) * geo(col("lg_re"))
    else:
        lg_c = lg_re = jnp.zeros_like(r_s)
    for k in range(top.offdiag_rows.shape[2]):
        rows = top.offdiag_rows[:, :, k]
        present = rows >= 0

        def over(current, name, scale=1.0, strict=True):
            v = _gather(params.offdiag, rows, OFFDIAG[name])
            take = present & ((v > 0.0) if strict else (v >= 0.0))
            return jnp.where(take, scale * v, current)

        vdw_D = over(vdw_D, "D")
        vdw_r = over(vdw_r, "r_vdw", 2.0)
        vdw_alpha = over(vdw_alpha, "alpha")
        r_s = over(r_s, "r_s")
        r_p = over(r_p, "r_p")
        r_pp = over(r_pp, "r_pp")
        if top.lgvdw:
            lg_c = over(lg_c, "lg_c", strict=False)

    bond = {name: _gather(params.bonds, top.bond_row, c) for name, c in BOND.items()}
    angle = {name: _gather(params.angles, top.angle_rows, c) for name, c in ANGLE.items()}
    torsion = {name: _gather(params.torsions, top.torsion_row, c) for name, c in TORSION.items()}
    hbond = {name: _gather(params.hbonds, top.hbond_row, c, -1.0 if name == "r0_hb" else 0.0)
             for name, c in HBOND.items()}
    gamma_atom = col("gamma")
    gg = gamma_atom[:, None] * gamma_atom[None, :]

    return ForceField(
        general=general, bo_cut=0.01 * g(29), swa=g(11), swb=g(12), p_vdw1=g(28),
        mass=col("mass"), r_s_atom=col("r_s"), r_pi_atom=col("r_pi"),
        r_pipi_atom=col("r_pipi"), valency=col("valency"), valency_e=col("valency_e"),
        valency_boc=valency_boc, valency_val=valency_val,
        nlp_opt=0.5 * (col("valency_e") - col("valency")), p_lp2=col("p_lp2"),
        p_ovun2=col("p_ovun2"), p_ovun5=col("p_ovun5"), p_val3=col("p_val3"),
        p_val5=col("p_val5"), chi=col("chi"), eta=2.0 * col("eta"), gamma_atom=gamma_atom,
        r_s=r_s, r_p=r_p, r_pp=r_pp,
        p_bo1=bond["p_bo1"], p_bo2=bond["p_bo2"], p_bo3=bond["p_bo3"], p_bo4=bond["p_bo4"],
        p_bo5=bond["p_bo5"], p_bo6=bond["p_bo6"],
        p_boc3=geo(col("b_o_132")), p_boc4=geo(col("b_o_131")), p_boc5=geo(col("b_o_133")),
        De_s=bond["De_s"], De_p=bond["De_p"], De_pp=bond["De_pp"], p_be1=bond["p_be1"],
        p_be2=bond["p_be2"], p_ovun1=bond["p_ovun1"], v13cor=bond["v13cor"], ovc=bond["ovc"],
        gamma=safe_pow(gg, -1.5),
        vdw_D=vdw_D, vdw_r=vdw_r, vdw_alpha=vdw_alpha, vdw_gamma_w=geo(col("gamma_w")),
        vdw_rcore=geo(col("rcore")), vdw_ecore=geo(col("ecore")), vdw_acore=geo(col("acore")),
        lg_c=lg_c, lg_re=lg_re,
        theta_00=angle["theta_00"], p_val1=angle["p_val1"], p_val2=angle["p_val2"],
        p_coa1=angle["p_coa1"], p_val7=angle["p_val7"], p_pen1=angle["p_pen1"],
        p_val4=angle["p_val4"], angle_mask=jnp.asarray(top.angle_rows >= 0),
        V1=torsion["V1"], V2=torsion["V2"], V3=torsion["V3"], p_tor1=torsion["p_tor1"],
        p_cot1=torsion["p_cot1"], torsion_mask=jnp.asarray(top.torsion_row >= 0),
        r0_hb=hbond["r0_hb"], p_hb1=hbond["p_hb1"], p_hb2=hbond["p_hb2"], p_hb3=hbond["p_hb3"],
    )
