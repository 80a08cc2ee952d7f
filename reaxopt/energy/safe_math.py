"""NaN-free elementary functions for masked ReaxFF terms (the double-``where`` trick).

Padded or switched-off entries feed harmless placeholder values into ``sqrt``/``pow``/``log``
so that neither the value nor the gradient of a masked entry can be NaN or infinite.
"""

from __future__ import annotations

import jax.numpy as jnp


def safe_sqrt(x):
    """sqrt(x) for x > 0, 0 elsewhere; gradient 0 where x <= 0."""
    ok = x > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def safe_pow(base, exponent, valid=None):
    """base**exponent where ``valid`` (default base > 0), 0 elsewhere; finite gradients."""
    ok = base > 0 if valid is None else valid & (base > 0)
    return jnp.where(ok, jnp.power(jnp.where(ok, base, 1.0), exponent), 0.0)


def safe_norm(v, axis=-1):
    """Euclidean norm along ``axis`` with a zero (not NaN) gradient at the zero vector."""
    return safe_sqrt(jnp.sum(v * v, axis=axis))
