"""Dry-run speed of the standard protocols on the simulator.

Runs each protocol with its defaults on the physics simulator at --speed max
through the same path as ``labctl run`` (engine, run file, analysis) and
reports cell time, wall time and acceleration (cell time / wall time).

    python bench/dryrun.py [--json] [--protocols eis,li_cu_ce] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from labctl.runner import prepare_run
from labctl.storage import open_run

SUITE = ("eis", "arrhenius", "transference", "lsv", "ccd", "li_cu_ce", "cycling")


def dry_run(protocol: str, out_dir: Path) -> dict[str, float | str]:
    prepared = prepare_run(protocol, params={}, instrument="sim", sim={}, speed="max", out_dir=out_dir)
    t0 = time.perf_counter()
    outcome = prepared.execute()
    wall = time.perf_counter() - t0
    with open_run(prepared.path) as run:
        steps = run.steps
        cell = max((s.t_start + s.duration for s in steps), default=0.0)
    return {
        "status": outcome.status.value,
        "cell_s": cell,
        "wall_s": wall,
        "acceleration": cell / wall if wall > 0 else float("inf"),
        "steps": len(steps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object keyed by protocol")
    parser.add_argument("--protocols", default=",".join(SUITE), help="comma-separated protocol names")
    parser.add_argument("--keep", type=Path, help="keep the run files in this folder")
    args = parser.parse_args(argv)
    names = [n for n in args.protocols.split(",") if n]
    report: dict[str, dict[str, float | str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or Path(tmp)
        for name in names:
            report[name] = dry_run(name, out_dir)
            if not args.json:
                r = report[name]
                print(
                    f"{name:14s} {r['status']:10s} cell {r['cell_s'] / 3600:8.2f} h  "
                    f"wall {r['wall_s']:6.2f} s  acceleration {r['acceleration']:10.0f}x",
                    file=sys.stderr if args.json else sys.stdout,
                )
    total_wall = sum(float(r["wall_s"]) for r in report.values())
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{'total':14s} {'':10s} {'':16s} wall {total_wall:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
