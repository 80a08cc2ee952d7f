"""One geometry with its metadata and reference data (host side, plain numpy).

Units: positions and cell in Å, energies in kcal/mol, forces in kcal/mol/Å, charges in e.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Restraint:
    """A BGF restraint line (BOND/ANGLE/TORSION RESTRAINT): atoms are 0-based indices.

    target: Å for bonds, degrees for angles and torsions; force1/force2 as written in the file.
    """

    kind: str  # "bond", "angle", "torsion"
    atoms: tuple[int, ...]
    target: float
    force1: float
    force2: float
    rate: float = 0.0
    line: int | None = None


@dataclass
class Structure:
    """A named geometry.

    symbols: element symbols (N,); positions: (N, 3) Å; cell: (3, 3) row vectors in Å or None
    for a molecule; total_charge: e; run_type: 'single_point', 'minimize' or 'cell_opt';
    max_iterations: minimisation step limit from the input (None: the config decides).
    energy/forces/charges: reference data from the file when present (kcal/mol, kcal/mol/Å, e).
    """

    name: str
    symbols: list[str]
    positions: np.ndarray
    cell: np.ndarray | None = None
    total_charge: float = 0.0
    run_type: str = "single_point"
    max_iterations: int | None = None
    restraints: list[Restraint] = field(default_factory=list)
    energy: float | None = None
    forces: np.ndarray | None = None
    charges: np.ndarray | None = None
    source: str | None = None  # file the structure came from
    line: int | None = None  # line of its first record in that file
    extra: dict = field(default_factory=dict)  # keywords kept verbatim (e.g. unknown BGF lines)

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def periodic(self) -> bool:
        return self.cell is not None
