"""
Copying one ``config_files`` entry: a glob of files and folders to ``dest``, rendered if asked.

Used by :func:`kolla_entry.start.install.apply_configs` (see its module doc for the rules). Files are
written atomically with owner and mode set before the rename; a folder ``dest`` without
``merge`` is built beside itself and swapped in, so a failure leaves the old folder as it was.
"""

from __future__ import annotations

import glob
import os
import stat
from typing import Dict, List, Mapping, NamedTuple, Set, Tuple

from kolla_entry.errors import ConfigError
from kolla_entry.fs import seam
from kolla_entry.fs.atomic import atomic_write_file
from kolla_entry.fs.digest import sha256_hex
from kolla_entry.log import get_logger
from kolla_entry.start.model import ConfigFileEntry
from kolla_entry.start.props import OwnerIds, Props, dir_mode, make_dirs, octal, os_call, remove_tree, set_props
from kolla_entry.start.render import FileReader, render

# Events keep the name of the public module they always came from.
log = get_logger("kolla_entry.configs")

# kubelet's atomic-writer entries inside a ConfigMap/Secret mount: never config files.
_KUBELET_PREFIX = ".."
# A folder dest is built beside itself under these names, then swapped in.
_STAGING_SUFFIX = ".kolla-entry-new"
_OLD_SUFFIX = ".kolla-entry-old"


class WrittenFile(NamedTuple):
    """A config file written: what the state file records (never its content)."""

    dest: str
    sha256: str
    owner: str
    perm: str
    template: bool = False

    def to_dict(self) -> Dict[str, object]:
        """
        The state file's record of this file.

        For a rendered template ``sha256`` is the template's, not the result's: a digest of a file
        holding a secret next to its known template would let anyone who reads the state file test
        guesses of that secret offline.
        """
        record: Dict[str, object] = {"dest": self.dest, "sha256": self.sha256, "owner": self.owner,
                                     "perm": self.perm}
        if self.template:
            record["sha256_of"] = "template"
        return record


class ConfigCopy:
    """Copies one ``config_files`` entry: a glob of files and folders to ``dest``."""

    def __init__(self, entry: ConfigFileEntry, ids: OwnerIds, environ: Mapping[str, str],
                 fs: seam.FileSystem, read_file: FileReader) -> None:
        self.entry = entry
        self.ids = ids
        self.environ = environ
        self.fs = fs
        self.read_file = read_file
        self.written: List[WrittenFile] = []

    def run(self) -> List[WrittenFile]:
        """
        Copy every match of the source glob.

        Returns:
            The files written, in order.

        Raises:
            ConfigError: no match (unless ``optional``), several matches for a single-file dest,
                a source that cannot be read, or a path in the way.
            TemplateError: a placeholder cannot be resolved.
            PrivilegeError: an owner or mode cannot be set by this uid.
        """
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

    def _props(self, source: str, is_dir: bool) -> Props:
        entry = self.entry
        if entry.preserve_properties:
            st = os.stat(source)
            return Props(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), f"{st.st_uid}:{st.st_gid}")
        assert entry.owner is not None and entry.perm is not None  # validated in config.py
        uid, gid = self.ids[entry.owner]
        return Props(uid, gid, dir_mode(entry.perm) if is_dir else entry.perm, str(entry.owner))

    def _copy_file(self, source: str, dest: str, shown: str) -> None:
        """Copy (or render) one file to ``dest``; ``shown`` is its final path, for the log and state."""
        content, digested = self._content(source)
        where = self.entry.entry
        if os.path.isdir(dest) and not os.path.islink(dest):
            if self.entry.merge:
                raise ConfigError("a folder is in the way of this file; merge never deletes folders",
                                  entry=f"{where}.dest", file=dest)
            remove_tree(dest, where, self.fs)
        make_dirs(os.path.dirname(dest) or "/", where, self.fs)
        props = self._props(source, is_dir=False)
        write_config_file(dest, content, props.mode, props.uid, props.gid, self.fs)
        digest = sha256_hex(digested)
        self.written.append(WrittenFile(shown, digest, props.owner, octal(props.mode), self.entry.template))
        log.info("config_file_written", entry=where, dest=shown, owner=props.owner,
                 perm=octal(props.mode), template=self.entry.template)

    def _content(self, source: str) -> Tuple[bytes, bytes]:
        """The bytes to write and the bytes the state file's digest covers (the source, for a template)."""
        try:
            with open(source, "rb") as handle:
                raw = handle.read()
        except OSError as err:
            raise ConfigError(f"cannot read the source: {err.strerror}",
                              entry=f"{self.entry.entry}.source", file=source) from err
        if not self.entry.template:
            return raw, raw
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError("a template must be UTF-8 text", entry=f"{self.entry.entry}.template",
                              file=source) from err
        return render(text, source=source, environ=self.environ, read_file=self.read_file).text.encode(), raw

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
                remove_tree(leftover, where, self.fs)
        make_dirs(parent, where, self.fs)
        try:
            self._copy_folder(source, staging, dest, set())
            self._swap(staging, dest, old)
        except BaseException:
            if os.path.lexists(staging):
                remove_tree(staging, where, self.fs)
            raise
        if os.path.lexists(old):
            remove_tree(old, where, self.fs)

    def _swap(self, staging: str, dest: str, old: str) -> None:
        """Move ``dest`` aside and ``staging`` in; put ``dest`` back if the second rename fails."""
        where = self.entry.entry
        moved = os.path.lexists(dest)
        if moved:
            os_call(lambda: self.fs.rename(dest, old), "rename", dest, where)
        try:
            os_call(lambda: self.fs.rename(staging, dest), "rename", dest, where)
        except BaseException:
            if moved:
                os_call(lambda: self.fs.rename(old, dest), "rename", dest, where)
            raise

    def _copy_folder(self, source: str, dest: str, shown: str, seen: Set[Tuple[int, int]]) -> None:
        st = os.stat(source)
        if (st.st_dev, st.st_ino) in seen:
            return  # a symlink loop back into a folder being copied
        seen = seen | {(st.st_dev, st.st_ino)}
        if os.path.lexists(dest) and (os.path.islink(dest) or not os.path.isdir(dest)):
            remove_tree(dest, self.entry.entry, self.fs)  # a file or link in the way, even with merge
        make_dirs(dest, self.entry.entry, self.fs)
        set_props(dest, self._props(source, is_dir=True), self.entry.entry, self.fs)
        for name in sorted(os.listdir(source)):
            if name.startswith(_KUBELET_PREFIX):
                continue
            child = os.path.join(source, name)
            if os.path.isdir(child):
                self._copy_folder(child, os.path.join(dest, name), os.path.join(shown, name), seen)
            elif os.path.isfile(child):
                self._copy_file(child, os.path.join(dest, name), os.path.join(shown, name))


def write_config_file(path: str, content: bytes, mode: int, uid: int, gid: int, fs: seam.FileSystem) -> None:
    """
    Write one config file atomically: temp file beside it, owner and mode set, then rename.

    Raises:
        WriteFailed: a filesystem operation failed; the old file (if any) is untouched.
    """
    # No fsync: a config file is rendered again at every start (COPY_ALWAYS), so a power loss can
    # at worst cost a copy the next start redoes; atomicity against a kill comes from the rename.
    atomic_write_file(path, content, mode=mode, uid=uid, gid=gid, fs=fs, durable=False)
