"""
Benchmark workloads (issue #7), built from PyPI into the git-ignored ``work/bench/`` folder.

Nothing here is committed as data: every workload is rebuilt from the downloaded wheels on a
fresh checkout, and each builder is idempotent (a finished step leaves a ``.done`` stamp).

- ``nova``: the site-packages of nova 31.0.0 (the target) and one ``git diff`` patch per ``.py``
  file that changed up to nova 31.3.1 (upstream stable fixes, about 90 files).
- ``nova10``: the same site-packages plus nine copies of ``nova/`` under other names (hard links:
  it is only read).
- ``synth``: a synthetic package of 1000 modules and the series of 1, 10, 100 and 1000 patches.
- ``startup``: a Kolla ``config.json`` with five small config files and no patches.
- ``kolla_set_configs``: Kolla's own ``set_configs.py`` taken from the ``kolla`` wheel.
"""

from __future__ import annotations

import difflib
import filecmp
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "work" / "bench"

NOVA_OLD = "31.0.0"
NOVA_NEW = "31.3.1"
KOLLA = "23.0.0"  # the kolla release whose set_configs.py is the start-up reference
KOLLA_SET_CONFIGS_MEMBERS = ("kolla/docker/base/set_configs.py", "docker/base/set_configs.py")
SYNTH_SIZES = (1, 10, 100, 1000)
SYNTH_PACKAGE = "synthpkg"
SYNTH_FUNCTIONS = 12
CLONES = 9
STARTUP_FILES = ("service.conf", "api-paste.ini", "policy.yaml", "logging.conf", "rootwrap.conf")
# Where the start-up config lives in the private mount namespace: Kolla's fixed path.
KOLLA_CONFIG_DIR = "/var/lib/kolla/config_files"
STARTUP_DEST_DIR = "/etc/bench-service"

# A clean, reproducible git: no user or system config, fixed identity, no colour, no renames.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


@dataclass(frozen=True)
class Workloads:
    """Paths of every built workload (all under ``work/bench``)."""

    target: Path                # pristine nova 31.0.0 site-packages: copied before each write, never written
    target10: Path              # the same plus nine clones of nova/ (read only)
    patches: Path               # one git-diff patch per changed .py file
    patch_count: int
    stream: Path                # all patches concatenated, for GNU patch's single stream
    new_tree: Path              # nova 31.3.1 site-packages, to check what each tool produced
    synth_target: Path
    synth_series: Dict[int, Path]
    startup: Path               # holds config_files/ (config.json + five sources)
    kolla_set_configs: Path


def run_tool(argv: Sequence[str], cwd: Path | None = None, env: Dict[str, str] | None = None) -> str:
    """
    Run a build step quietly; its output is shown only when it fails.

    Returns:
        Its stdout.

    Raises:
        RuntimeError: it exited non-zero.
    """
    done = subprocess.run(list(argv), cwd=cwd, env=env, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def _fresh(path: Path) -> None:
    """Remove a half-built workload folder (its stamp is missing) and recreate it empty."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def download(spec: str, dest: Path) -> Path:
    """
    Download one wheel with pip (no dependencies), cached in ``dest``.

    Args:
        spec: a requirement such as ``nova==31.0.0``.
        dest: the download folder.

    Returns:
        The wheel's path.

    Raises:
        RuntimeError: pip failed (no network, unknown version).
    """
    name, _, version = spec.partition("==")
    dest.mkdir(parents=True, exist_ok=True)
    pattern = f"{name}-{version or '*'}-*.whl"
    found = sorted(dest.glob(pattern))
    if not found:
        run_tool([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
              "--dest", str(dest), spec])
        found = sorted(dest.glob(pattern))
    if not found:
        raise RuntimeError(f"pip download {spec} gave no wheel in {dest}")
    return found[-1]


def unpack(wheel: Path, dest: Path) -> Path:
    """Unpack a wheel as a site-packages folder (idempotent)."""
    if not _stamp(dest).exists():
        _fresh(dest)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(dest)
        _stamp(dest).touch()
    return dest


def changed_py_files(old: Path, new: Path, package: str) -> List[str]:
    """
    List the ``.py`` files of ``package`` that differ between two site-packages.

    Returns:
        Sorted paths relative to site-packages: changed, added and removed files.
    """
    def py_files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in (root / package).rglob("*.py")}

    old_files, new_files = py_files(old), py_files(new)
    changed = {p for p in old_files & new_files if not filecmp.cmp(old / p, new / p, shallow=False)}
    return sorted(changed | (old_files ^ new_files))


def write_git_patches(old: Path, new: Path, paths: Sequence[str], out: Path, scratch: Path) -> int:
    """
    Write one ``git diff`` patch per path (a/ b/ prefixes, relative to site-packages).

    Only the changed files go into a scratch repository: commit the old versions, put the new ones in
    place, and let ``git diff --cached`` write each patch.

    Returns:
        The number of patches written.
    """
    _fresh(scratch)
    env = {**os.environ, **_GIT_ENV}
    run_tool(["git", "init", "-q", "."], cwd=scratch, env=env)
    for rel in paths:
        if (old / rel).exists():
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(old / rel, scratch / rel)
    run_tool(["git", "add", "-A"], cwd=scratch, env=env)
    run_tool(["git", "commit", "-q", "--allow-empty", "-m", f"nova {NOVA_OLD}"], cwd=scratch, env=env)
    for rel in paths:
        if (new / rel).exists():
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(new / rel, scratch / rel)
        elif (scratch / rel).exists():
            (scratch / rel).unlink()
    run_tool(["git", "add", "-A"], cwd=scratch, env=env)
    for index, rel in enumerate(paths, start=1):
        text = run_tool(["git", "diff", "--cached", "--no-color", "--no-renames", "--no-ext-diff", "--", rel],
                    cwd=scratch, env=env)
        name = f"{index:03d}-{rel[:-3].replace('/', '_')}.patch"
        (out / name).write_text(text, encoding="utf-8")
    shutil.rmtree(scratch)
    return len(paths)


def build_nova(dl: Path) -> Tuple[Path, Path, Path, int, Path]:
    """Target, new tree, patches folder, patch count and concatenated stream of the nova workload."""
    old = unpack(download(f"nova=={NOVA_OLD}", dl), WORK / "nova" / "site-packages")
    new = unpack(download(f"nova=={NOVA_NEW}", dl), WORK / "nova-new" / "site-packages")
    patches = WORK / "nova-patches"
    stream = WORK / "nova-all.patch"
    if not _stamp(patches).exists():
        _fresh(patches)
        write_git_patches(old, new, changed_py_files(old, new, "nova"), patches, WORK / "gitscratch")
        stream.write_bytes(b"".join(p.read_bytes() for p in sorted(patches.glob("*.patch"))))
        _stamp(patches).touch()
    return old, new, patches, len(list(patches.glob("*.patch"))), stream


def build_tenfold(target: Path) -> Path:
    """The 10x site-packages: the target plus nine hard-linked clones of ``nova/`` under other names."""
    dest = WORK / "nova10" / "site-packages"
    if not _stamp(dest).exists():
        _fresh(dest.parent)
        run_tool(["cp", "-al", str(target), str(dest)])
        for index in range(1, CLONES + 1):
            run_tool(["cp", "-al", str(target / "nova"), str(dest / f"novaclone{index}")])
        _stamp(dest).touch()
    return dest


def synth_module(index: int, edited: bool = False) -> str:
    """
    The text of one synthetic module: ``SYNTH_FUNCTIONS`` small functions.

    Args:
        index: the module number (makes every module distinct).
        edited: the patched version: two functions changed far apart (two hunks).
    """
    lines = [f'"""Synthetic module {index} for the kolla-entry scaling benchmark."""', "", "import os", ""]
    for func in range(SYNTH_FUNCTIONS):
        limit = index + func
        if edited and func in (2, SYNTH_FUNCTIONS - 3):
            limit = f"({index + func} + 1)"
        lines += ["", f"def function_{func}(items):",
                  f'    """Return the items below {index + func}, as function {func} does."""',
                  "    result = []", "    for item in items:", f"        if item < {limit}:",
                  "            result.append(item)", "    return result", ""]
    return "\n".join(lines) + "\n"


def build_synth() -> Tuple[Path, Dict[int, Path]]:
    """The synthetic target (1000 modules) and one patch folder per series size."""
    base = WORK / "synth"
    target = base / "site-packages"
    series = {size: base / f"series-{size:04d}" for size in SYNTH_SIZES}
    if not _stamp(base).exists():
        _fresh(base)
        (target / SYNTH_PACKAGE).mkdir(parents=True)
        (target / SYNTH_PACKAGE / "__init__.py").write_text("")
        patches: List[Tuple[str, str]] = []
        for index in range(max(SYNTH_SIZES)):
            rel = f"{SYNTH_PACKAGE}/mod_{index:04d}.py"
            before, after = synth_module(index), synth_module(index, edited=True)
            (target / rel).write_text(before)
            diff = difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{rel}", f"b/{rel}")
            patches.append((f"{index:04d}-mod.patch", "".join(diff)))
        for size, folder in series.items():
            folder.mkdir()
            for name, text in patches[:size]:
                (folder / name).write_text(text)
        _stamp(base).touch()
    return target, series


def startup_config(config_dir: str = KOLLA_CONFIG_DIR, dest_dir: str = STARTUP_DEST_DIR) -> Dict[str, object]:
    """
    The start-up config.json: five small config files copied as Kolla does, no patches.

    Both tools must accept it: plain Kolla keys only (no template, no dependencies).
    """
    files = [{"source": f"{config_dir}/{name}", "dest": f"{dest_dir}/{name}", "owner": "root",
              "perm": "0640" if name != "policy.yaml" else "0600"} for name in STARTUP_FILES]
    return {"command": "/bin/true", "config_files": files}


def _startup_source(name: str) -> str:
    lines = [f"# {name}: a small service config for the start-up benchmark"]
    lines += [f"[section_{section}]" + "".join(f"\noption_{section}_{key} = value {key}" for key in range(8))
              for section in range(4)]
    return "\n\n".join(lines) + "\n"


def build_startup() -> Path:
    """The folder that stands in for ``/var/lib/kolla/config_files`` (config.json + five files)."""
    folder = WORK / "startup" / "config_files"
    if not _stamp(folder).exists():
        _fresh(folder)
        for name in STARTUP_FILES:
            (folder / name).write_text(_startup_source(name))
        (folder / "config.json").write_text(json.dumps(startup_config(), indent=2) + "\n")
        _stamp(folder).touch()
    return folder


def build_kolla_set_configs(dl: Path) -> Path:
    """Extract Kolla's ``set_configs.py`` (the ``kolla_set_configs`` of every Kolla image)."""
    dest = WORK / "kolla" / "set_configs.py"
    if not dest.exists():
        with zipfile.ZipFile(download(f"kolla=={KOLLA}", dl)) as archive:
            names = set(archive.namelist())
            member = next((m for m in KOLLA_SET_CONFIGS_MEMBERS if m in names), None)
            if member is None:
                raise RuntimeError("the kolla wheel has no docker/base/set_configs.py")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archive.read(member))
    return dest


def build_all() -> Workloads:
    """
    Build (or reuse) every workload.

    Returns:
        The paths of the workloads.

    Raises:
        RuntimeError: a download or a git step failed.
    """
    dl = WORK / "downloads"
    target, new_tree, patches, count, stream = build_nova(dl)
    synth_target, synth_series = build_synth()
    return Workloads(
        target=target, target10=build_tenfold(target), patches=patches, patch_count=count, stream=stream,
        new_tree=new_tree, synth_target=synth_target, synth_series=synth_series, startup=build_startup(),
        kolla_set_configs=build_kolla_set_configs(dl),
    )


if __name__ == "__main__":
    built = build_all()
    for field_name, value in vars(built).items():
        print(f"{field_name}: {value}")
