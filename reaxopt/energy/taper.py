"""The 7th-order taper that switches ReaxFF's nonbonded terms off between swa and swb (Å).

Tap(r) = sum_k c_k r^k, with Tap(swa) = 1, Tap(swb) = 0 and vanishing first three derivatives at
both ends; the coefficients and the Horner evaluation order are those of LAMMPS.
"""

from __future__ import annotations

import jax.numpy as jnp


def taper_coefficients(swa, swb):
    """(8,) coefficients c_0 .. c_7 of the taper polynomial for radii swa < swb (Å)."""
    d7 = (swb - swa) ** 7
    a2, a3 = swa * swa, swa * swa * swa
    b2, b3 = swb * swb, swb * swb * swb
    return jnp.stack([
        (-35.0 * a3 * b2 * b2 + 21.0 * a2 * b3 * b2 - 7.0 * swa * b3 * b3 + b3 * b3 * swb) / d7,
        140.0 * a3 * b3 / d7,
        -210.0 * (a3 * b2 + a2 * b3) / d7,
        140.0 * (a3 * swb + 3.0 * a2 * b2 + swa * b3) / d7,
        -35.0 * (a3 + 9.0 * a2 * swb + 9.0 * swa * b2 + b3) / d7,
        84.0 * (a2 + 3.0 * swa * swb + b2) / d7,
        -70.0 * (swa + swb) / d7,
        20.0 / d7,
    ])


def taper(r, coefficients):
    """Tap(r) by Horner's rule from c_7 down, as LAMMPS evaluates it."""
    value = coefficients[7] * r + coefficients[6]
    for k in (5, 4, 3, 2, 1, 0):
        value = value * r + coefficients[k]
    return value
