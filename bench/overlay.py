"""
``make bench-overlay``: overlay mode's restart against its first start, 86 nova fixes (issue #16).

Uses the nova workload of ``bench/workloads.py`` and the kolla-entry of ``work/bench/venv`` (as
``run.py`` installs it). The target is a hard-linked copy of nova 31.0.0's site-packages with the
import hook installed; kolla-entry writes only the overlay folder.

- first start: ``apply-patches --overlay`` into an empty overlay folder (emptied before each run, untimed);
- restart: the same command with the overlay the previous run left (an unchanged image and patch set);
- in place: the same series applied to a fresh copy of the target, for comparison.

Prints a small table and how many served patched modules have bytecode Python uses (issue #13), and writes
``work/bench/overlay.json``. Goal: the restart costs <= 0.1x the first start.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench_run
import workloads as wl
from timing import Case, measure

GOAL = 0.1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    target, new_tree, patches, count, _stream = wl.build_nova(wl.WORK / "downloads")
    bin_dir = bench_run.install_venv()
    root = wl.WORK / "overlay-run"
    site = root / "site-packages"
    overlay = root / "overlay"
    bench_run.fresh_copy(target, site, [])
    wl.run_tool([str(bin_dir / "kolla-entry"), "install-overlay-hook", "--target", str(site)])
    command = [str(bin_dir / "kolla-entry"), "--log-format", "json", "apply-patches", "--patches",
               f"{patches}/*.patch", "--target", str(site), "--overlay", str(overlay),
               "--state-file", str(root / "state.json")]

    def empty() -> None:
        shutil.rmtree(overlay, ignore_errors=True)
        overlay.mkdir(parents=True)

    in_place_tree = root / "in-place"
    written = bench_run.patched_paths(patches)

    def fresh() -> None:
        bench_run.fresh_copy(target, in_place_tree, written)

    empty()
    first = Case("first start", command, env=bench_run.clean_env(), prepare=empty)
    again = Case("restart", command, env=bench_run.clean_env())
    # The same series applied in place in the same rounds: what overlay mode adds to a first start.
    in_place = Case("in place", [str(bin_dir / "kolla-entry"), "--log-format", "json", "apply-patches", "--patches",
                                 f"{patches}/*.patch", "--target", str(in_place_tree),
                                 "--state-file", str(root / "state-in-place.json")],
                    env=bench_run.clean_env(), prepare=fresh)
    samples = measure([first, again, in_place], args.runs, progress=lambda n: bench_run.note(f"  overlay {n}"))
    served = overlay / "current" / "site-packages"
    wrong = bench_run.differing_files(served, new_tree, bench_run.patched_paths(patches))
    # Issue #13 in overlay mode: the served modules whose pyc in the overlay Python would load.
    modules = [rel for rel in bench_run.patched_paths(patches) if rel.endswith(".py") and (served / rel).exists()]
    ready = sum(bench_run.usable_bytecode(served, rel) for rel in modules)
    first_ms = samples["first start"].summary()
    again_ms = samples["restart"].summary()
    ratio = again_ms["median_ms"] / first_ms["median_ms"]
    info = bench_run.machine()
    lines = [f"Machine: {info['nproc']} x {info['cpu']}, Python {info['python']}, Linux {info['kernel']}; "
             f"{args.runs} runs per row, {info['date']}.", "",
             "| Measure | Median ms | Min ms | Max ms | CPU ms | Peak RSS MiB | Ratio | Goal |",
             "|---|--:|--:|--:|--:|--:|---|---|"]
    place_ms = samples["in place"].summary()
    for name, summary in ((f"apply-patches --overlay, first start ({count} nova patches)", first_ms),
                          ("apply-patches --overlay, restart (overlay reused)", again_ms),
                          ("apply-patches in place, same series (for comparison)", place_ms)):
        if summary is first_ms:
            tail = "| reference | |"
        elif summary is again_ms:
            tail = f"| {ratio:.3f} x first start | <= {GOAL} {'met' if ratio <= GOAL else '**missed**'} |"
        else:
            tail = f"| first start {first_ms['median_ms'] / place_ms['median_ms']:.2f} x this | |"
        lines.append(f"| {name} | {summary['median_ms']:.1f} | {summary['min_ms']:.1f} | {summary['max_ms']:.1f} "
                     f"| {summary['cpu_median_ms']:.1f} | {bench_run.rss_text(summary)} {tail}")
    lines.append("")
    lines.append(f"Correctness: {len(wrong)} of {count} served files differ from nova {wl.NOVA_NEW}")
    lines.append(f"Import-ready: {ready} of {len(modules)} served patched modules have bytecode Python uses")
    print("\n".join(lines))
    (wl.WORK / "overlay.json").write_text(json.dumps(
        {"machine": info, "runs": args.runs, "first": first_ms, "restart": again_ms, "in_place": place_ms,
         "ratio": ratio,
         "differing": wrong, "import_ready": ready, "modules": len(modules)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
