"""
Finding the patch files and the target site-packages.

Patch folders are usually ConfigMaps mounted by the kubelet: each key is a symlink through
``..data`` into a hidden timestamped folder. Dot entries are never patches; the visible
symlinks are followed.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from typing import TYPE_CHECKING, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from kolla_entry.constants import ENV_PATCHES, ENV_TARGET, KOLLA_VENV
from kolla_entry.errors import EnvironmentProblem

if TYPE_CHECKING:
    from pathlib import Path


class PatchSource(NamedTuple):
    """A discovered patch file: its path as found (``/nova-patches/0001-x.patch``)."""

    path: Path

    @property
    def name(self) -> str:
        """The name reports use: the path as found."""
        return str(self.path)


def patterns_from(options: Sequence[str], environ: Mapping[str, str], default: str) -> Tuple[str, ...]:
    """
    The patch globs to use: ``--patches`` options, else ``KOLLA_ENTRY_PATCHES`` (colon-separated),
    else the default.
    """
    if options:
        return tuple(options)
    from_env = [item for item in environ.get(ENV_PATCHES, "").split(":") if item]
    return tuple(from_env) if from_env else (default,)


def discover(patterns: Sequence[str]) -> List[PatchSource]:
    """
    Return the patch files matching ``patterns``: by folder name, then file name; each file once.

    Raises:
        EnvironmentProblem: a matching patches folder exists but cannot be read.
    """
    found: List[PatchSource] = []
    seen = set()
    for pattern in patterns:
        for path in _expand(pattern):
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                found.append(PatchSource(path))
    return found


def _expand(pattern: str) -> List[Path]:
    folder_glob, name_glob = os.path.split(pattern)
    folders = _matching_folders(folder_glob or ".")
    # Whatever its type: a matching entry that is no readable file is reported, never dropped.
    found = [(folder, name) for folder in folders for name in _list_folder(folder)
             if not name.startswith(".") and fnmatch.fnmatchcase(name, name_glob)]
    if not found:
        return []
    # Only with a patch: a start without one never imports pathlib (start-up budget, issue #13).
    from pathlib import Path

    return sorted((Path(folder) / name for folder, name in found), key=lambda p: (str(p.parent), p.name))


def _matching_folders(folder_glob: str) -> List[str]:
    if not glob.has_magic(folder_glob):
        return [folder_glob] if os.path.isdir(folder_glob) else []
    # glob() already skips dot names for `*`; the sort gives the by-folder-name order.
    return sorted(path for path in glob.glob(folder_glob) if os.path.isdir(path))


def _list_folder(folder: str) -> List[str]:
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise EnvironmentProblem(
            f"cannot read the patches folder: {err.strerror}; check the volume mount and its permissions",
            file=folder,
        ) from err


def resolve_target(explicit: Optional[str], environ: Mapping[str, str], *, venv: str = KOLLA_VENV) -> str:
    """
    The site-packages folder to patch.

    ``--target``, else ``KOLLA_ENTRY_TARGET``, else the Kolla venv's stable
    ``lib/python3/site-packages``, else its single ``lib/python3.*/site-packages``, else the
    purelib folder that venv's python reports.

    Returns:
        The folder as given or found; a string, so that a start without patches never needs pathlib
        (the engine's requests take ``Path(...)`` of it).

    Raises:
        EnvironmentProblem: the chosen folder does not exist, or none can be found.
    """
    chosen = explicit or environ.get(ENV_TARGET)
    if chosen:
        if not os.path.isdir(chosen):
            raise EnvironmentProblem(
                "the target folder does not exist; pass --target or KOLLA_ENTRY_TARGET with the service's "
                "site-packages",
                file=chosen,
            )
        return chosen
    # Kolla keeps lib/python3 as a version-independent symlink (openstack-base Dockerfile).
    stable = os.path.join(venv, "lib", "python3", "site-packages")
    if os.path.isdir(stable):
        return stable
    candidates = sorted(glob.glob(os.path.join(venv, "lib", "python3.*", "site-packages")))
    if len(candidates) == 1:
        return candidates[0]
    purelib = _ask_interpreter(os.path.join(venv, "bin", "python"))
    if purelib and os.path.isdir(purelib):
        return purelib
    raise EnvironmentProblem(
        f"no site-packages found in the venv {venv} ({len(candidates)} lib/python3.* candidates); "
        "pass --target DIR or set KOLLA_ENTRY_TARGET",
    )


def _ask_interpreter(python: str) -> Optional[str]:
    if not os.access(python, os.X_OK):
        return None
    import subprocess  # only for a venv without the usual layout (start-up budget, issue #7)

    try:
        done = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
