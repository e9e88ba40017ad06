"""The issue's Ctrl-C acceptance: N trials with ``--json -q`` and N without.

Each trial starts ``labctl run cycling --speed 2000`` in a fresh folder, waits
until the run file shows a started step, waits a random extra 0-1.5 s (seeded
RNG: the moment varies, correctness must not), sends SIGINT and checks: exit
code 130, printed status ``aborted``, the file opens with plain h5py, says
``aborted`` and has the ``safe`` event, the process is gone within 10 s.

    PYTHONPATH=$PWD python bench/ctrlc_trials.py [--trials 30] [--seed 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.signal_trial import TrialResult, run_trial

ACCEPTANCE_MODES = ("json-quiet", "plain")  # "--json -q" and without


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="trials per mode (default 30)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the random delays")
    parser.add_argument("--json", action="store_true", help="print the tally as JSON")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results: list[TrialResult] = []
    with tempfile.TemporaryDirectory(prefix="labctl-ctrlc-") as tmp:
        for mode in ACCEPTANCE_MODES:
            for k in range(args.trials):
                workdir = Path(tmp) / f"{mode}-{k}"
                workdir.mkdir()
                result = run_trial(workdir, mode, signal.SIGINT, float(rng.uniform(0.0, 1.5)))
                results.append(result)
                if not args.json:
                    mark = "ok  " if result.ok else "FAIL"
                    detail = "" if result.ok else f"  {'; '.join(result.problems)}"
                    print(
                        f"{mark} {mode:10s} #{k:02d} delay {result.delay:.2f} s, exit after "
                        f"{result.seconds_to_exit:.2f} s{detail}",
                        flush=True,
                    )
    tally = {
        mode: {
            "trials": sum(r.mode == mode for r in results),
            "ok": sum(r.mode == mode and r.ok for r in results),
            "max_seconds_to_exit": round(max((r.seconds_to_exit for r in results if r.mode == mode), default=0), 2),
        }
        for mode in ACCEPTANCE_MODES
    }
    if args.json:
        print(json.dumps({"tally": tally, "failures": [asdict(r) for r in results if not r.ok]}))
    else:
        for mode, row in tally.items():
            print(f"{mode:10s}: {row['ok']}/{row['trials']} correct, slowest exit {row['max_seconds_to_exit']} s")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
