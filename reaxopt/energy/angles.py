"""Angle geometry shared by the valence, torsion and hydrogen-bond terms."""

from __future__ import annotations

import jax
import jax.numpy as jnp

MIN_SIN_THETA = 1.0e-5  # LAMMPS floors sin(theta) here in the valence-angle forces


@jax.custom_jvp
def lammps_acos(c):
    """acos of a cosine already clipped to [-1, 1]; derivative -1 / max(sin, 1e-5) as LAMMPS."""
    return jnp.arccos(c)


@lammps_acos.defjvp
def _lammps_acos_jvp(primals, tangents):
    (c,), (dc,) = primals, tangents
    sin = jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0))
    return jnp.arccos(c), -dc / jnp.maximum(sin, MIN_SIN_THETA)


def end_vectors(disp, r, pair, sign):
    """Vectors from a centre atom along its bond ends (pair, sign): sign * disp[pair], length."""
    return sign[:, None] * disp[pair], r[pair]


def end_atoms(pairs, pair, sign):
    """The atom at the far end of each bond end."""
    return jnp.where(sign > 0, pairs.j[pair], pairs.i[pair])


def cos_angle(v1, r1, v2, r2, valid):
    """cos of the angle between v1 and v2, clipped to [-1, 1] as LAMMPS does (1 where invalid)."""
    den = jnp.where(valid, r1 * r2, 1.0)
    c = jnp.sum(v1 * v2, axis=-1) / den
    return jnp.where(valid, jnp.clip(c, -1.0, 1.0), 1.0)
