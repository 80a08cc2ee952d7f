"""Which compiled kernels a fit's loss + gradient spends its time in, and which source lines
they come from: for finding what makes an accelerator slow.

One published set (../shared/datasets/<name>, packed as the fit evaluates it): compile, time
--repeats steady evaluations, then trace one with ``jax.profiler`` and rank the device's
kernels by time. Each of the --top kernels is printed with its launch shape and, from XLA's
dump of the optimised modules, the fused computation it runs (its lines carry the source file
and line of every operation). Writes the ranking to --out as JSON.

    python benchmarks/profile_kernels.py cobalt [--repeats 2] [--top 8] [--out kernels.json]

Only device planes are ranked: on a CPU-only machine the trace holds no kernels and the script
says so after timing.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

DUMP = tempfile.mkdtemp(prefix="xla_dump_")
# before jax is imported: XLA reads its flags once
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={DUMP}"
                           " --xla_dump_hlo_as_text").strip()

from bench_batches import fit_case, steady_seconds  # noqa: E402  (beside this script)
from bench_performance import backend  # noqa: E402


def kernel_ranking(xplane: Path) -> list[dict]:
    """Device kernels of a trace, summed by name, longest first."""
    from jax.profiler import ProfileData

    totals: dict[str, dict] = {}
    for plane in ProfileData.from_file(str(xplane)).planes:
        if not plane.name.startswith("/device:"):
            continue
        for line in plane.lines:
            for event in line.events:
                stats = dict(event.stats)
                row = totals.setdefault(event.name, {
                    "kernel": event.name, "seconds": 0.0, "launches": 0,
                    "module": stats.get("hlo_module"), "shape": stats.get("kernel_details")})
                row["seconds"] += event.duration_ns * 1e-9
                row["launches"] += 1
    return sorted(totals.values(), key=lambda row: -row["seconds"])


def fused_computation(module: str | None, kernel: str) -> str:
    """The optimised HLO of ``kernel`` (a fusion's called computation) in the dumped ``module``."""
    if not module:
        return ""
    for path in sorted(glob.glob(os.path.join(DUMP, f"*{module}*after_optimizations.txt"))):
        text = Path(path).read_text()
        call = re.search(rf"^\s*%?{re.escape(kernel)} = .*?calls=%?([\w.\-]+)", text, re.M)
        if call is None:
            continue
        body = re.search(rf"^%?{re.escape(call.group(1))} .*?\{{\n(.*?)^\}}", text,
                         re.M | re.S)
        return (call.group(0).strip() + "\n" + (body.group(1) if body else "")).rstrip()
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="a set in ../shared/datasets (cobalt, disulfide)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import jax
    import numpy as np

    import reaxopt  # noqa: F401  (float64)

    where = backend()
    print(f"{args.name} on {where['backend']} ({where['device']}), jax {where['jax']}",
          flush=True)
    start = time.perf_counter()
    _, run, theta0, tmap = fit_case(args.name, "auto", packed=True)
    print(f"built in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    run(theta0)
    print(f"first evaluation (compile) {time.perf_counter() - start:.1f} s", flush=True)
    steady, _ = steady_seconds(run, theta0, tmap, args.repeats)
    print(f"steady loss + gradient {steady:.4f} s", flush=True)

    trace_dir = tempfile.mkdtemp(prefix="trace_")
    with jax.profiler.trace(trace_dir):
        run(np.asarray(theta0))
    xplanes = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    ranking = kernel_ranking(Path(xplanes[0])) if xplanes else []
    if not ranking:
        print("the trace holds no device kernels (a CPU-only machine): nothing to rank")
        return 0
    total = sum(row["seconds"] for row in ranking)
    print(f"{len(ranking)} kernels, {total:.4f} s on the device in the traced evaluation")
    for row in ranking[:args.top]:
        print(f"\n{row['seconds']:9.4f} s {100 * row['seconds'] / total:5.1f} % "
              f"{row['launches']:4d}x {row['kernel']}  [{row['module']}] {row['shape']}")
        print(fused_computation(row["module"], row["kernel"]) or "  (fusion not found in dump)")
    if args.out is not None:
        args.out.write_text(json.dumps({"name": args.name, "steady_s": steady,
                                        "device_seconds": total, "kernels": ranking},
                                       indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
