"""
``make bench``: kolla-entry against the tools operators would use instead (issue #7).

Builds the workloads (``bench/workloads.py``), installs kolla-entry as shipped (not editable) into
``work/bench/venv``, then measures, in one run:

1. start-up: ``kolla-entry run`` with a five-file config.json and no patches, up to the exec of
   ``/bin/true``, against Kolla's ``kolla_set_configs`` (both in a private mount namespace, same python);
2. patching: ``kolla-entry apply-patches`` of the real nova patches against (a) the seed's loop,
   (b) GNU ``patch -p1`` fed one stream, (c) one ``git apply``, each followed by
   ``python -m compileall -j0`` of the changed modules, so that every tool ends with an import-ready
   tree (issue #13); each run on a fresh copy of the target, and a count of the changed modules
   with bytecode Python would use after each tool;
3. scaling: ``check-patches`` on the 10x site-packages against the 1x one, and a synthetic series of
   1, 10, 100 and 1000 patches against patch bytes;
4. memory: the peak RSS of the apply against that of ``compile()`` of the largest patched module alone.

Prints one table (median, min, max, peak RSS, ratio per row) and writes a JSON copy to
``work/bench/results.json`` (and the table to ``work/bench/results.md``). No assertion: goals missed
are shown, not raised.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl
from timing import Case, Samples, measure, run_once

VENV = wl.WORK / "venv"
RUN_DIR = wl.WORK / "run"
STARTUP_GOAL = 0.8
PATCH_GOAL = 0.6  # x the fastest "tool + compileall" reference (issue #13)
SCALE_GOAL = 1.1
RSS_GOAL = 1.25  # x the peak RSS of compile() of the largest patched module alone
# A start takes ~0.1 s: three times the runs cost little and steady the medians on a busy machine.
STARTUP_RUNS_FACTOR = 3
FLOOR = "floor: compile() of the patched modules in forked workers, nothing else"


def note(text: str) -> None:
    """Progress on stderr (stdout holds the table)."""
    print(text, file=sys.stderr, flush=True)


def clean_env(**extra: str) -> Dict[str, str]:
    """A small fixed environment: nothing of the caller's shell (no KOLLA_*) leaks into a measurement."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(wl.WORK), **extra}


def install_venv() -> Path:
    """
    Install kolla-entry from this checkout into ``work/bench/venv``, as an image would (not editable).

    Returns:
        The venv's bin folder.
    """
    python = VENV / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not python.exists():
        wl.run_tool([sys.executable, "-m", "venv", str(VENV)])
        wl.run_tool([*pip, str(wl.ROOT)])
    else:
        # The code changes between runs; the dependencies do not.
        wl.run_tool([*pip, "--no-deps", "--force-reinstall", str(wl.ROOT)])
    return VENV / "bin"


def fresh_copy(source: Path, dest: Path, written: Sequence[str]) -> None:
    """
    Make ``dest`` a fresh copy of ``source`` for one run (never timed).

    The files a run may write (``written``) are real copies, flushed to disk; every other file is a
    hard link, as only these paths are ever opened for writing. It keeps a round cheap and leaves
    the page cache in the same state for every tool.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(source), str(dest)], check=True)
    for rel in written:
        if (source / rel).exists():
            (dest / rel).unlink()
            shutil.copy2(source / rel, dest / rel)
            fd = os.open(dest / rel, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def patched_paths(patches: Path) -> List[str]:
    """The files the nova patches touch (from their ``+++ b/`` lines, or ``--- a/`` for deletions)."""
    paths = []
    for patch in sorted(patches.glob("*.patch")):
        for line in patch.read_text(encoding="utf-8").splitlines():
            if line.startswith("diff --git a/"):
                paths.append(line.split(" b/", 1)[1])
                break
    return paths


def differing_files(tree: Path, expected: Path, paths: Sequence[str]) -> List[str]:
    """The paths whose content in ``tree`` is not the one in ``expected`` (absent counts as a content)."""
    def content(root: Path, rel: str) -> Optional[bytes]:
        return (root / rel).read_bytes() if (root / rel).exists() else None

    return [rel for rel in paths if content(tree, rel) != content(expected, rel)]


# --------------------------------------------------------------------------------------------- start-up

def startup(work: wl.Workloads, bin_dir: Path, runs: int) -> Optional[Dict[str, Samples]]:
    """Run the start-up probe in a private mount namespace; None when this machine cannot (not root)."""
    scratch = wl.WORK / "ns"
    if scratch.exists():
        shutil.rmtree(scratch)
    argv = ["unshare", "-m", "--propagation", "private", str(bin_dir / "python"),
            str(Path(__file__).resolve().parent / "startup_probe.py"), "--runs", str(runs),
            "--scratch", str(scratch), "--config-dir", str(work.startup),
            "--set-configs", str(work.kolla_set_configs), "--kolla-entry", str(bin_dir / "kolla-entry"),
            "--python", str(bin_dir / "python"), "--target", str(work.target)]
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        note("start-up: skipped, the private mount namespace needs root and unshare")
        return None
    done = subprocess.run(argv, check=False, stdout=subprocess.PIPE, text=True)
    shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"the start-up probe failed ({done.returncode})")
    raw = json.loads(done.stdout)
    return {name: Samples(seconds=v["seconds"], rss_kib=v["rss_kib"], cpu_seconds=v["cpu_seconds"],
                           launcher_rss_kib=v["launcher_rss_kib"])
            for name, v in raw.items()}


# --------------------------------------------------------------------------------------------- patching

def patched_modules(work: wl.Workloads) -> List[str]:
    """The changed modules the patches leave in place (relative paths; nova 31.3.1 has each)."""
    return [rel for rel in patched_paths(work.patches) if rel.endswith(".py") and (work.new_tree / rel).exists()]


def largest_patched_module(work: wl.Workloads) -> Path:
    """The biggest patched module as the patches leave it (nova 31.3.1's copy)."""
    return max((work.new_tree / rel for rel in patched_modules(work)), key=lambda path: path.stat().st_size)


def compile_alone_case(work: wl.Workloads, bin_dir: Path) -> Case:
    """What the interpreter needs to compile the largest patched module, and nothing else."""
    return Case("python: compile() of the largest patched module alone",
                [str(bin_dir / "python"), "-c", "import sys; compile(open(sys.argv[1], 'rb').read(), sys.argv[1], "
                 "'exec', dont_inherit=True)", str(largest_patched_module(work))], env=clean_env())


def compile_floor_case(work: wl.Workloads, bin_dir: Path) -> Case:
    """The patched modules compiled on every CPU, as kolla-entry's check does, and nothing else."""
    modules = [str(work.new_tree / rel) for rel in patched_modules(work)]
    return Case(FLOOR, [str(bin_dir / "python"), str(Path(__file__).resolve().parent / "compile_floor.py"), *modules],
                env=clean_env())


def patch_cases(work: wl.Workloads, bin_dir: Path) -> List[Case]:
    """The 86-patch apply: kolla-entry and the three references (+ compileall), each on a fresh copy."""
    tree = RUN_DIR / "site-packages"
    files = [str(p) for p in sorted(work.patches.glob("*.patch"))]

    written = patched_paths(work.patches)
    changed_list = RUN_DIR / "changed.txt"
    changed_list.parent.mkdir(parents=True, exist_ok=True)
    changed_list.write_text("".join(f"{rel}\n" for rel in written if rel.endswith(".py")))
    then_compile = ["bash", str(Path(__file__).resolve().parent / "then_compile.sh"), str(bin_dir / "python"),
                    str(tree), str(changed_list), "--"]

    def prepare() -> None:
        fresh_copy(work.target, tree, written)
        (RUN_DIR / "state.json").unlink(missing_ok=True)

    return [
        Case("kolla-entry apply-patches",
             [str(bin_dir / "kolla-entry"), "--log-format", "json", "apply-patches",
              "--patches", f"{work.patches}/*.patch", "--target", str(tree),
              "--state-file", str(RUN_DIR / "state.json")], env=clean_env(), prepare=prepare),
        Case("(a) seed loop: grep + patch -p1 per patch, + compileall",
             [*then_compile, "bash", str(Path(__file__).resolve().parent / "seed_loop.sh"), str(tree),
              str(work.patches)], env=clean_env(), prepare=prepare),
        Case("(b) GNU patch -p1, one stream, + compileall", [*then_compile, "patch", "-p1", "-d", str(tree)],
             stdin=work.stream, env=clean_env(), prepare=prepare),
        # GIT_CEILING_DIRECTORIES: work/bench is inside this repository, and git apply run inside a
        # work tree would take paths relative to its top; the ceiling makes it a plain patch tool.
        Case("(c) git apply -p1, all files, + compileall", [*then_compile, "git", "apply", "-p1", *files], cwd=tree,
             env=clean_env(GIT_CEILING_DIRECTORIES=str(RUN_DIR)), prepare=prepare),
        compile_alone_case(work, bin_dir),
        compile_floor_case(work, bin_dir),
    ]


def usable_bytecode(tree: Path, rel: str) -> bool:
    """
    Whether Python (this interpreter, the bench venv's version) would load ``rel``'s plain pyc
    instead of compiling: magic, flags, then mtime and size or the source hash (PEP 552).
    """
    import importlib.util
    import struct

    pyc = Path(importlib.util.cache_from_source(str(tree / rel)))
    source = tree / rel
    if not pyc.exists() or not source.exists():
        return False
    head = pyc.read_bytes()[:16]
    if head[:4] != importlib.util.MAGIC_NUMBER:
        return False
    (flags,) = struct.unpack("<I", head[4:8])
    if flags == 0:
        st = source.stat()
        return head[8:16] == struct.pack("<II", int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)
    return flags in (1, 3) and head[8:16] == importlib.util.source_hash(source.read_bytes())


def verify_patching(cases: Sequence[Case], work: wl.Workloads) -> Tuple[Dict[str, List[str]], Dict[str, int]]:
    """
    Run each patching case once: the patched files that differ from nova 31.3.1 afterwards, and how
    many of the changed modules have bytecode Python would use.
    """
    paths = patched_paths(work.patches)
    differ, ready = {}, {}
    for case in cases:
        if case.prepare is None:
            continue
        case.prepare()
        run_once(case)
        differ[case.name] = differing_files(RUN_DIR / "site-packages", work.new_tree, paths)
        ready[case.name] = sum(usable_bytecode(RUN_DIR / "site-packages", rel) for rel in patched_modules(work))
    return differ, ready


# --------------------------------------------------------------------------------------------- scaling

def check_case(name: str, bin_dir: Path, patches: str, target: Path) -> Case:
    """A read-only ``check-patches`` run (no copy needed: nothing is written)."""
    return Case(name, [str(bin_dir / "kolla-entry"), "--log-format", "json", "check-patches",
                       "--patches", patches, "--target", str(target)], env=clean_env())


def fit_line(points: Sequence[Tuple[float, float]]) -> Dict[str, float]:
    """Least-squares ``y = a + b x`` with R²."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx if sxx else 0.0
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for _, y in points)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in points)
    return {"intercept_ms": intercept, "ms_per_kib": slope, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


# --------------------------------------------------------------------------------------------- report

def row(section: str, name: str, samples: Samples, ratio: Optional[float] = None, ratio_text: str = "",
        goal: str = "", met: Optional[bool] = None, **extra: Any) -> Dict[str, Any]:
    """One table row as a dict (the JSON copy holds the raw samples too)."""
    return {"section": section, "name": name, **samples.summary(), "ratio": ratio, "ratio_text": ratio_text,
            "goal": goal, "goal_met": met, "samples_ms": [s * 1000 for s in samples.seconds], **extra}


def machine() -> Dict[str, str]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = subprocess.run([str(VENV / "bin" / "python"), "-c", "import sys; print(sys.version.split()[0])"],
                            check=True, capture_output=True, text=True).stdout.strip()
    first = lambda argv: subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]  # noqa: E731
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": python, "kernel": platform.release(),
            "gnu_patch": first(["patch", "--version"]), "git": first(["git", "--version"]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def markdown(rows: Sequence[Dict[str, Any]]) -> str:
    """The table, as Markdown (also readable in a terminal)."""
    lines = ["| Measure | Command | Median ms | Min ms | Max ms | CPU ms | Peak RSS MiB | Ratio | Goal |",
             "|---|---|--:|--:|--:|--:|--:|---|---|"]
    for r in rows:
        goal = r["goal"] + ("" if r["goal_met"] is None else (" met" if r["goal_met"] else " **missed**"))
        times = (f"{r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['max_ms']:.1f} | {r['cpu_median_ms']:.1f}"
                 if r.get("show_ms", True) else "- | - | - | -")
        rss = "-" if r.get("rss_hidden") else rss_text(r)
        lines.append(f"| {r['section']} | {r['name']} | {times} | {rss} | {r['ratio_text']} | {goal.strip()} |")
    return "\n".join(lines)


def rss_text(summary: Dict[str, Any]) -> str:
    """A peak RSS for a table: ``<= N`` when it is only the bench's own peak carried over (bench/timing.py)."""
    return ("<= " if summary.get("rss_upper_bound") else "") + f"{summary['peak_rss_mib']:.1f}"


def ratio_of(value: float, reference: float) -> float:
    return value / reference if reference else float("inf")


def ratios(mine: Samples, reference: Samples) -> Tuple[float, float]:
    """The ratio of the medians (the measure) and of the minimums (shown too: less sensitive to load)."""
    a, b = mine.summary(), reference.summary()
    return ratio_of(a["median_ms"], b["median_ms"]), ratio_of(a["min_ms"], b["min_ms"])


def startup_rows(samples: Optional[Dict[str, Samples]]) -> List[Dict[str, Any]]:
    if samples is None:
        return []
    entry, kolla = samples["kolla-entry run"], samples["kolla_set_configs"]
    ratio, by_min = ratios(entry, kolla)
    return [
        row("start-up", "kolla-entry run (5 config files, no patches) -- /bin/true", entry, ratio,
            f"{ratio:.2f} x kolla_set_configs (mins {by_min:.2f})", f"<= {STARTUP_GOAL}", ratio <= STARTUP_GOAL,
            ratio_of_mins=by_min),
        row("start-up", f"kolla_set_configs (kolla {wl.KOLLA}), same config.json", kolla, 1.0, "reference"),
        row("start-up", "python -c pass (interpreter floor)", samples["python -c pass"]),
    ]


def patch_rows(samples: Dict[str, Samples], count: int, verified: Dict[str, List[str]],
               ready: Dict[str, int], modules: int) -> List[Dict[str, Any]]:
    names = list(verified)
    entry = samples[names[0]]
    rows = [row("patching", f"kolla-entry apply-patches ({count} nova patches)", entry,
                differing=verified[names[0]])]
    fastest = min(names[1:], key=lambda name: samples[name].summary()["median_ms"])
    for name in names[1:]:
        ratio, by_min = ratios(entry, samples[name])
        is_goal = name == fastest
        rows.append(row("patching", name, samples[name], ratio,
                        f"kolla-entry {ratio:.2f} x this (mins {by_min:.2f})" + (", the fastest" if is_goal else ""),
                        f"<= {PATCH_GOAL}" if is_goal else "", (ratio <= PATCH_GOAL) if is_goal else None,
                        differing=verified[name], ratio_of_mins=by_min))
    compiled_only = samples[FLOOR]
    ratio, by_min = ratios(compiled_only, samples[fastest])
    rows.append(row("patching", f"floor: compile() of the {modules} patched modules on {len(os.sched_getaffinity(0))} "
                    "CPUs (forked workers, biggest first), nothing else", compiled_only, ratio,
                    f"{ratio:.2f} x the fastest (mins {by_min:.2f})", ratio_of_mins=by_min))
    for name in names:
        shown = name.split(",")[0] if name != names[0] else "kolla-entry apply-patches"
        rows.append(row("import-ready", f"after {shown}: changed modules with bytecode Python uses", entry,
                        None, f"{ready[name]} of {modules}", "all" if name == names[0] else "",
                        (ready[name] == modules) if name == names[0] else None, show_ms=False,
                        import_ready=ready[name], rss_hidden=True))
    alone = samples["python: compile() of the largest patched module alone"]
    rss, floor = entry.summary()["peak_rss_mib"], alone.summary()["peak_rss_mib"]
    rows.append(row("memory", "python: compile() of the largest patched module alone", alone))
    rows.append(row("memory", "kolla-entry apply-patches, peak RSS (largest of its runs)", entry, rss / floor,
                    f"{rss / floor:.2f} x compile() alone ({rss:.1f} / {floor:.1f} MiB)", f"<= {RSS_GOAL}",
                    rss / floor <= RSS_GOAL, show_ms=False))
    return rows


def scaling_rows(one: Samples, ten: Samples, again: Samples, synth: Dict[int, Samples],
                 synth_bytes: Dict[int, int]) -> Tuple[List[Dict[str, Any]], Dict[str, float]]:
    ratio, by_min = ratios(ten, one)
    rows = [row("scaling", "check-patches, nova site-packages (1x)", one),
            row("scaling", "check-patches, 10x site-packages", ten, ratio, f"{ratio:.2f} x 1x (mins {by_min:.2f})",
                f"<= {SCALE_GOAL}", ratio <= SCALE_GOAL, ratio_of_mins=by_min),
            row("scaling", "check-patches, all already applied (a pod restart)", again)]
    fit = fit_line([(synth_bytes[n] / 1024, synth[n].summary()["median_ms"]) for n in sorted(synth)])
    for size in sorted(synth):
        kib = synth_bytes[size] / 1024
        predicted = fit["intercept_ms"] + fit["ms_per_kib"] * kib
        rows.append(row("scaling", f"check-patches, synthetic series of {size} ({kib:.0f} KiB)", synth[size],
                        None, f"fit {predicted:.0f} ms", patch_kib=kib))
    return rows, fit


# --------------------------------------------------------------------------------------------- main

def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build, measure, print the table, write the JSON copy."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "7")),
                        help="timed runs per command (median of these; default 7, env BENCH_RUNS)")
    parser.add_argument("--out", type=Path, default=wl.WORK / "results.json")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    began = time.monotonic()

    note("building workloads (downloads from PyPI on the first run) ...")
    work = wl.build_all()
    note("installing kolla-entry into work/bench/venv ...")
    bin_dir = install_venv()

    note(f"start-up ... ({time.monotonic() - began:.0f} s)")
    startup_samples = startup(work, bin_dir, args.runs * STARTUP_RUNS_FACTOR)
    note(f"patching ... ({time.monotonic() - began:.0f} s)")
    cases = patch_cases(work, bin_dir)
    verified, ready = verify_patching(cases, work)
    modules = len(patched_modules(work))
    patch_samples = measure(cases, args.runs, progress=lambda n: note(f"  patching {n}"))
    note(f"scaling ... ({time.monotonic() - began:.0f} s)")
    one = check_case("1x", bin_dir, f"{work.patches}/*.patch", work.target)
    ten = check_case("10x", bin_dir, f"{work.patches}/*.patch", work.target10)
    # A pod restart: the same patches against a tree that already has them (nova 31.3.1's files).
    again = check_case("restart", bin_dir, f"{work.patches}/*.patch", work.new_tree)
    synth_cases = [check_case(str(n), bin_dir, f"{folder}/*.patch", work.synth_target)
                   for n, folder in sorted(work.synth_series.items())]
    scale_samples = measure([one, ten, again, *synth_cases], args.runs, progress=lambda n: note(f"  scaling {n}"))
    synth_bytes = {n: sum(p.stat().st_size for p in folder.glob("*.patch"))
                   for n, folder in work.synth_series.items()}

    srows, fit = scaling_rows(scale_samples["1x"], scale_samples["10x"], scale_samples["restart"],
                              {n: scale_samples[str(n)] for n in work.synth_series}, synth_bytes)
    rows = [*startup_rows(startup_samples), *patch_rows(patch_samples, work.patch_count, verified, ready, modules),
            *srows]
    table = markdown(rows)
    info = machine()
    header = (f"Machine: {info['nproc']} x {info['cpu']}, Python {info['python']}, Linux {info['kernel']}, "
              f"{info['gnu_patch']}, {info['git']}; {args.runs} runs per row "
              f"({args.runs * STARTUP_RUNS_FACTOR} for start-up), {info['date']}.")
    fit_text = (f"Synthetic series: time = {fit['intercept_ms']:.0f} ms + {fit['ms_per_kib']:.2f} ms/KiB "
                f"x patch KiB (least squares, R^2 = {fit['r2']:.4f}).")
    checked = [f"Correctness: after {name}, {len(diff)} of {len(patched_paths(work.patches))} patched files "
               f"differ from nova {wl.NOVA_NEW}" + (f" ({', '.join(diff[:3])}{' ...' if len(diff) > 3 else ''})"
                                                   if diff else "") for name, diff in verified.items()]
    skipped = [] if startup_samples is not None else ["start-up: skipped (needs root for a mount namespace)"]
    print("\n".join([header, "", table, "", fit_text, *checked, *skipped]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": info, "runs": args.runs, "workload": {
        "nova_old": wl.NOVA_OLD, "nova_new": wl.NOVA_NEW, "kolla": wl.KOLLA, "patches": work.patch_count,
        "patch_bytes": work.stream.stat().st_size, "synthetic_bytes": synth_bytes},
        "rows": rows, "synthetic_fit": fit, "seconds_total": time.monotonic() - began}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join([header, "", table, "", fit_text, *checked]) + "\n")
    note(f"wrote {args.out} ({time.monotonic() - began:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
