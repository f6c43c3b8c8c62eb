"""
Putting the service's config in place: ``directories``, ``files``, ``config_files``, ``permissions``.

The order is Kolla master's (kolla:docker/base/set_configs.py): directories, files, config files,
then permissions. Every file is written atomically with owner and mode set before the rename
(:func:`kolla_entry.fs.atomic.atomic_write_file`); every other change goes through :mod:`kolla_entry.fs.seam`.

Differences from Kolla, on purpose:
- Symlinks are never followed when setting owners and modes (``permissions``, ``directories``,
  ``files``): a service user who can write a log folder could otherwise plant a link that makes the
  root entrypoint chown any file. Links met there are skipped (``permissions``) or refused.
- Inside a directory source, kubelet's ``..data``/``..<timestamp>`` entries are skipped and other
  symlinks are copied as the files they point to.
- A source glob matching several files needs a ``dest`` ending in ``/`` (Kolla let the last win).
- ``exclude`` patterns are ``re.search``'d on the full path; ANY match excludes (Kolla needed all),
  and an excluded folder is not descended into.

Copying a ``config_files`` entry lives in :mod:`kolla_entry.start.copier`, the filesystem steps
the writers share in :mod:`kolla_entry.start.props`; this module resolves owners, creates
``directories`` and ``files`` and walks ``permissions``.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import re
import stat
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from kolla_entry.errors import ConfigError
from kolla_entry.fs import seam
from kolla_entry.log import get_logger
from kolla_entry.start.copier import ConfigCopy, WrittenFile, write_config_file
from kolla_entry.start.props import OwnerIds, Props, dir_mode, make_dirs, octal, os_call, refuse_non_file, set_props
from kolla_entry.start.reader import Owner, PathEntry, PermissionEntry, ServiceConfig
from kolla_entry.start.render import FileReader, read_secret_file

__all__ = [
    "OwnerIds",
    "WrittenFile",
    "apply_configs",
    "dir_mode",
    "make_directory",
    "make_file",
    "resolve_owner",
    "resolve_owners",
    "set_permissions",
    "write_config_file",
]

# The logger name is a field of every JSON log line: it stays what it was before the layout move.
log = get_logger("kolla_entry.configs")


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
    fs: seam.FileSystem = seam.REAL,
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
        written += ConfigCopy(config_file, ids, environ, fs, read_file).run()
    for permission in config.permissions:
        set_permissions(permission, ids, fs)
    return tuple(written)


def make_directory(entry: PathEntry, ids: OwnerIds, fs: seam.FileSystem = seam.REAL) -> None:
    """
    Create a ``directories`` entry (and its parents) and set its owner and mode.

    Raises:
        ConfigError: something that is not a folder is in the way (a symlink included).
    """
    if os.path.islink(entry.path):
        raise ConfigError("a symlink is at this path; it is never followed", entry=f"{entry.entry}.path",
                          file=entry.path)
    make_dirs(entry.path, entry.entry, fs)
    uid, gid = ids[entry.owner]
    set_props(entry.path, Props(uid, gid, dir_mode(entry.perm), str(entry.owner)), entry.entry, fs)
    log.info("directory_ready", path=entry.path, owner=str(entry.owner), perm=octal(dir_mode(entry.perm)))


def make_file(entry: PathEntry, ids: OwnerIds, fs: seam.FileSystem = seam.REAL) -> None:
    """
    Create a ``files`` entry as an empty file unless it exists, then set its owner and mode.

    Raises:
        ConfigError: the parent folder is missing, or a symlink or folder is at the path.
    """
    if not os.path.isdir(os.path.dirname(entry.path)):
        raise ConfigError("the parent folder does not exist; add it to \"directories\"",
                          entry=f"{entry.entry}.path", file=entry.path)
    refuse_non_file(entry.path, f"{entry.entry}.path")
    if not os.path.lexists(entry.path):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os_call(lambda: fs.open(entry.path, flags, 0o600), "open", entry.path, entry.entry)
        os.close(fd)
    uid, gid = ids[entry.owner]
    set_props(entry.path, Props(uid, gid, entry.perm, str(entry.owner)), entry.entry, fs)
    log.info("file_ready", path=entry.path, owner=str(entry.owner), perm=octal(entry.perm))


def set_permissions(entry: PermissionEntry, ids: OwnerIds, fs: seam.FileSystem = seam.REAL) -> int:
    """
    Set owner (and mode, if given) on every match of the entry's glob, recursively if asked.

    The recursion walks with folder descriptors and never follows a symlink (``os.fwalk``): a
    service user who can write a log folder cannot redirect root's chown by swapping a subfolder
    for a symlink during the walk.

    Returns:
        The number of paths changed or checked.

    Raises:
        PrivilegeError: this uid cannot change a match.
    """
    uid, gid = ids[entry.owner]
    excludes = [re.compile(pattern) for pattern in entry.exclude]

    def props(is_dir: bool) -> Props:
        mode = -1 if entry.perm is None else (dir_mode(entry.perm) if is_dir else entry.perm)
        return Props(uid, gid, mode, str(entry.owner))

    def excluded(path: str) -> bool:
        return any(pattern.search(path) for pattern in excludes)

    count = 0
    matches = sorted(glob.glob(entry.path))
    for path in matches:
        if excluded(path) or os.path.islink(path) or not (os.path.isdir(path) or os.path.isfile(path)):
            continue
        is_dir = os.path.isdir(path)
        set_props(path, props(is_dir), entry.entry, fs)
        count += 1
        if is_dir and entry.recurse:
            count += _set_tree(path, props, excluded, entry.entry, fs)
    log.info("permissions_set", path=entry.path, matches=len(matches), changed=count,
             owner=str(entry.owner), perm=None if entry.perm is None else octal(entry.perm))
    return count


def _set_tree(top: str, props: Callable[[bool], Props], excluded: Callable[[str], bool], entry: str,
              fs: seam.FileSystem) -> int:
    """Apply ``props`` below ``top``, relative to each open folder; excluded folders are not entered."""
    count = 0
    for root, dirnames, filenames, dir_fd in os.fwalk(top, follow_symlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not excluded(os.path.join(root, d)))
        for name in dirnames:
            set_props(os.path.join(root, name), props(True), entry, fs, dir_fd=dir_fd, name=name)
            count += 1
        for name in sorted(filenames):
            full = os.path.join(root, name)
            if excluded(full):
                continue
            try:
                mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue  # removed since the walk listed it (a rotated log in a shared folder)
            if stat.S_ISREG(mode):
                set_props(full, props(False), entry, fs, dir_fd=dir_fd, name=name)
                count += 1
    return count
