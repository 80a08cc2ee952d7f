"""Statistics over seeds: N whole fits per set, each its own ``reaxopt fit`` process, against
``ffield_best`` evaluated the same way (zero optimizer steps, same settings).

Each fit is configs/<name>.yaml (published files from ../shared/datasets) from ``--start``
(``ffield_lit`` or ``ffield_edu``) with ``optimizer.seed`` set to each seed and the ``--set``
overrides (dotted keys, YAML values: ``--set optimizer.init=educated search.method=cma``).
With every setting at its default the seed changes nothing; a seed matters where the run draws
(``optimizer.init`` educated or random, ``random_search``, the global stage ``search``).

Per set it records every run (final training loss of the selected force field, relaxed from
the input geometries as ``ffield_best``'s is; validation loss; evaluations; wall and compile
seconds; peak RSS) and the best, median and worst of the final loss, evaluations and wall time,
each loss also as a ratio to ``ffield_best``'s.

    python benchmarks/bench_seeds.py --names cobalt --seeds 0 1 2 3 [--start ffield_edu]
        [--set optimizer.init=educated] [--work /tmp/reaxopt_bench_seeds]
        [--out benchmarks/results/seeds.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit import ROOT, parse_run, run_config, run_fit_process  # noqa: E402

STATISTICS = ("loss_final", "evaluations", "wall_seconds")


def overrides(pairs: list[str]) -> dict:
    """{'optimizer.init': 'educated', ...} from 'key=value' words (values read as YAML)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def apply(config_path: Path, settings: dict) -> None:
    """Set dotted ``settings`` in the YAML config at ``config_path``, in place."""
    config = yaml.safe_load(config_path.read_text())
    for dotted, value in settings.items():
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def one_run(name: str, force_field: str, steps: int | None, settings: dict, label: str,
            args) -> dict:
    """Run one fit (its own process) and return its parsed numbers and process figures."""
    out_dir = args.work / f"{name}_{label}"
    config = run_config(name, force_field, steps, argparse.Namespace(clusters="auto"), out_dir)
    apply(config, settings)
    print(f"{name} {label}: reaxopt fit {config}", flush=True)
    process = run_fit_process(config, args.work / f"{name}_{label}.log", None)
    if process["returncode"] != 0:
        raise RuntimeError(f"{name} {label} failed ({process['returncode']}): see "
                           f"{args.work / f'{name}_{label}.log'}")
    return {"settings": settings, **process, **parse_run(out_dir)}


def summarize(runs: list[dict], reference: float | None) -> dict:
    """Best, median and worst of STATISTICS over ``runs``, losses also over ``reference``."""
    out = {}
    for key in STATISTICS:
        values = np.array([r[key] for r in runs if r.get(key) is not None], float)
        if not len(values):
            continue
        out[key] = {"best": float(values.min()), "median": float(np.median(values)),
                    "worst": float(values.max())}
        if key == "loss_final" and reference:
            out["loss_final_over_ffield_best"] = {k: v / reference
                                                  for k, v in out[key].items()}
    out["below_ffield_best"] = (sum(r["loss_final"] < reference for r in runs)
                                if reference else None)
    return out


def bench_set(name: str, args, settings: dict) -> dict:
    """The reference and every seed's fit of one set."""
    reference = one_run(name, "ffield_best", 0, {}, "reference", args)
    runs = []
    for seed in args.seeds:
        runs.append({"seed": seed, **one_run(name, args.start, None,
                                              {**settings, "optimizer.seed": seed},
                                              f"seed{seed}", args)})
        print(f"{name} seed {seed}: loss {runs[-1]['loss_final']:.6g} "
              f"({runs[-1]['wall_seconds']:.0f} s)", flush=True)
    return {"start": args.start, "overrides": settings, "reference": reference, "runs": runs,
            "statistics": summarize(runs, reference["loss_final"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", nargs="+", default=["cobalt"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--start", default="ffield_lit", choices=["ffield_lit", "ffield_edu"])
    parser.add_argument("--set", nargs="*", default=[], dest="settings")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir())
                        / "reaxopt_bench_seeds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results"
                        / "seeds.json")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    settings = overrides(args.settings)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                                   cwd=ROOT, capture_output=True,
                                                   text=True).stdout.strip()}
    for name in args.names:
        key = f"{name}_from_{args.start}" + "".join(f"_{k}={v}" for k, v in settings.items())
        results[key] = bench_set(name, args, settings)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"{key}: {json.dumps(results[key]['statistics'])}", flush=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
