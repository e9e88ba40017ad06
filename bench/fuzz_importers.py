"""Fuzz the impedance importers with mutated sample files, and check huge files are refused unread.

    python bench/fuzz_importers.py [--n 2000] [--seed 1] [--analyze] [--json]

Mutations of the shared reference files of every format (tests/importer_fuzz.py: numbers
pushed to 1e-320, 1e308, inf, nan, negative or huge exponents; lines deleted, duplicated,
shuffled; truncation; flipped bytes; changed headers; zeros or junk appended; fake
signatures; UTF-16, CR line endings, invalid UTF-8), each imported in this process. Reported:
cases per format, outcomes (accepted with physically valid points / refused with a one-line
SpectrumFileError / anything else), exceptions by type (must be 0 other than
SpectrumFileError), warnings, the slowest case and the peak RSS.

``--analyze`` also runs the conductivity analysis of ``labctl analyze`` on every accepted
spectrum and counts exceptions other than ValueError and warnings there.

Large files: a 2 GiB sparse file (``truncate -s 2G``) under each format's extension and a
valid .DTA followed by 2 GiB of zeros must be refused from ``stat``: the time and the bytes
the process read meanwhile (``rchar`` in /proc/self/io) are reported.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labctl.importers import SpectrumFileError, load_spectrum
from tests.conftest import REFERENCE_DATA
from tests.importer_fuzz import Outcome, generate, load_samples, run_case

GIB = 1 << 30


def _bytes_read() -> int | None:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def huge_file_checks(directory: Path) -> list[dict[str, Any]]:
    """Each huge file must be refused with a SpectrumFileError about its size, unread."""
    dta = (REFERENCE_DATA / "impedance_py" / "exampleDataGamry.DTA").read_bytes()
    files: list[tuple[str, Path]] = []
    for suffix in (".z", ".mpt", ".mpr", ".DTA", ".csv", ".txt"):
        sparse = directory / f"sparse_2G{suffix}"
        with sparse.open("wb") as fh:
            fh.truncate(2 * GIB)
        files.append((f"2 GiB sparse file{suffix}", sparse))
    zeros = directory / "valid_then_2G_zeros.DTA"
    with zeros.open("wb") as fh:
        fh.write(dta)
        fh.truncate(len(dta) + 2 * GIB)
    files.append(("valid .DTA + 2 GiB of zeros", zeros))
    probe_a, probe_b = _bytes_read(), _bytes_read()
    probe = 0 if probe_a is None or probe_b is None else probe_b - probe_a  # reading /proc/self/io itself
    results = []
    for label, path in files:
        before, start = _bytes_read(), time.perf_counter()
        try:
            load_spectrum(path)
            outcome = "ACCEPTED"
        except SpectrumFileError as exc:
            outcome = f"refused: {exc.field}: {exc.reason}"
        except Exception as exc:  # the finding this check exists for
            outcome = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        after = _bytes_read()
        read = None if before is None or after is None else after - before - probe
        results.append({"file": label, "outcome": outcome, "seconds": seconds, "bytes_read": read,
                        "ok": outcome.startswith("refused: size")})
        path.unlink()
    return results


def analyze_accepted(cases: list[Any], outcomes: list[Outcome], directory: Path) -> dict[str, Any]:
    """The conductivity analysis on every accepted spectrum: exceptions other than ValueError."""
    from labctl.analysis.eis_conductivity import conductivity_from_spectrum

    kinds: collections.Counter[str] = collections.Counter()
    warned: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    slowest = 0.0
    for i, (case, outcome) in enumerate(zip(cases, outcomes, strict=True)):
        if outcome.kind != "accepted":
            continue
        path = directory / f"analyze{i:05d}{case.suffix}"
        path.write_bytes(case.data)
        spectrum = load_spectrum(path)
        path.unlink()
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                conductivity_from_spectrum(spectrum.freq, spectrum.z, thickness_um=1000.0, area_cm2=1.0)
                kinds["result"] += 1
            except ValueError:
                kinds["ValueError"] += 1
            except Exception as exc:  # the finding
                kinds[type(exc).__name__] += 1
                examples.setdefault(type(exc).__name__, f"{case.fmt} {case.mutations}: {exc}"[:200])
        slowest = max(slowest, time.perf_counter() - start)
        for w in caught:
            warned[w.category.__name__] += 1
    return {"outcomes": dict(kinds), "warnings": dict(warned), "examples": examples, "max_seconds": slowest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="number of fuzz cases (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--analyze", action="store_true", help="also analyse every accepted spectrum")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    cases = generate(load_samples(REFERENCE_DATA), args.n, args.seed)
    per_format: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    exceptions: collections.Counter[str] = collections.Counter()
    findings: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz_importers_") as tmp:
        directory = Path(tmp)
        for i, case in enumerate(cases):
            outcome = run_case(case, directory, i)
            outcomes.append(outcome)
            per_format[case.fmt][outcome.kind] += 1
            if outcome.kind not in ("accepted", "refused"):
                exceptions[outcome.kind] += 1
            if not outcome.ok and len(findings) < 20:
                findings.append({"format": case.fmt, "sample": case.sample, "mutations": case.mutations,
                                 "kind": outcome.kind, "detail": outcome.detail, "warnings": outcome.warnings})
        total_seconds = time.perf_counter() - start
        slowest = max(outcomes, key=lambda o: o.seconds)
        analysis = analyze_accepted(cases, outcomes, directory) if args.analyze else None
        huge = huge_file_checks(directory)
    report = {
        "cases": len(cases),
        "seed": args.seed,
        "per_format": {fmt: dict(c) for fmt, c in sorted(per_format.items())},
        "non_SpectrumFileError_exceptions": dict(exceptions),
        "cases_with_warnings": sum(1 for o in outcomes if o.warnings),
        "max_case_seconds": slowest.seconds,
        "slowest_case": f"{slowest.case.fmt} {slowest.case.mutations} ({len(slowest.case.data)} bytes)",
        "total_seconds": total_seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "findings": findings,
        "huge_files": huge,
    }
    if analysis is not None:
        report["analysis_of_accepted"] = analysis
    ok = not exceptions and not report["cases_with_warnings"] and all(h["ok"] for h in huge)
    report["ok"] = ok
    if args.json:
        print(json.dumps(report))
        return 0 if ok else 1
    print(f"{len(cases)} cases (seed {args.seed}) in {total_seconds:.1f} s; slowest {slowest.seconds * 1e3:.1f} ms "
          f"({report['slowest_case']}); peak RSS {report['peak_rss_mb']:.0f} MB")
    print(f"{'format':14s} {'cases':>6s} {'accepted':>9s} {'refused':>8s} {'other':>6s}")
    for fmt, counts in sorted(per_format.items()):
        other = sum(v for k, v in counts.items() if k not in ("accepted", "refused"))
        print(f"{fmt:14s} {sum(counts.values()):6d} {counts['accepted']:9d} {counts['refused']:8d} {other:6d}")
    print(f"exceptions other than SpectrumFileError: {dict(exceptions) or 0}; "
          f"cases with warnings: {report['cases_with_warnings']}")
    for f in findings:
        print(f"  FINDING {f['format']} {f['mutations']}: {f['kind']}: {f['detail'][:160]} {f['warnings'][:1]}")
    if analysis is not None:
        print(f"analysis of accepted spectra: {analysis['outcomes']}, warnings {analysis['warnings'] or 0}, "
              f"slowest {analysis['max_seconds'] * 1e3:.0f} ms")
        for name, text in analysis["examples"].items():
            print(f"  ANALYSIS {name}: {text}")
    for h in huge:
        read = "?" if h["bytes_read"] is None else f"{h['bytes_read']} bytes read"
        print(f"{h['file']:32s} {h['seconds'] * 1e3:7.2f} ms, {read}: {h['outcome']}")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
