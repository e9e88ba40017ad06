"""Crafted run files against ``labctl show`` and ``labctl analyze``.

Builds hostile variants of real run files (tests/runfile_fuzz.py) and
checks: no traceback, exit code 0/1/2, no read of files outside the given
one (canary token in the output, or a canary file's access time moving),
each run under 20 s, subprocess runs under 1 GB peak RSS.

    python bench/fuzz_runfiles.py [--n 2000] [--seed 1] [--subprocess-every 50] [--json]

Exit code 1 if any run broke a rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.runfile_fuzz import build_corpus, fuzz, make_canaries


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="hostile cases (each run 3 ways in-process)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--subprocess-every", type=int, default=50, help="also run every N-th case as a real subprocess")
    ap.add_argument("--json", action="store_true", help="print the tally as one JSON object")
    ap.add_argument("--verbose", action="store_true", help="print every failing run as it happens")
    args = ap.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="labctl-fuzz-") as tmp:
        root = Path(tmp)
        bases = build_corpus(root / "corpus")
        canaries = make_canaries(root / "canary")

        def report(outcome):
            if args.verbose and not outcome.ok:
                print("FAIL", outcome.line(), file=sys.stderr)

        tally = fuzz(bases, canaries, root / "cases", args.n, args.seed, args.subprocess_every, report)
    summary = tally.as_dict()
    summary["seed"] = args.seed
    summary["wall_seconds"] = round(time.monotonic() - t0, 1)
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            if key != "failures":
                print(f"{key:24s} {value}")
        for line in summary["failures"]:
            print("FAIL", line)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
