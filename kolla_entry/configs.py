"""
Putting the service's config in place: ``directories``, ``files``, ``config_files``, ``permissions``.

The order is Kolla master's (kolla:docker/base/set_configs.py): directories, files, config files,
then permissions. Every file is written atomically with owner and mode set before the rename
(``transaction.atomic_write_file``); every other change goes through :mod:`kolla_entry.fsops`.

Differences from Kolla, on purpose:
- Symlinks are never followed when setting owners and modes (``permissions``, ``directories``,
  ``files``): a service user who can write a log folder could otherwise plant a link that makes the
  root entrypoint chown any file. Links met there are skipped (``permissions``) or refused.
- Inside a directory source, kubelet's ``..data``/``..<timestamp>`` entries are skipped and other
  symlinks are copied as the files they point to.
- A source glob matching several files needs a ``dest`` ending in ``/`` (Kolla let the last win).
- ``exclude`` patterns are ``re.search``'d on the full path; ANY match excludes (Kolla needed all),
  and an excluded folder is not descended into.
"""

from __future__ import annotations

import glob
import grp
import hashlib
import os
import pwd
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Set, Tuple, TypeVar

from kolla_entry import fsops
from kolla_entry.config import ConfigFileEntry, Owner, PathEntry, PermissionEntry, ServiceConfig
from kolla_entry.errors import ConfigError, PrivilegeError
from kolla_entry.log import get_logger
from kolla_entry.render import FileReader, read_secret_file, render

log = get_logger(__name__)
_T = TypeVar("_T")

#: uid and gid of each owner named in the config.
OwnerIds = Mapping[Owner, Tuple[int, int]]

_DIR_MODE_PARENTS = 0o755
# kubelet's atomic-writer entries inside a ConfigMap/Secret mount: never config files.
_KUBELET_PREFIX = ".."
# A folder dest is built beside itself under these names, then swapped in.
_STAGING_SUFFIX = ".kolla-entry-new"
_OLD_SUFFIX = ".kolla-entry-old"


@dataclass(frozen=True)
class WrittenFile:
    """A config file written: what the state file records (never its content)."""

    dest: str
    sha256: str
    owner: str
    perm: str

    def to_dict(self) -> Dict[str, str]:
        return {"dest": self.dest, "sha256": self.sha256, "owner": self.owner, "perm": self.perm}


@dataclass(frozen=True)
class _Props:
    """Owner and mode to give one written file or folder."""

    uid: int
    gid: int
    mode: int
    owner: str


def resolve_owners(config: ServiceConfig) -> Dict[Owner, Tuple[int, int]]:
    """
    Look up the uid and gid of every owner in the config, before anything is done.

    Args:
        config: the validated config.

    Returns:
        ``{owner: (uid, gid)}``.

    Raises:
        ConfigError: an unknown user or group, naming the entry's ``owner`` field.
    """
    named: List[Tuple[str, Optional[Owner]]] = [(e.entry, e.owner) for e in config.config_files]
    named += [(e.entry, e.owner) for e in config.directories + config.files]
    named += [(e.entry, e.owner) for e in config.permissions]
    ids: Dict[Owner, Tuple[int, int]] = {}
    for entry, owner in named:
        if owner is not None and owner not in ids:
            ids[owner] = resolve_owner(owner, f"{entry}.owner", config.path)
    return ids


def resolve_owner(owner: Owner, entry: str, config_path: Optional[str] = None) -> Tuple[int, int]:
    """
    The (uid, gid) of an owner; without a group, the user's primary group (a bare numeric uid
    with no passwd entry gets the same number as gid).

    Raises:
        ConfigError: the user or group does not exist.
    """
    account: Optional[pwd.struct_passwd] = None
    if owner.user.isdigit():
        uid = int(owner.user)
        try:
            account = pwd.getpwuid(uid)
        except KeyError:
            account = None
    else:
        try:
            account = pwd.getpwnam(owner.user)
        except KeyError:
            raise ConfigError(f"unknown user {owner.user!r}", entry=entry, file=config_path) from None
        uid = account.pw_uid
    if owner.group is None:
        return uid, account.pw_gid if account is not None else uid
    if owner.group.isdigit():
        return uid, int(owner.group)
    try:
        return uid, grp.getgrnam(owner.group).gr_gid
    except KeyError:
        raise ConfigError(f"unknown group {owner.group!r}", entry=entry, file=config_path) from None


def apply_configs(
    config: ServiceConfig,
    ids: OwnerIds,
    *,
    environ: Mapping[str, str],
    fs: fsops.FileSystem = fsops.REAL,
    read_file: FileReader = read_secret_file,
) -> Tuple[WrittenFile, ...]:
    """
    Create directories and files, copy (and render) config files, set permissions.

    Args:
        config: the validated config.
        ids: from :func:`resolve_owners`.
        environ: for ``${env:...}`` placeholders.
        fs: the filesystem seam.
        read_file: how ``${file:...}`` placeholders are read.

    Returns:
        Every config file written, in order.

    Raises:
        ConfigError: a required source is missing, a path has the wrong type, a write failed.
        TemplateError: a placeholder cannot be resolved (nothing of that file is written).
        PrivilegeError: an owner or mode cannot be set by this uid.
    """
    for entry in config.directories:
        make_directory(entry, ids, fs)
    for entry in config.files:
        make_file(entry, ids, fs)
    written: List[WrittenFile] = []
    for config_file in config.config_files:
        written += _ConfigCopy(config_file, ids, environ, fs, read_file).run()
    for permission in config.permissions:
        set_permissions(permission, ids, fs)
    return tuple(written)


def make_directory(entry: PathEntry, ids: OwnerIds, fs: fsops.FileSystem = fsops.REAL) -> None:
    """
    Create a ``directories`` entry (and its parents) and set its owner and mode.

    Raises:
        ConfigError: something that is not a folder is in the way (a symlink included).
    """
    if os.path.islink(entry.path):
        raise ConfigError("a symlink is at this path; it is never followed", entry=f"{entry.entry}.path",
                          file=entry.path)
    _make_dirs(entry.path, entry.entry, fs)
    uid, gid = ids[entry.owner]
    _set_props(entry.path, _Props(uid, gid, dir_mode(entry.perm), str(entry.owner)), entry.entry, fs)
    log.info("directory_ready", path=entry.path, owner=str(entry.owner), perm=_octal(dir_mode(entry.perm)))


def make_file(entry: PathEntry, ids: OwnerIds, fs: fsops.FileSystem = fsops.REAL) -> None:
    """
    Create a ``files`` entry as an empty file unless it exists, then set its owner and mode.

    Raises:
        ConfigError: the parent folder is missing, or a symlink or folder is at the path.
    """
    if not os.path.isdir(os.path.dirname(entry.path)):
        raise ConfigError("the parent folder does not exist; add it to \"directories\"",
                          entry=f"{entry.entry}.path", file=entry.path)
    _refuse_non_file(entry.path, f"{entry.entry}.path")
    if not os.path.lexists(entry.path):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = _os_call(lambda: fs.open(entry.path, flags, 0o600), "open", entry.path, entry.entry)
        os.close(fd)
    uid, gid = ids[entry.owner]
    _set_props(entry.path, _Props(uid, gid, entry.perm, str(entry.owner)), entry.entry, fs)
    log.info("file_ready", path=entry.path, owner=str(entry.owner), perm=_octal(entry.perm))


def set_permissions(entry: PermissionEntry, ids: OwnerIds, fs: fsops.FileSystem = fsops.REAL) -> int:
    """
    Set owner (and mode, if given) on every match of the entry's glob, recursively if asked.

    Returns:
        The number of paths changed or checked.

    Raises:
        PrivilegeError: this uid cannot change a match.
    """
    uid, gid = ids[entry.owner]
    excludes = [re.compile(pattern) for pattern in entry.exclude]
    count = 0
    matches = sorted(glob.glob(entry.path))
    for path in matches:
        for target, is_dir in _permission_targets(path, entry.recurse, excludes):
            mode = None if entry.perm is None else (dir_mode(entry.perm) if is_dir else entry.perm)
            _set_props(target, _Props(uid, gid, -1 if mode is None else mode, str(entry.owner)),
                       entry.entry, fs)
            count += 1
    log.info("permissions_set", path=entry.path, matches=len(matches), changed=count,
             owner=str(entry.owner), perm=None if entry.perm is None else _octal(entry.perm))
    return count


def _permission_targets(path: str, recurse: bool, excludes: List[re.Pattern[str]]) -> List[Tuple[str, bool]]:
    """Regular files and folders to change, symlinks and excluded paths left out."""
    if any(p.search(path) for p in excludes) or os.path.islink(path):
        return []
    if not os.path.isdir(path):
        return [(path, False)] if os.path.isfile(path) else []
    targets = [(path, True)]
    if recurse:
        for root, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not any(p.search(os.path.join(root, d)) for p in excludes))
            for name in dirnames:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    targets.append((full, True))
            for name in sorted(filenames):
                full = os.path.join(root, name)
                if not any(p.search(full) for p in excludes) and os.path.isfile(full) and not os.path.islink(full):
                    targets.append((full, False))
    return targets


def dir_mode(perm: int) -> int:
    """A file mode used on a folder: add the search bit wherever a read bit is set (Kolla 1fe983df4)."""
    return perm | ((perm & 0o444) >> 2)


class _ConfigCopy:
    """Copies one ``config_files`` entry: a glob of files and folders to ``dest``."""

    def __init__(self, entry: ConfigFileEntry, ids: OwnerIds, environ: Mapping[str, str],
                 fs: fsops.FileSystem, read_file: FileReader) -> None:
        self.entry = entry
        self.ids = ids
        self.environ = environ
        self.fs = fs
        self.read_file = read_file
        self.written: List[WrittenFile] = []

    def run(self) -> List[WrittenFile]:
        entry = self.entry
        matches = sorted(glob.glob(entry.source))
        if not matches:
            if entry.optional:
                log.info("config_source_missing", entry=entry.entry, source=entry.source, outcome="skipped")
                return []
            raise ConfigError("no file matches the source; mark the entry \"optional\": true if it may be absent",
                              entry=f"{entry.entry}.source", file=entry.source)
        into_folder = entry.dest.endswith("/")
        if len(matches) > 1 and not into_folder:
            raise ConfigError(f"the source matches {len(matches)} files but dest is one path; "
                              "end dest with / to copy them into a folder", entry=f"{entry.entry}.dest")
        for match in matches:
            dest = os.path.join(entry.dest, os.path.basename(match)) if into_folder else entry.dest
            if not os.path.isdir(match):
                self._copy_file(match, dest, dest)
            elif entry.merge:
                self._copy_folder(match, dest, dest, set())
            else:
                self._replace_folder(match, dest.rstrip("/") or "/")
        return self.written

    def _props(self, source: str, is_dir: bool) -> _Props:
        entry = self.entry
        if entry.preserve_properties:
            st = os.stat(source)
            return _Props(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), f"{st.st_uid}:{st.st_gid}")
        assert entry.owner is not None and entry.perm is not None  # validated in config.py
        uid, gid = self.ids[entry.owner]
        return _Props(uid, gid, dir_mode(entry.perm) if is_dir else entry.perm, str(entry.owner))

    def _copy_file(self, source: str, dest: str, shown: str) -> None:
        """Copy (or render) one file to ``dest``; ``shown`` is its final path, for the log and state."""
        content = self._content(source)
        where = self.entry.entry
        if os.path.isdir(dest) and not os.path.islink(dest):
            if self.entry.merge:
                raise ConfigError("a folder is in the way of this file; merge never deletes folders",
                                  entry=f"{where}.dest", file=dest)
            _remove_tree(dest, where, self.fs)
        _make_dirs(os.path.dirname(dest) or "/", where, self.fs)
        props = self._props(source, is_dir=False)
        write_config_file(dest, content, props.mode, props.uid, props.gid, self.fs)
        digest = hashlib.sha256(content).hexdigest()
        self.written.append(WrittenFile(shown, digest, props.owner, _octal(props.mode)))
        log.info("config_file_written", entry=where, dest=shown, owner=props.owner,
                 perm=_octal(props.mode), template=self.entry.template)

    def _content(self, source: str) -> bytes:
        try:
            with open(source, "rb") as handle:
                raw = handle.read()
        except OSError as err:
            raise ConfigError(f"cannot read the source: {err.strerror}",
                              entry=f"{self.entry.entry}.source", file=source) from err
        if not self.entry.template:
            return raw
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError("a template must be UTF-8 text", entry=f"{self.entry.entry}.template",
                              file=source) from err
        return render(text, source=source, environ=self.environ, read_file=self.read_file).text.encode()

    def _replace_folder(self, source: str, dest: str) -> None:
        """
        Without ``merge``, a folder dest is replaced as a whole: built beside it, then swapped in by
        two renames, so a failure part-way leaves the old folder as it was.
        """
        where = self.entry.entry
        parent, name = os.path.split(dest)
        if not name:
            raise ConfigError("refusing to replace / ; use \"merge\": true", entry=f"{where}.dest", file=dest)
        staging = os.path.join(parent, f".{name}{_STAGING_SUFFIX}")
        old = os.path.join(parent, f".{name}{_OLD_SUFFIX}")
        for leftover in (staging, old):  # from a start that was killed part-way
            if os.path.lexists(leftover):
                _remove_tree(leftover, where, self.fs)
        _make_dirs(parent, where, self.fs)
        try:
            self._copy_folder(source, staging, dest, set())
            self._swap(staging, dest, old)
        except BaseException:
            if os.path.lexists(staging):
                _remove_tree(staging, where, self.fs)
            raise
        if os.path.lexists(old):
            _remove_tree(old, where, self.fs)

    def _swap(self, staging: str, dest: str, old: str) -> None:
        """Move ``dest`` aside and ``staging`` in; put ``dest`` back if the second rename fails."""
        where = self.entry.entry
        moved = os.path.lexists(dest)
        if moved:
            _os_call(lambda: self.fs.rename(dest, old), "rename", dest, where)
        try:
            _os_call(lambda: self.fs.rename(staging, dest), "rename", dest, where)
        except BaseException:
            if moved:
                self.fs.rename(old, dest)
            raise

    def _copy_folder(self, source: str, dest: str, shown: str, seen: Set[Tuple[int, int]]) -> None:
        st = os.stat(source)
        if (st.st_dev, st.st_ino) in seen:
            return  # a symlink loop back into a folder being copied
        seen = seen | {(st.st_dev, st.st_ino)}
        if os.path.lexists(dest) and (os.path.islink(dest) or not os.path.isdir(dest)):
            _remove_tree(dest, self.entry.entry, self.fs)  # a file or link in the way, even with merge
        _make_dirs(dest, self.entry.entry, self.fs)
        _set_props(dest, self._props(source, is_dir=True), self.entry.entry, self.fs)
        for name in sorted(os.listdir(source)):
            if name.startswith(_KUBELET_PREFIX):
                continue
            child = os.path.join(source, name)
            if os.path.isdir(child):
                self._copy_folder(child, os.path.join(dest, name), os.path.join(shown, name), seen)
            elif os.path.isfile(child):
                self._copy_file(child, os.path.join(dest, name), os.path.join(shown, name))


def write_config_file(path: str, content: bytes, mode: int, uid: int, gid: int, fs: fsops.FileSystem) -> None:
    """
    Write one config file atomically: temp file beside it, owner and mode set, then rename.

    Raises:
        WriteFailed: a filesystem operation failed; the old file (if any) is untouched.
    """
    from kolla_entry.transaction import atomic_write_file

    atomic_write_file(Path(path), content, mode=mode, uid=uid, gid=gid, fs=fs)


def _make_dirs(path: str, entry: str, fs: fsops.FileSystem) -> None:
    """``mkdir -p`` through the seam; created folders get 0755 and our own owner, as in Kolla."""
    missing: List[str] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        current = os.path.dirname(current)
    if not os.path.isdir(current):
        raise ConfigError("not a folder", entry=entry, file=current)
    for folder in reversed(missing):
        _mkdir(folder, entry, fs)


def _mkdir(folder: str, entry: str, fs: fsops.FileSystem) -> None:
    _os_call(lambda: fs.mkdir(folder, _DIR_MODE_PARENTS), "mkdir", folder, entry)


def _refuse_non_file(path: str, entry: str) -> None:
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        raise ConfigError("a symlink or non-regular file is at this path; refusing to touch it",
                          entry=entry, file=path)


def _set_props(path: str, props: _Props, entry: str, fs: fsops.FileSystem) -> None:
    """Set owner and mode (``mode`` -1: keep) without following a symlink at ``path``."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = _os_call(lambda: fs.open(path, flags), "open", path, entry)
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return
        chown = (st.st_uid, st.st_gid) != (props.uid, props.gid)
        if chown:
            _os_call(lambda: fs.fchown(fd, props.uid, props.gid, path), "chown", path, entry)
        # After the chown, which clears set-id bits: so the mode is set again after any chown.
        if props.mode >= 0 and (chown or stat.S_IMODE(st.st_mode) != props.mode):
            _os_call(lambda: fs.fchmod(fd, props.mode, path), "chmod", path, entry)
    finally:
        os.close(fd)


def _os_call(call: Callable[[], _T], operation: str, path: str, entry: str) -> _T:
    try:
        return call()
    except PermissionError as err:
        raise PrivilegeError(f"uid {os.geteuid()} cannot {operation} this path: {err.strerror}",
                             entry=entry, file=path) from err
    except OSError as err:
        raise ConfigError(f"{operation} failed: {err.strerror}", entry=entry, file=path) from err


def _remove_tree(path: str, entry: str, fs: fsops.FileSystem) -> None:
    """Delete a file, link or folder tree through the seam (links are removed, not followed)."""
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            _remove_tree(os.path.join(path, name), entry, fs)
        _os_call(lambda: fs.rmdir(path), "rmdir", path, entry)
    else:
        _os_call(lambda: fs.unlink(path), "unlink", path, entry)


def _octal(mode: int) -> str:
    return f"{mode:04o}"
