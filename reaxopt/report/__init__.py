"""What a fit writes: the best force field, item reports, history and a JSON summary.

``write_outputs`` writes, each file atomically (a temporary file, then a rename), into the
output directory:

``ffield``       the best force field (the fitted values set into the starting file).
``report.csv``   every loss item of the training and validation data: set, kind, item,
                 reference, initial, fitted, error (fitted - reference), weight (trainset
                 weight; empty for structured inputs), scale (multiplier of the squared
                 residual), contribution (scale x residual^2 with the fitted force field; angle
                 residuals in radians), source. Units: kcal/mol, Å, e, kcal/mol/Å, degrees.
``report.txt``   the same as readable tables, with the parameters and the RMSEs per kind.
``history.csv``  one row per optimizer iteration and per outer-step end: trial, step,
                 iteration, event, loss, validation_loss, best_selection, elapsed_s.
``summary.json`` loss {initial, final}, validation_loss {initial, final}, training and
                 validation objects with ``rmse`` per item kind (energy, forces, charge,
                 geometry, cell, heatfo) {initial, fitted} (null where the set has no such
                 item; units as in report.csv, geometry and cell pooling their units) and
                 item counts, the fitted parameters, the best point, ``lowest_training``
                 (loss, validation_loss, trial, step, iteration of the lowest training loss
                 reached, when validation selected another; null otherwise), ``wall_seconds``
                 and ``compile_seconds`` (the first evaluation, compilation included), and
                 ``sensitivity`` (``reaxopt.report.sensitivity``: standard errors,
                 correlations, worst-determined directions and main items per parameter at the
                 best force field; null where it could not be computed).
``ffield_lowest_training``  that force field, only when it is not the selected one.
``config.yaml``  the resolved configuration.
``parity.png``, ``convergence.png``, ``scans.png``, ``sensitivity.png``, ``summary.md``  the
                 figures and the Markdown summary (RMSE/MAE per item kind and per family,
                 before and after; the sensitivity table), drawn by
                 ``reaxopt.report.plots`` and ``reaxopt.report.markdown``; ``reaxopt report DIR``
                 draws them again from the files above.
"""

from reaxopt.report.outputs import write_outputs

__all__ = ["write_outputs"]
