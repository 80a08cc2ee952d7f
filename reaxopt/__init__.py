"""reaxopt: fit ReaxFF reactive force fields with exact JAX gradients."""

import jax as _jax

# ReaxFF energies are differences of large numbers: float64 throughout.
_jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
