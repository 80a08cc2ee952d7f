"""NaN-free elementary functions for masked ReaxFF terms.

Padded or switched-off entries feed harmless placeholder values into ``sqrt``/``pow``/``log``
(the double-``where`` trick), and ReaxFF's ratios of exponentials are computed in forms that
cannot overflow, so that neither the value nor the gradient of any entry, masked or not, can be
NaN or infinite for parameters anywhere within a fit's bounds (an overflowing exp in a masked
entry still poisons the gradient through ``where``).
"""

from __future__ import annotations

import jax
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


def logistic(x):
    """1 / (1 + exp(-x)) without overflow in value or gradient (ReaxFF's 1 / (1 + exp(...))
    factors: 1 / (1 + exp(y)) is logistic(-y))."""
    return jax.nn.sigmoid(x)


def logistic_scaled(x, scale):
    """1 / (1 + scale exp(x)) for scale >= 0, without overflow (1 where scale is 0)."""
    positive = scale > 0
    return jnp.where(positive,
                     jax.nn.sigmoid(-(x + jnp.log(jnp.where(positive, scale, 1.0)))), 1.0)


def two_plus_ratio(a, b):
    """(2 + exp(a)) / (1 + exp(a) + exp(b)) without overflow (ReaxFF's f8, f9 and f11 forms).

    Numerator and denominator are divided by exp(m), m = max(a, b, 0); the ratio does not
    depend on m, so m carries no gradient."""
    m = jax.lax.stop_gradient(jnp.maximum(jnp.maximum(a, b), 0.0))
    return ((2.0 * jnp.exp(-m) + jnp.exp(a - m))
            / (jnp.exp(-m) + jnp.exp(a - m) + jnp.exp(b - m)))
