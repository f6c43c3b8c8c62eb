"""
Timing primitives shared by ``bench/run.py`` and the start-up probe.

A run is one child process: wall time from spawn to reap (``perf_counter``) and its peak RSS from
``wait4``'s resource usage (Linux reports ``ru_maxrss`` in KiB). Linux keeps a process's peak across
``exec``, and the child starts as a copy of this Python process (``subprocess`` spawns with vfork), so a
child smaller than the bench itself reports the bench's own peak: such a peak is only an upper bound
(``rss_upper_bound``) and the tables print it as ``<= N``. Cases are measured round-robin
(one run of each case per round) so that drift on a shared machine spreads over all of them, after
one untimed warm-up run each. A case's ``prepare`` (a fresh copy of the target) is never timed.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple


@dataclass
class Case:
    """One command to time."""

    name: str
    argv: List[str]
    cwd: Optional[Path] = None
    env: Optional[Dict[str, str]] = None
    stdin: Optional[Path] = None
    prepare: Optional[Callable[[], None]] = None
    expect_rc: int = 0


@dataclass
class Samples:
    """The runs of one case: wall seconds, CPU seconds (user + system) and peak RSS (KiB) per run."""

    seconds: List[float] = field(default_factory=list)
    rss_kib: List[int] = field(default_factory=list)
    cpu_seconds: List[float] = field(default_factory=list)
    launcher_rss_kib: int = 0

    def summary(self) -> Dict[str, float]:
        """Median, min and max wall milliseconds, the median CPU milliseconds, the largest peak RSS in MiB."""
        ms = [s * 1000.0 for s in self.seconds]
        cpu = statistics.median(self.cpu_seconds) * 1000.0 if self.cpu_seconds else float("nan")
        peak = max(self.rss_kib)
        return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "runs": len(ms),
                "cpu_median_ms": cpu, "peak_rss_mib": peak / 1024.0,
                "rss_upper_bound": peak <= self.launcher_rss_kib}


def run_once(case: Case) -> Tuple[float, int, float]:
    """
    Run one case and return (wall seconds, peak RSS in KiB, CPU seconds of the child and its children).

    Raises:
        RuntimeError: the command's exit code is not the expected one.
    """
    # stderr goes to a temporary file: a pipe read only after the exit could fill up and block the child.
    with tempfile.TemporaryFile() as err_file, \
            (open(case.stdin, "rb") if case.stdin else open(os.devnull, "rb")) as stdin:
        start = time.perf_counter()
        proc = subprocess.Popen(case.argv, cwd=case.cwd, env=case.env, stdin=stdin,
                                stdout=subprocess.DEVNULL, stderr=err_file)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err_file.seek(0)
        err = err_file.read()
    if proc.returncode != case.expect_rc:
        tail = err.decode(errors="replace")[-1500:]
        raise RuntimeError(f"{case.name}: exit {proc.returncode} (expected {case.expect_rc}): "
                           f"{' '.join(case.argv)}\n{tail}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def measure(cases: Sequence[Case], runs: int, progress: Optional[Callable[[str], None]] = None,
            ) -> Dict[str, Samples]:
    """
    Time every case ``runs`` times, round-robin, after one untimed warm-up run each.

    Args:
        cases: what to time; ``prepare`` runs before every run, untimed.
        runs: timed runs per case.
        progress: called with a short note after each round.

    Returns:
        The samples per case name.
    """
    results = {case.name: Samples() for case in cases}
    for round_index in range(runs + 1):
        for case in cases:
            if case.prepare:
                case.prepare()
            seconds, rss, cpu = run_once(case)
            if round_index > 0:
                results[case.name].seconds.append(seconds)
                results[case.name].rss_kib.append(rss)
                results[case.name].cpu_seconds.append(cpu)
                launcher = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                results[case.name].launcher_rss_kib = max(results[case.name].launcher_rss_kib, launcher)
        if progress:
            progress(f"round {round_index}/{runs}" + (" (warm-up)" if round_index == 0 else ""))
    return results
