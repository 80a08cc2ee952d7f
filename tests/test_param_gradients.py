"""Parameter gradients (total derivatives: the QEq charges respond to the parameters) against
central finite differences, for parameters of every section a params file can select.

Structure: dimethyl disulfide from the disulfide training set with an H2S molecule donating an
S-H...S hydrogen bond to it (bond, over/under-coordination, valence, hydrogen-bond, torsion,
van der Waals, Coulomb and QEq energies are all non-zero; the force field is the set's
ffield_lit). Two scalar functions of the parameters:

* the total energy (kcal/mol);
* sum of squared forces + sum of squared charges, which needs second derivatives (forces are
  themselves gradients) and the derivative of the charges.

Each function is jitted once (one padded shape) with ``jax.value_and_grad`` and reused for the
gradient and for every displaced evaluation.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reaxopt  # noqa: F401  (x64)
from reaxopt.energy.total import energy_forces_charges, energy_terms
from reaxopt.evaluate import build_system, pad_system, shared_sizes
from reaxopt.forcefield import build_forcefield
from reaxopt.io.ffield import SECTIONS, read_ffield
from reaxopt.io.geometry import read_geometries
from reaxopt.io.params import parameter_label, read_params
from reaxopt.structure import Structure

# Params field of each params-file section
FIELD = {"general": "general", "atoms": "atoms", "bonds": "bonds", "offdiagonal": "offdiag",
         "angles": "angles", "torsions": "torsions", "hbonds": "hbonds"}

# Parameters beyond the dataset's params file (which selects atoms, bonds, off-diagonal, angles
# and one torsion): general ones (1-based numbers as a params file writes ``1 n 1``), every
# hydrogen-bond value, and each element's QEq chi, eta, gamma (atom values 14, 15, 6).
GENERAL = (1, 2, 7, 9, 10, 16, 24, 25, 26, 28, 29, 30, 31, 32, 33)
EXTRA_ATOM = ((1, 14), (1, 15), (1, 6), (2, 14), (2, 15), (2, 6), (4, 14), (4, 15), (4, 6),
              (4, 18), (2, 5), (4, 9))
EXTRA_TORSION = ((2, 1), (2, 2), (2, 3), (2, 4), (5, 2))

RELATIVE_STEP = 1e-6
RTOL = 1e-5


def _dmds_with_h2s(disulfide: list[Structure]) -> Structure:
    """dmds plus an H2S whose H points at one S of dmds (H...S 2.6 Å, S-H...S ~180 degrees)."""
    x = {s.name: s for s in disulfide}["dmds"].positions
    s_acceptor = x[1]
    out = s_acceptor - 0.5 * (x[0] + x[2])
    out /= np.linalg.norm(out)
    side = np.cross(out, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    s_donor = s_acceptor + 3.95 * out
    angle = np.radians(92.0)
    h2s = [s_donor, s_donor - 1.34 * out,
           s_donor + 1.34 * (-np.cos(angle) * out + np.sin(angle) * side)]
    positions = np.vstack([x, h2s])
    positions += np.random.default_rng(7).normal(scale=0.03, size=positions.shape)
    symbols = list({s.name: s for s in disulfide}["dmds"].symbols) + ["S", "H", "H"]
    return Structure(name="dmds_h2s", symbols=symbols, positions=positions)


def _address(section: str, entry: int, parameter: int) -> tuple[str, tuple]:
    """(Params field, index) of a params-file address (1-based entry and parameter)."""
    if section == "general":
        return "general", (entry - 1,)
    return FIELD[section], (entry - 1, parameter - 1)


def _section_number(name: str) -> int:
    return next(k for k, v in SECTIONS.items() if v == name)


@pytest.fixture(scope="module")
def setup(shared_datasets):
    folder = shared_datasets / "disulfide"
    ffield = read_ffield(folder / "ffield_lit")
    params, topology = build_forcefield(ffield)
    structure = _dmds_with_h2s(read_geometries(folder / "geo"))
    positions, system = build_system(structure, params, topology)
    positions, system = pad_system(positions, system, shared_sizes([system]))
    # device arrays: the functions below close over them (host numpy can't take traced indices)
    positions, system = jax.tree_util.tree_map(jnp.asarray, (positions, system))

    addresses = [(SECTIONS[s.section], s.entry, s.parameter)
                 for s in read_params(folder / "params", ffield)]
    addresses += [("general", n, 1) for n in GENERAL]
    addresses += [("atoms", e, p) for e, p in EXTRA_ATOM]
    addresses += [("torsions", e, p) for e, p in EXTRA_TORSION]
    addresses += [("hbonds", e, p) for e in range(1, len(ffield.hbonds) + 1) for p in range(1, 5)]
    addresses = list(dict.fromkeys(addresses))
    labels = [parameter_label(ffield, _section_number(s), e, p) for s, e, p in addresses]

    def energy(p):
        terms, _ = energy_terms(positions, system, p, topology)
        return sum(terms.values())

    def forces_and_charges(p):
        _, _, forces, charges = energy_forces_charges(positions, system, p, topology)
        return jnp.sum(forces ** 2) + jnp.sum(charges ** 2)

    return dict(params=params, addresses=addresses, labels=labels,
                functions={"energy": jax.jit(jax.value_and_grad(energy)),
                           "forces_and_charges": jax.jit(jax.value_and_grad(forces_and_charges))})


def _displaced(params, field: str, index: tuple, value: float):
    return dataclasses.replace(params, **{field: getattr(params, field).at[index].set(value)})


@pytest.mark.parametrize("function", ["energy", "forces_and_charges"])
def test_parameter_gradients_match_central_differences(setup, function):
    params, fn = setup["params"], setup["functions"][function]
    value, gradient = fn(params)
    value = float(value)
    assert np.isfinite(value)
    failures, significant, worst, noise_used = [], {}, 0.0, 0.0
    for (section, entry, parameter), label in zip(setup["addresses"], setup["labels"]):
        field, index = _address(section, entry, parameter)
        p0 = float(getattr(params, field)[index])
        h = RELATIVE_STEP * max(abs(p0), 1e-2)
        up = float(fn(_displaced(params, field, index, p0 + h))[0])
        down = float(fn(_displaced(params, field, index, p0 - h))[0])
        difference = (up - down) / (2.0 * h)
        analytic = float(getattr(gradient, field)[index])
        # rounding of the function values (float64, ~50 ulps of |value|) over the step
        noise = 1e-14 * max(abs(value), 1.0) / h
        if not abs(analytic - difference) <= RTOL * abs(difference) + noise:
            failures.append(f"{label}: jax.grad {analytic!r}, central difference {difference!r}")
        noise_used = max(noise_used, abs(analytic - difference) / noise)
        if abs(difference) > 1e4 * noise:
            significant.setdefault(section, []).append(label)
            worst = max(worst, abs(analytic - difference) / abs(difference))
    assert not failures, "\n".join(failures)
    # the sample moves the function well above rounding in every section (so the agreement
    # means something), the QEq parameters included
    counts = {section: len(labels) for section, labels in significant.items()}
    assert set(counts) == set(FIELD), f"sections without a measurable parameter: {counts}"
    assert sum(counts.values()) >= 30, counts
    qeq = [label for label in significant["atoms"] if label.split()[-1] in ("chi", "eta", "gamma")]
    assert len(qeq) >= 6, qeq
    print(f"{function}: {len(setup['addresses'])} parameters, significant per section {counts}, "
          f"worst relative deviation {worst:.2e}, largest deviation / rounding allowance "
          f"{noise_used:.2e}")
