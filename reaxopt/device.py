"""Host data onto the device without compiling anything.

``jnp.asarray`` of a numpy array compiles a small staging executable for every new shape and
dtype; ``jax.device_put`` copies it as it is. Structures of many sizes (list rebuilds,
re-packing) would otherwise add executables in proportion to their number.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def on_device(tree):
    """``tree`` with its numpy arrays put on the default device (same shapes and dtypes);
    other leaves (device arrays, Python numbers) through ``jnp.asarray``."""
    return jax.tree_util.tree_map(
        lambda a: jax.device_put(a) if isinstance(a, np.ndarray) else jnp.asarray(a), tree)
