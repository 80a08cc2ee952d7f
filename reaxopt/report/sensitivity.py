"""Parameter sensitivity of a least-squares fit: standard errors, correlations, the
worst-determined directions and each parameter's main training items, from the Jacobian J
(m, p) of the weighted residuals r (m,) with respect to the fitted parameters theta (p,).

The estimate is the classic nonlinear least-squares one, linear in theta about the given
point: s² = |r|² / (m - p) and covariance C = s² (JᵀJ)⁺. Everything is in the parameters' own
units (those of the ffield): C_ij in units of theta_i · theta_j, standard errors sqrt(C_jj) in
those of theta_j.

The pseudo-inverse works on the column-scaled matrix: with D = diag(sqrt((JᵀJ)_jj)),
(JᵀJ)⁺ = D⁻¹ (D⁻¹JᵀJD⁻¹)⁺ D⁻¹, keeping the eigenvalues of the scaled matrix (unit diagonal,
eigenvalues between 0 and p; computed from the SVD of J D⁻¹) above ``RCOND`` times the largest.
Where nothing is dropped this is the exact inverse; scaling makes the cutoff independent of the
parameters' units. A parameter with a share above ``UNDETERMINED_SHARE`` in the dropped
directions (or that no residual depends on) is undetermined: its standard error and
correlations are None. The worst-determined directions are the scaled matrix's smallest
eigenvalues with their eigenvectors (components in units of each parameter's 1/D_j): the
eigenvalues of JᵀJ itself mix the parameters' units, so its smallest direction mostly names
the parameter with the largest unit.

``parameter_sensitivity(residuals, theta, labels, items)`` computes it all from a residual
function (JAX-traceable, theta -> weighted residuals, one forward-mode Jacobian);
``to_json`` gives the ``sensitivity`` section of ``summary.json`` / ``sensitivity.json``;
``table_rows`` and ``text_report`` show it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

RCOND = 1e-12  # relative eigenvalue cutoff of the column-scaled JᵀJ
UNDETERMINED_SHARE = 1e-6  # a parameter's squared share of the dropped directions above which
# it is undetermined
TOP_CONTRIBUTORS = 3  # training items listed per parameter
DIRECTIONS = 3  # worst-determined directions reported
COMPONENTS = 4  # leading parameters shown per direction
CHUNK = 16  # Jacobian columns per forward-mode pass (bounds the memory of one pass)


@dataclass
class Sensitivity:
    """The sensitivity at theta (host numpy; p parameters, m residuals).

    labels (p,); theta (p,) in the ffield's units; loss: |r|²; items: m; s2: |r|²/(m - p)
    (nan when m <= p); covariance (p, p) (nan rows/columns for undetermined parameters);
    standard_errors (p,) (nan: undetermined, or m <= p); correlation (p, p) (nan where
    undetermined); determined (p,) bool; eigenvalues (p,) ascending and eigenvectors (p, p)
    (columns) of the column-scaled JᵀJ; dropped: how many eigenvalues the cutoff dropped;
    diagonal (p,): (JᵀJ)_jj in units of 1/theta_j²; contributors: per parameter, up to
    TOP_CONTRIBUTORS (item name, share of (JᵀJ)_jj), largest first.
    """

    labels: tuple[str, ...]
    theta: np.ndarray
    loss: float
    items: int
    s2: float
    covariance: np.ndarray
    standard_errors: np.ndarray
    correlation: np.ndarray
    determined: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    dropped: int
    diagonal: np.ndarray
    contributors: list


def jacobian(residuals: Callable, theta, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(r (m,), J (m, p)) of ``residuals`` (JAX-traceable, (p,) -> (m,)) at theta (p,), by
    forward-mode derivatives ``chunk`` columns at a time (the last chunk padded with zero
    directions, so every pass has one shape)."""
    import jax
    import jax.numpy as jnp

    theta = jnp.asarray(theta, dtype=float)
    p = int(theta.shape[0])
    width = max(1, min(chunk, p))

    def push(directions):
        return jax.vmap(lambda v: jax.jvp(residuals, (theta,), (v,))[1], out_axes=1)(directions)

    r = np.asarray(residuals(theta), float)
    basis = np.eye(p)
    columns = []
    for start in range(0, p, width):
        block = np.zeros((width, p))
        block[:min(width, p - start)] = basis[start:start + width]
        columns.append(np.asarray(push(jnp.asarray(block)), float)[:, :min(width, p - start)])
    return r, np.concatenate(columns, axis=1).reshape(r.shape[0], p)


def scaled_decomposition(jac: np.ndarray, rcond: float = RCOND):
    """(D (p,), eigenvalues (p,) ascending, eigenvectors (p, p) columns, kept (p,) bool) of the
    column-scaled JᵀJ = (J D⁻¹)ᵀ(J D⁻¹), D_j = |J[:, j]| (1 where a column is zero: that
    parameter's eigenvalue is zero and dropped); kept: eigenvalues above rcond x the largest."""
    jac = np.asarray(jac, float)
    norms = np.sqrt(np.sum(jac ** 2, axis=0))
    scale = np.where(norms > 0.0, norms, 1.0)
    m, p = jac.shape
    # V must span all p directions; U (m, m) only when m < p, where it is small
    _, singular, vt = np.linalg.svd(jac / scale, full_matrices=m < p)
    eigenvalues = np.zeros(p)
    eigenvalues[:len(singular)] = singular ** 2
    order = np.argsort(eigenvalues, kind="stable")
    eigenvalues, vectors = eigenvalues[order], vt.T[:, order]
    largest = float(eigenvalues[-1]) if p else 0.0
    kept = eigenvalues > rcond * largest if largest > 0.0 else np.zeros(p, bool)
    return scale, eigenvalues, vectors, kept


def covariance(jac: np.ndarray, s2: float, rcond: float = RCOND):
    """(C (p, p), determined (p,) bool, eigenvalues, eigenvectors, dropped count): C = s² (JᵀJ)⁺
    in the parameters' units through the column-scaled pseudo-inverse (module docstring); rows
    and columns of undetermined parameters are nan."""
    scale, eigenvalues, vectors, kept = scaled_decomposition(jac, rcond)
    inverse = (vectors[:, kept] / eigenvalues[kept]) @ vectors[:, kept].T
    share = np.sum(vectors[:, ~kept] ** 2, axis=1)
    determined = share <= UNDETERMINED_SHARE
    c = s2 * inverse / np.outer(scale, scale)
    c[~determined, :] = np.nan
    c[:, ~determined] = np.nan
    return c, determined, eigenvalues, vectors, int(np.sum(~kept))


def correlation_matrix(cov: np.ndarray) -> np.ndarray:
    """C_ij / sqrt(C_ii C_jj) (p, p); nan where a variance is nan or not positive."""
    variance = np.diag(cov)
    sd = np.sqrt(np.where(variance > 0.0, variance, np.nan))
    out = cov / np.outer(sd, sd)
    np.fill_diagonal(out, np.where(np.isfinite(sd), 1.0, np.nan))
    return out


def contributors(jac: np.ndarray, item_names: Sequence[str], top: int = TOP_CONTRIBUTORS
                 ) -> list[list[tuple[str, float]]]:
    """Per parameter j, the ``top`` items i with the largest share J_ij² / (JᵀJ)_jj (the
    weighted residual's part of that parameter's Gauss-Newton curvature), largest first;
    items with no share are left out."""
    squares = np.asarray(jac, float) ** 2
    total = np.sum(squares, axis=0)
    out = []
    for j in range(squares.shape[1]):
        if not total[j] > 0.0:
            out.append([])
            continue
        share = squares[:, j] / total[j]
        best = np.argsort(-share, kind="stable")[:top]
        out.append([(str(item_names[i]), float(share[i])) for i in best if share[i] > 0.0])
    return out


def from_jacobian(jac: np.ndarray, r: np.ndarray, theta, labels: Sequence[str],
                  item_names: Sequence[str], rcond: float = RCOND) -> Sensitivity:
    """The ``Sensitivity`` of weighted residuals r (m,) with Jacobian J (m, p) at theta (p,);
    ValueError when r or J is not finite (naming the parameters whose column is not)."""
    jac, r = np.asarray(jac, float), np.asarray(r, float)
    m, p = jac.shape
    if len(labels) != p or len(item_names) != m or r.shape != (m,):
        raise ValueError(f"expected {p} labels and {m} item names and residuals; got "
                         f"{len(labels)}, {len(item_names)} and {r.shape}")
    bad = [labels[j] for j in range(p) if not np.all(np.isfinite(jac[:, j]))]
    if bad or not np.all(np.isfinite(r)):
        raise ValueError("the weighted residuals or their Jacobian are not finite"
                         + (f" (the derivatives by {', '.join(bad)})" if bad else ""))
    loss = float(r @ r)
    s2 = loss / (m - p) if m > p else math.nan
    unit, determined, eigenvalues, vectors, dropped = covariance(jac, 1.0, rcond)
    cov = s2 * unit  # the correlations do not depend on s² (defined also where m <= p)
    return Sensitivity(tuple(labels), np.asarray(theta, float), loss, m, s2, cov,
                       np.sqrt(np.diag(cov)), correlation_matrix(unit), determined, eigenvalues,
                       vectors, dropped, np.sum(jac ** 2, axis=0), contributors(jac, item_names))


def parameter_sensitivity(residuals: Callable, theta, labels: Sequence[str],
                          item_names: Sequence[str], chunk: int = CHUNK) -> Sensitivity:
    """The ``Sensitivity`` of ``residuals`` (theta (p,) -> weighted residuals (m,),
    JAX-traceable) at theta; labels name the parameters, item_names the residuals."""
    r, jac = jacobian(residuals, theta, chunk)
    return from_jacobian(jac, r, theta, labels, item_names)


# --------------------------------------------------------------------------------- output


def _float(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def directions(s: Sensitivity, count: int = DIRECTIONS, components: int = COMPONENTS
               ) -> list[dict]:
    """The ``count`` smallest eigenvalues of the scaled JᵀJ, each with its ``components``
    largest eigenvector components {parameter, component} (sign fixed: the largest positive)."""
    out = []
    for k in range(min(count, len(s.eigenvalues))):
        v = s.eigenvectors[:, k]
        v = v if v[np.argmax(np.abs(v))] >= 0.0 else -v
        lead = np.argsort(-np.abs(v), kind="stable")[:components]
        out.append({"eigenvalue": float(s.eigenvalues[k]),
                    "components": [{"parameter": s.labels[j], "component": float(v[j])}
                                   for j in lead]})
    return out


def to_json(s: Sensitivity, **extra) -> dict:
    """The ``sensitivity`` section (JSON types; None where not finite); ``extra`` keys first."""
    values = np.abs(s.theta)
    relative = np.where(values > 0.0, s.standard_errors / np.where(values > 0.0, values, 1.0),
                        np.nan)
    return {
        **extra,
        "units": "the parameters' own units, as in the ffield",
        "method": "Gauss-Newton: covariance s² (JᵀJ)⁺ of the training items' weighted "
                  "residuals, s² = loss / (items - parameters)",
        "items": s.items, "degrees_of_freedom": s.items - len(s.labels),
        "loss": _float(s.loss), "s2": _float(s.s2),
        "cutoff": {"relative_eigenvalue": RCOND, "of": "column-scaled JᵀJ (unit diagonal)",
                   "dropped": s.dropped},
        "parameters": [
            {"label": label, "value": float(s.theta[j]),
             "standard_error": _float(s.standard_errors[j]),
             "relative_error": _float(relative[j]), "determined": bool(s.determined[j]),
             "gauss_newton_diagonal": _float(s.diagonal[j]),
             "contributors": [{"item": item, "share": share}
                              for item, share in s.contributors[j]]}
            for j, label in enumerate(s.labels)],
        "correlation": [[_float(v) for v in row] for row in s.correlation],
        "directions": directions(s),
    }


def _g(value, digits: int = 4) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{value:.{digits}g}"


def table_rows(section: dict) -> list[list[str]]:
    """[parameter, value, standard error, relative error, top contributors] per parameter of a
    ``to_json`` section, as text ('undetermined' for undetermined parameters)."""
    rows = []
    for p in section.get("parameters", []):
        se = p.get("standard_error")
        if not p.get("determined", True):
            error, relative = "undetermined", "undetermined"
        else:
            error, relative = _g(se), ("n/a" if p.get("relative_error") is None
                                       else f"{100.0 * p['relative_error']:.3g}%")
        top = "; ".join(f"{c['item']} ({100.0 * c['share']:.0f}%)"
                        for c in p.get("contributors", []))
        rows.append([p["label"], f"{p['value']:.6g}", error, relative, top or "none"])
    return rows


TABLE_HEADER = ("parameter", "value", "standard error", "relative error",
                "largest contributors (share of (JᵀJ)_jj)")


def direction_lines(section: dict) -> list[str]:
    """One line per worst-determined direction: its eigenvalue and leading components."""
    return [f"eigenvalue {d['eigenvalue']:.3g}: "
            + ", ".join(f"{c['component']:+.2f} {c['parameter']}" for c in d["components"])
            for d in section.get("directions", [])]


def text_report(section: dict) -> str:
    """The section as plain text: the parameter table, then the worst-determined directions."""
    rows = [list(TABLE_HEADER)] + table_rows(section)
    widths = [max(len(r[k]) for r in rows) for k in range(len(TABLE_HEADER))]
    lines = ["  ".join(c.rjust(w) if 0 < k < 4 else c.ljust(w)
                       for k, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    dof = section.get("degrees_of_freedom")
    head = [f"parameter sensitivity: {section.get('items')} weighted residuals, "
            f"{len(section.get('parameters', []))} parameters, loss {_g(section.get('loss'), 6)}"
            f", s² = loss / {dof} = {_g(section.get('s2'), 6)}",
            f"standard errors in {section.get('units')}; pseudo-inverse cutoff "
            f"{section['cutoff']['relative_eigenvalue']:g} x the largest eigenvalue of the "
            f"column-scaled JᵀJ ({section['cutoff']['dropped']} dropped)", ""]
    tail = ["", "worst-determined directions (smallest eigenvalues of the column-scaled JᵀJ, "
            "components in units of each parameter's 1/sqrt((JᵀJ)_jj)):"]
    tail += ["  " + line for line in direction_lines(section)]
    return "\n".join(head + lines + tail) + "\n"
