"""Internal coordinates of atom positions, jittable and safe to differentiate everywhere.

Bond lengths (Å), valence angles and torsion angles (radians) from bond vectors, with
minimum-image vectors in periodic cells. Used by the loss's GEOMETRY items and by the BGF
restraints of minimisations. Degenerate configurations (zero or collinear vectors), where an
angle is undefined, give finite values and zero gradients instead of NaN.
"""

from __future__ import annotations

import jax.numpy as jnp

from reaxopt.energy.safe_math import safe_norm


def minimum_image(d, cell):
    """Minimum-image vectors d (..., 3) Å in the row-vector cell (3, 3) (zeros: a molecule,
    d unchanged)."""
    periodic = jnp.abs(jnp.linalg.det(cell)) > 1e-12
    safe = jnp.where(periodic, cell, jnp.eye(3))
    frac = d @ jnp.linalg.inv(safe)
    wrapped = (frac - jnp.round(frac)) @ safe
    return jnp.where(periodic, wrapped, d)


def safe_arctan2(y, x):
    """arctan2 with a zero (not NaN) gradient at y = x = 0, where the angle is undefined."""
    ok = x * x + y * y > 0
    return jnp.where(ok, jnp.arctan2(jnp.where(ok, y, 0.0), jnp.where(ok, x, 1.0)), 0.0)


def angle_between(u, v):
    """Angle (radians) between vectors u, v (..., 3), via atan2 (stable near 0 and pi; finite
    gradients at exactly 0 and pi, where the angle has a kink)."""
    return safe_arctan2(safe_norm(jnp.cross(u, v)), jnp.sum(u * v, axis=-1))


def dihedral(b0, b1, b2):
    """Torsion angle (radians, in (-pi, pi]) of the bond vectors b0 = 2-1, b1 = 3-2, b2 = 4-3.

    IUPAC sign convention (as ReaxFF training sets use it): positive when, looking along the
    central bond from atom 2 to atom 3, the bond to atom 1 turns clockwise onto the bond to 4.
    """
    n1 = jnp.cross(b0, b1)
    n2 = jnp.cross(b1, b2)
    y = jnp.linalg.norm(b1, axis=-1) * jnp.sum(b0 * n2, axis=-1)
    return safe_arctan2(y, jnp.sum(n1 * n2, axis=-1))


def bond_angle_torsion(p0, p1, p2, p3, cell):
    """(bond 0-1 (Å), angle 0-1-2, torsion 0-1-2-3 (radians)) of the positions p0..p3
    (..., 3) Å, vectors taken as minimum images in ``cell`` (..., 3, 3); each is only meaningful
    when the atoms it names are distinct (repeated atoms give finite values, zero gradients)."""
    image = jnp.vectorize(minimum_image, signature="(3),(3,3)->(3)")
    d01, d12, d23 = image(p1 - p0, cell), image(p2 - p1, cell), image(p3 - p2, cell)
    # zero vectors (a repeated atom) would give NaN gradients in the branches that do not use
    # them
    safe = lambda d: jnp.where(jnp.sum(d * d, -1, keepdims=True) > 1e-20, d,  # noqa: E731
                               jnp.array([1.0, 0.0, 0.0]))
    d01, d12, d23 = safe(d01), safe(d12), safe(d23)
    return jnp.linalg.norm(d01, axis=-1), angle_between(-d01, d12), dihedral(d01, d12, d23)


def wrapped_angle(delta):
    """An angle difference (radians) wrapped into [-pi, pi)."""
    return jnp.mod(delta + jnp.pi, 2.0 * jnp.pi) - jnp.pi
