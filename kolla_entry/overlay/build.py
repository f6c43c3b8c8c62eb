"""
Writing the overlay: one generation per series, switched in by one atomic rename (issue #16).

``layout -> generation (transaction.commit for the files and their pycs, then folders and links through the seam,
then target/hidden/manifest) -> switch current -> remove older generations``::

    <overlay>/current -> gen-<hex>     the commit point: os.replace of a symlink
    <overlay>/gen-<hex>/site-packages  what the import hook puts on sys.path
    <overlay>/gen-<hex>/{target, hidden, manifest.json}

A generation is never changed once ``current`` names it; a new series builds a new one beside it.
So a kill -9 anywhere leaves ``current`` on the old generation or on the complete new one, and
the next start removes whatever generation ``current`` does not name. This is why the overlay
needs no journal of its own: the switch is a single rename. Every write goes through the
:class:`~kolla_entry.fs.seam.FileSystem` seam; nothing is written outside the overlay folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Dict, List, Optional

from kolla_entry.errors import EnvironmentProblem, WriteFailed
from kolla_entry.fs.atomic import TEMP_MARKER, atomic_write_file, temp_name
from kolla_entry.fs.seam import REAL, FileSystem, StepError, step
from kolla_entry.log import get_logger
from kolla_entry.overlay import hook
from kolla_entry.overlay.layout import Layout
from kolla_entry.overlay.manifest import MANIFEST, python_bytecode
from kolla_entry.patching.transaction import commit

log = get_logger("kolla_entry.overlay")

GEN_PREFIX = "gen-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def current_generation(overlay: Path) -> Optional[Path]:
    """
    The generation ``current`` names, or None when there is none.

    Raises:
        EnvironmentProblem: ``current`` is not one of ours (not a link to a ``gen-*`` beside it).
    """
    try:
        name = os.readlink(overlay / hook.CURRENT)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise EnvironmentProblem(f"the overlay's {hook.CURRENT} is not a symlink ({err.strerror}); empty the "
                                 "overlay folder", file=str(overlay)) from err
    if "/" in name or not name.startswith(GEN_PREFIX):
        raise EnvironmentProblem(f"the overlay's {hook.CURRENT} points to {name!r}, not a generation; empty the "
                                 "overlay folder", file=str(overlay))
    return overlay / name


def build(overlay: Path, layout: Layout, *, image: str, hidden: bytes, manifest: bytes,
          fs: FileSystem = REAL, durable: bool = True) -> Path:
    """
    Write a new generation and make it current, all or nothing.

    Args:
        overlay: the overlay folder (exists).
        layout: what the generation holds.
        image: the real path of the image site-packages (the hook checks it).
        hidden: the deleted modules' names, one a line.
        manifest: the manifest's bytes.
        fs: the filesystem seam.
        durable: fsync files and folders before the switch.

    Returns:
        The new generation.

    Raises:
        WriteFailed: an operation failed; ``current`` is unchanged and the partial generation removed.
    """
    generation = overlay / (GEN_PREFIX + os.urandom(8).hex())
    try:
        _write_generation(generation, layout, image, hidden, manifest, fs, durable)
        switch(overlay, generation.name, fs=fs, durable=durable)
    except StepError as err:
        _remove_quietly(generation, fs)
        raise WriteFailed(f"{err.operation} failed: {err.error.strerror or err.error}; the overlay is unchanged",
                          operation=err.operation, file=err.rel) from err.error
    except BaseException:
        _remove_quietly(generation, fs)
        raise
    return generation


def _write_generation(generation: Path, layout: Layout, image: str, hidden: bytes, manifest: bytes,
                      fs: FileSystem, durable: bool) -> None:
    tree = generation / hook.TREE
    step("mkdir", str(generation), fs.mkdir, str(generation), 0o755)
    step("mkdir", str(tree), fs.mkdir, str(tree), 0o755)
    if layout.files:
        # The pycs in the same commit, after their modules: each is rendered from its module's staged
        # stat, so a timestamp pyc fits the overlay's file (the image's never applies to it).
        commit(tree, (*layout.files, *layout.bytecode), fs=fs, durable=durable)
    for folder in layout.dirs:
        if not os.path.isdir(tree / folder):
            step("mkdir", folder, fs.mkdir, str(tree / folder), 0o755)
    for path, points_to in layout.links:
        step("symlink", path, fs.symlink, points_to, str(tree / path))
    if durable:
        for folder in ("", *layout.dirs):
            _fsync_dir(tree / folder, fs)
    atomic_write_file(generation / hook.TARGET_FILE, image.encode() + b"\n", mode=0o644, fs=fs, durable=durable)
    atomic_write_file(generation / hook.HIDDEN_FILE, hidden, mode=0o644, fs=fs, durable=durable)
    atomic_write_file(generation / MANIFEST, manifest, mode=0o644, fs=fs, durable=durable)


def switch(overlay: Path, name: Optional[str], *, fs: FileSystem = REAL, durable: bool = True) -> None:
    """
    Make generation ``name`` current (one rename), or with None make no generation current.

    Raises:
        StepError: an operation failed; ``current`` is what it was.
        EnvironmentProblem: ``current`` is not a link to one of our generations.
    """
    current = overlay / hook.CURRENT
    if name is None:
        # Only ever our own link: current_generation() refuses anything else in the folder's `current`.
        if current_generation(overlay) is not None:
            step("unlink", str(current), fs.unlink, str(current))
    else:
        temp = overlay / temp_name(hook.CURRENT)
        step("symlink", str(temp), fs.symlink, name, str(temp))
        try:
            step("replace", str(current), fs.replace, str(temp), str(current))
        except BaseException:
            _unlink_quietly(temp, fs)
            raise
    if durable:
        _fsync_dir(overlay, fs)


def clear(overlay: Path, *, fs: FileSystem = REAL) -> bool:
    """
    No change to serve: make no generation current and remove them all.

    Returns:
        Whether a generation was current.

    Raises:
        WriteFailed: ``current`` could not be removed.
        EnvironmentProblem: ``current`` is not a link to one of our generations.
    """
    was = current_generation(overlay) is not None
    try:
        switch(overlay, None, fs=fs)
    except StepError as err:
        raise WriteFailed(f"cannot remove the overlay's current generation: {err.error.strerror}",
                          operation=err.operation, file=err.rel) from err.error
    remove_stale(overlay, keep=None, fs=fs)
    return was


def remove_stale(overlay: Path, *, keep: Optional[str], fs: FileSystem = REAL) -> List[str]:
    """
    Remove every generation but ``keep`` and any temp link a killed switch left (problems are logged).

    Returns:
        The names removed.
    """
    removed = []
    for name in sorted(os.listdir(overlay)):
        ours = name.startswith(GEN_PREFIX) or (name.startswith(f".{hook.CURRENT}") and TEMP_MARKER in name)
        if not ours or name == keep:
            continue
        try:
            _remove(overlay / name, fs)
            removed.append(name)
        except StepError as err:
            log.warning("overlay_leftover", path=str(overlay / name), operation=err.operation,
                        error=err.error.strerror)
    return removed


def untrusted(generation: Path) -> Optional[str]:
    """
    Why a generation may not be reused as it is, or None.

    Only a folder that this uid owns and that neither group nor others may write: in a pod that runs
    kolla-entry as root, an overlay volume writable by the service's group (an ``emptyDir`` with
    ``fsGroup``) could otherwise hold a generation the service made itself.
    """
    try:
        st = os.lstat(generation)
    except OSError as err:
        return f"cannot inspect it: {err.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a folder"
    if st.st_uid != os.geteuid():
        return f"it is owned by uid {st.st_uid}, not {os.geteuid()}"
    if st.st_mode & 0o022:
        return "group or others may write it"
    return None


def drop_bytecode(tree: Path, facts: Dict[str, Any], *, fs: FileSystem = REAL) -> int:
    """
    Remove the bytecode the service wrote into a generation (see ``manifest.python_bytecode``).

    Folders are opened one component at a time without following a symlink, so a link planted in the
    overlay never makes this remove anything outside it.

    Returns:
        How many entries were removed.

    Raises:
        WriteFailed: an entry could not be removed.
    """
    count = 0
    for folder in facts["dirs"]:
        fd = _open_below(tree, folder)
        if fd is None:
            continue  # gone or a link: the reuse check then finds the tree changed
        try:
            for name in os.listdir(fd):
                if python_bytecode(folder, name, facts):
                    shown = f"{tree}/{folder}/{name}" if folder else f"{tree}/{name}"
                    try:
                        _remove_at(fd, name, shown, fs)
                    except StepError as err:
                        raise WriteFailed(f"cannot remove the service's bytecode: {err.error.strerror}",
                                          operation=err.operation, file=err.rel) from err.error
                    count += 1
        finally:
            os.close(fd)
    return count


def _open_below(root: Path, rel: str) -> Optional[int]:
    """Open ``root/rel`` as a folder, no component a symlink; None when that is not possible."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return None
    for part in (p for p in rel.split("/") if p):
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = child
    return fd


def _remove(path: Path, fs: FileSystem) -> None:
    """Remove a file, link or folder tree, never following a symlink."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        step("unlink", str(path), fs.unlink, str(path))
        return
    fd = step("open", str(path), os.open, str(path), _DIR_FLAGS)
    try:
        _empty_folder(fd, str(path), fs)
    finally:
        os.close(fd)
    step("rmdir", str(path), fs.rmdir, str(path))


def _remove_at(parent: int, name: str, shown: str, fs: FileSystem) -> None:
    """Remove the entry ``name`` of the open folder ``parent`` (a tree, never through a symlink)."""
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        step("unlink", shown, fs.unlink, name, dir_fd=parent)
        return
    fd = step("open", shown, os.open, name, _DIR_FLAGS, dir_fd=parent)
    try:
        _empty_folder(fd, shown, fs)
    finally:
        os.close(fd)
    step("rmdir", shown, fs.rmdir, name, dir_fd=parent)


def _empty_folder(fd: int, shown: str, fs: FileSystem) -> None:
    for name in os.listdir(fd):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            child = step("open", f"{shown}/{name}", os.open, name, _DIR_FLAGS, dir_fd=fd)
            try:
                _empty_folder(child, f"{shown}/{name}", fs)
            finally:
                os.close(child)
            step("rmdir", f"{shown}/{name}", fs.rmdir, name, dir_fd=fd)
        else:
            step("unlink", f"{shown}/{name}", fs.unlink, name, dir_fd=fd)


def _remove_quietly(path: Path, fs: FileSystem) -> None:
    try:
        if os.path.lexists(path):
            _remove(path, fs)
    except (StepError, OSError) as err:
        log.warning("overlay_leftover", path=str(path), error=str(err))


def _unlink_quietly(path: Path, fs: FileSystem) -> None:
    try:
        fs.unlink(str(path))
    except OSError as err:
        log.warning("overlay_leftover", path=str(path), error=err.strerror)


def _fsync_dir(folder: Path, fs: FileSystem) -> None:
    fd = step("open", str(folder), os.open, str(folder), _DIR_FLAGS)
    try:
        step("fsync", str(folder), fs.fsync, fd, str(folder))
    finally:
        os.close(fd)


def hook_problem(target: Path) -> Optional[str]:
    """
    Why the import hook would not serve an overlay to ``target``'s interpreter, or None when it would.
    """
    module = target / f"{hook.MODULE_NAME}.py"
    try:
        installed = module.read_bytes()
        line = (target / hook.PTH_NAME).read_text(encoding="utf-8")
    except OSError:
        return (f"the image has no overlay import hook ({hook.PTH_NAME} and {hook.MODULE_NAME}.py in site-packages): "
                "the service would run unpatched code; add `kolla-entry install-overlay-hook` to the image build")
    if line != hook.PTH_LINE or installed != Path(hook.__file__).read_bytes():
        return ("the image's overlay import hook is from another kolla-entry version; rebuild the image "
                "with this kolla-entry's `kolla-entry install-overlay-hook`")
    return None


def install_hook(target: Path, *, fs: FileSystem = REAL) -> List[Path]:
    """
    Install the import hook into a service venv's site-packages (an image build step).

    Returns:
        The two files written.

    Raises:
        WriteFailed: a file could not be written.
        EnvironmentProblem: ``target`` is not a folder.
    """
    if not target.is_dir():
        raise EnvironmentProblem("the site-packages folder does not exist", file=str(target))
    module = target / f"{hook.MODULE_NAME}.py"
    pth = target / hook.PTH_NAME
    atomic_write_file(module, Path(hook.__file__).read_bytes(), mode=0o644, fs=fs)
    atomic_write_file(pth, hook.PTH_LINE.encode(), mode=0o644, fs=fs)
    return [module, pth]
