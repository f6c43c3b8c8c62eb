"""kolla_entry.start.install: config files, folders and permissions put in place in temporary roots."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import pytest

from kolla_entry.errors import ConfigError, PrivilegeError, TemplateError
from kolla_entry.fs import seam
from kolla_entry.start.install import apply_configs, dir_mode, resolve_owner, resolve_owners
from kolla_entry.start.reader import Owner, ServiceConfig, parse_config
from tests import sysusers
from tests.helpers import Symlink, configmap_dir, make_tree, read_tree


@pytest.fixture(scope="module")
def accounts() -> Iterator[sysusers.Accounts]:
    with sysusers.created() as created:
        yield created


def _config(data: Dict[str, Any]) -> ServiceConfig:
    return parse_config(data, "/cfg/config.json")


def _apply(data: Dict[str, Any], environ: Optional[Mapping[str, str]] = None,
           fs: seam.FileSystem = seam.REAL) -> List[str]:
    config = _config(data)
    written = apply_configs(config, resolve_owners(config), environ=environ or {}, fs=fs)
    return [item.dest for item in written]


def _owner(path: Path) -> tuple:
    st = path.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def _entry(source: Path, dest: str, **extra: Any) -> Dict[str, Any]:
    return {"source": str(source), "dest": dest, "owner": "root", "perm": "0640", **extra}


class TestConfigFiles:
    def test_single_file_with_owner_and_perm(self, tmp_path: Path, accounts: sysusers.Accounts) -> None:
        src = make_tree(tmp_path / "src", {"keystone.conf": b"[DEFAULT]\n"})
        dest = tmp_path / "etc/keystone/keystone.conf"
        svc = accounts.service
        written = _apply({"config_files": [
            {"source": str(src / "keystone.conf"), "dest": str(dest), "owner": f"{svc.name}:{accounts.extra_group}",
             "perm": "0600"}]})
        assert written == [str(dest)]
        assert dest.read_bytes() == b"[DEFAULT]\n"
        assert _owner(dest) == (svc.uid, accounts.extra_gid, 0o600)
        # Created parents are ours and 0755, as in Kolla; no temp file is left beside the dest.
        assert _owner(dest.parent)[2] == 0o755
        assert os.listdir(dest.parent) == ["keystone.conf"]

    def test_owner_without_group_uses_primary_group(self, tmp_path: Path, accounts: sysusers.Accounts) -> None:
        src = make_tree(tmp_path / "src", {"a": b"x"})
        for i, owner in enumerate([accounts.service.name, f"{accounts.service.name}:", str(accounts.service.uid)]):
            dest = tmp_path / f"out{i}"
            _apply({"config_files": [_entry(src / "a", str(dest), owner=owner)]})
            assert _owner(dest)[:2] == (accounts.service.uid, accounts.service.gid)

    def test_three_digit_perm_is_octal(self, tmp_path: Path) -> None:
        """Kolla before 2026 applied "644" as decimal 644 (0o1204)."""
        src = make_tree(tmp_path / "src", {"a": b"x"})
        _apply({"config_files": [_entry(src / "a", str(tmp_path / "out"), perm="644")]})
        assert _owner(tmp_path / "out")[2] == 0o644

    def test_glob_into_a_dest_folder(self, tmp_path: Path) -> None:
        src = make_tree(tmp_path / "src", {"a.ini": b"a", "b.ini": b"b", "c.txt": b"c", ".hidden.ini": b"h"})
        written = _apply({"config_files": [_entry(src / "*.ini", f"{tmp_path}/etc/")]})
        assert written == [f"{tmp_path}/etc/a.ini", f"{tmp_path}/etc/b.ini"]
        assert read_tree(tmp_path / "etc") == {"a.ini": (b"a", 0o640), "b.ini": (b"b", 0o640)}

    def test_glob_with_several_matches_needs_a_folder_dest(self, tmp_path: Path) -> None:
        src = make_tree(tmp_path / "src", {"a.ini": b"a", "b.ini": b"b"})
        with pytest.raises(ConfigError) as info:
            _apply({"config_files": [_entry(src / "*.ini", f"{tmp_path}/etc/x.ini")]})
        assert info.value.entry == "config_files[0].dest" and "end dest with /" in str(info.value)
        assert not (tmp_path / "etc").exists()

    def test_missing_required_source_names_the_entry(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as info:
            _apply({"config_files": [_entry(tmp_path / "nothing*.conf", f"{tmp_path}/etc/")]})
        assert info.value.entry == "config_files[0].source" and "optional" in str(info.value)

    def test_optional_missing_source_is_skipped(self, tmp_path: Path) -> None:
        assert _apply({"config_files": [_entry(tmp_path / "absent.conf", f"{tmp_path}/etc/x", optional=True)]}) == []
        assert not (tmp_path / "etc").exists()

    def test_dest_file_is_replaced_not_followed(self, tmp_path: Path) -> None:
        """A symlink at dest is replaced by the file; its target stays untouched."""
        src = make_tree(tmp_path / "src", {"a": b"new"})
        make_tree(tmp_path, {"victim": b"keep", "etc/a": Symlink(str(tmp_path / "victim"))})
        _apply({"config_files": [_entry(src / "a", f"{tmp_path}/etc/a")]})
        assert (tmp_path / "victim").read_bytes() == b"keep"
        assert not (tmp_path / "etc/a").is_symlink() and (tmp_path / "etc/a").read_bytes() == b"new"

    def test_folder_source_replaces_dest_without_merge(self, tmp_path: Path) -> None:
        src = make_tree(tmp_path / "src/conf.d", {"one.conf": b"1", "sub/two.conf": b"2"})
        make_tree(tmp_path / "etc/conf.d", {"stale.conf": b"old"})
        _apply({"config_files": [_entry(src, f"{tmp_path}/etc/conf.d")]})
        assert read_tree(tmp_path / "etc/conf.d") == {"one.conf": (b"1", 0o640), "sub/two.conf": (b"2", 0o640)}
        # Folders get the search bit wherever the read bit is set (Kolla 1fe983df4).
        assert _owner(tmp_path / "etc/conf.d/sub")[2] == 0o750

    def test_merge_keeps_existing_files(self, tmp_path: Path) -> None:
        src = make_tree(tmp_path / "src/conf.d", {"one.conf": b"1"})
        make_tree(tmp_path / "etc/conf.d", {"one.conf": b"old", "local.conf": b"mine"})
        _apply({"config_files": [_entry(src, f"{tmp_path}/etc/conf.d", merge=True)]})
        tree = read_tree(tmp_path / "etc/conf.d")
        assert tree["one.conf"] == (b"1", 0o640) and tree["local.conf"][0] == b"mine"

    def test_configmap_folder_source_skips_kubelet_entries(self, tmp_path: Path) -> None:
        """A ConfigMap mount as a folder source: the keys are copied, ..data and ..<stamp> are not."""
        mount = configmap_dir(tmp_path, "cm", {"policy.yaml": b"p", "api.ini": b"a"})
        _apply({"config_files": [_entry(mount, f"{tmp_path}/etc/svc")]})
        assert read_tree(tmp_path / "etc/svc") == {"api.ini": (b"a", 0o640), "policy.yaml": (b"p", 0o640)}

    def test_configmap_file_source_is_followed(self, tmp_path: Path) -> None:
        mount = configmap_dir(tmp_path, "cm", {"nova.conf": b"[DEFAULT]\n"})
        _apply({"config_files": [_entry(mount / "*.conf", f"{tmp_path}/etc/nova/")]})
        assert read_tree(tmp_path / "etc/nova") == {"nova.conf": (b"[DEFAULT]\n", 0o640)}

    def test_preserve_properties_copies_mode_and_owner(self, tmp_path: Path,
                                                       accounts: sysusers.Accounts) -> None:
        src = make_tree(tmp_path / "src", {"tool.sh": (b"#!/bin/sh\n", 0o750)})
        os.chown(src / "tool.sh", accounts.other.uid, accounts.other.gid)
        _apply({"config_files": [{"source": str(src / "tool.sh"), "dest": f"{tmp_path}/bin/tool.sh",
                                  "preserve_properties": True}]})
        assert _owner(tmp_path / "bin/tool.sh") == (accounts.other.uid, accounts.other.gid, 0o750)

    def test_template_renders_env_and_file_placeholders(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"secrets/db": b"pa55word-xyz\n",
                             "src/nova.conf": f"[DEFAULT]\nmy_ip = ${{env:POD_IP}}\n"
                                              f"connection = mysql://nova:${{file:{tmp_path}/secrets/db}}@db/nova\n"
                                              "url = ${database.connection}\n".encode()})
        _apply({"config_files": [_entry(tmp_path / "src/nova.conf", f"{tmp_path}/etc/nova.conf", template=True)]},
               environ={"POD_IP": "10.1.2.3"})
        assert (tmp_path / "etc/nova.conf").read_text() == (
            "[DEFAULT]\nmy_ip = 10.1.2.3\nconnection = mysql://nova:pa55word-xyz@db/nova\n"
            "url = ${database.connection}\n")

    def test_without_template_placeholders_are_copied_verbatim(self, tmp_path: Path) -> None:
        src = make_tree(tmp_path / "src", {"a": b"x=${env:HOME}\n"})
        _apply({"config_files": [_entry(src / "a", f"{tmp_path}/a")]}, environ={"HOME": "/root"})
        assert (tmp_path / "a").read_bytes() == b"x=${env:HOME}\n"

    def test_unresolved_placeholder_writes_nothing(self, tmp_path: Path) -> None:
        src = make_tree(tmp_path / "src", {"a": b"ok\nx=${env:NOPE}\n"})
        make_tree(tmp_path / "etc", {"a": b"previous"})
        with pytest.raises(TemplateError) as info:
            _apply({"config_files": [_entry(src / "a", f"{tmp_path}/etc/a", template=True)]})
        assert "line 2" in str(info.value) and info.value.file == str(src / "a")
        assert read_tree(tmp_path / "etc") == {"a": (b"previous", 0o644)}


class TestDirectoriesAndFiles:
    def test_directories_and_files_are_created(self, tmp_path: Path, accounts: sysusers.Accounts) -> None:
        owner = f"{accounts.service.name}:{accounts.extra_group}"
        _apply({"directories": [{"path": f"{tmp_path}/log/kolla/svc", "owner": owner, "perm": "2775"}],
                "files": [{"path": f"{tmp_path}/log/kolla/svc/svc.log", "owner": owner, "perm": "0664"}]})
        assert _owner(tmp_path / "log/kolla/svc") == (accounts.service.uid, accounts.extra_gid, 0o2775)
        assert _owner(tmp_path / "log/kolla/svc/svc.log") == (accounts.service.uid, accounts.extra_gid, 0o664)

    def test_existing_file_keeps_its_content(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"svc.log": b"yesterday\n"})
        _apply({"files": [{"path": f"{tmp_path}/svc.log", "owner": "root", "perm": "0600"}]})
        assert read_tree(tmp_path) == {"svc.log": (b"yesterday\n", 0o600)}

    def test_file_needs_its_parent(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as info:
            _apply({"files": [{"path": f"{tmp_path}/no/svc.log", "owner": "root", "perm": "0600"}]})
        assert info.value.entry == "files[0].path" and "directories" in str(info.value)

    @pytest.mark.parametrize("section", ["directories", "files"])
    def test_symlinks_are_refused(self, tmp_path: Path, section: str) -> None:
        """A link planted where a folder or file is expected is never followed (no chown of its target)."""
        make_tree(tmp_path, {"victim/f": b"x", "link": Symlink(str(tmp_path / "victim"))})
        before = _owner(tmp_path / "victim")
        with pytest.raises(ConfigError) as info:
            _apply({section: [{"path": f"{tmp_path}/link", "owner": "root", "perm": "0777"}]})
        assert "symlink" in str(info.value)
        assert _owner(tmp_path / "victim") == before


class TestPermissions:
    def test_glob_recurse_and_exclude(self, tmp_path: Path, accounts: sysusers.Accounts) -> None:
        make_tree(tmp_path / "data", {"a.log": b"", "keep/b.log": b"", "skip/c.log": b"", "d.gz": b""})
        os.symlink("/etc/passwd", tmp_path / "data/evil")
        passwd_before = _owner(Path("/etc/passwd"))
        _apply({"permissions": [{"path": f"{tmp_path}/data", "owner": accounts.service.name, "perm": "0640",
                                 "recurse": True, "exclude": ["/skip$", "\\.gz$"]}]})
        uid = accounts.service.uid
        assert _owner(tmp_path / "data")[:1] == (uid,) and _owner(tmp_path / "data")[2] == 0o750
        assert _owner(tmp_path / "data/a.log") == (uid, accounts.service.gid, 0o640)
        assert _owner(tmp_path / "data/keep/b.log")[0] == uid
        # ANY exclude pattern excludes (Kolla needed all of them to match), and pruned folders stay.
        assert _owner(tmp_path / "data/skip/c.log")[0] == 0 and _owner(tmp_path / "data/skip")[0] == 0
        assert _owner(tmp_path / "data/d.gz")[0] == 0
        assert _owner(Path("/etc/passwd")) == passwd_before

    def test_subfolder_swapped_for_a_symlink_during_the_walk_is_not_followed(
            self, tmp_path: Path, accounts: sysusers.Accounts) -> None:
        """A service user who can write a log folder cannot redirect root's recursive chown outside it."""
        make_tree(tmp_path / "logs", {"sub/a.log": b"", "sub/b.log": b""})
        make_tree(tmp_path / "outside", {"a.log": b"secret", "b.log": b"secret"})
        outside_before = read_tree(tmp_path / "outside"), _owner(tmp_path / "outside/a.log")

        class SwapFS(seam.FileSystem):
            swapped = False

            def _count(self, operation: str, path: str) -> None:
                if not self.swapped and path.endswith("sub/a.log"):
                    os.rename(tmp_path / "logs/sub", tmp_path / "logs/sub.moved")
                    os.symlink(tmp_path / "outside", tmp_path / "logs/sub")
                    SwapFS.swapped = True

        _apply({"permissions": [{"path": f"{tmp_path}/logs", "owner": accounts.service.name, "perm": "0640",
                                 "recurse": True}]}, fs=SwapFS())
        assert SwapFS.swapped
        assert (read_tree(tmp_path / "outside"), _owner(tmp_path / "outside/a.log")) == outside_before
        assert _owner(tmp_path / "outside/b.log")[0] == 0
        assert _owner(tmp_path / "logs/sub.moved/a.log")[0] == accounts.service.uid

    @pytest.mark.parametrize("vanishing", ["b.log", "c.log"])
    def test_files_removed_during_the_walk_are_passed_over(self, tmp_path: Path, accounts: sysusers.Accounts,
                                                           vanishing: str) -> None:
        """A log rotated away in a shared folder while the walk runs is gone, not a traceback."""
        make_tree(tmp_path / "logs", {"sub/a.log": b"", "sub/b.log": b"", "sub/c.log": b""})

        class RotateFS(seam.FileSystem):
            def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: Optional[int] = None) -> int:
                # b.log: gone after the walk's stat, before the open; c.log: gone before its stat.
                if path == ("b.log" if vanishing == "b.log" else "a.log") and dir_fd is not None:
                    os.unlink(tmp_path / "logs/sub" / vanishing)
                return super().open(path, flags, mode, dir_fd=dir_fd)

        _apply({"permissions": [{"path": f"{tmp_path}/logs", "owner": accounts.service.name, "perm": "0640",
                                 "recurse": True}]}, fs=RotateFS())
        assert not (tmp_path / "logs/sub" / vanishing).exists()
        assert _owner(tmp_path / "logs/sub/a.log")[0] == accounts.service.uid

    def test_glob_without_match_is_fine_and_perm_is_optional(self, tmp_path: Path,
                                                             accounts: sysusers.Accounts) -> None:
        make_tree(tmp_path, {"x.log": (b"", 0o604)})
        _apply({"permissions": [{"path": f"{tmp_path}/*.log", "owner": accounts.other.name},
                                {"path": f"{tmp_path}/*.none", "owner": "root"}]})
        assert _owner(tmp_path / "x.log") == (accounts.other.uid, accounts.other.gid, 0o604)


class TestOwners:
    def test_unknown_user_and_group_name_the_entry(self) -> None:
        with pytest.raises(ConfigError) as info:
            resolve_owners(_config({"directories": [{"path": "/x", "owner": "nosuchuser-zz", "perm": "0700"}]}))
        assert info.value.entry == "directories[0].owner" and "nosuchuser-zz" in str(info.value)
        with pytest.raises(ConfigError) as info:
            resolve_owner(Owner("root", "nosuchgroup-zz"), "files[0].owner")
        assert "unknown group" in str(info.value)

    def test_numeric_ids_without_accounts(self) -> None:
        assert resolve_owner(Owner("54321"), "x") == (54321, 54321)
        assert resolve_owner(Owner("54321", "7"), "x") == (54321, 7)

    def test_dir_mode_adds_search_bits(self) -> None:
        assert dir_mode(0o640) == 0o750 and dir_mode(0o2664) == 0o2775 and dir_mode(0o600) == 0o700


class _FailNth(seam.FileSystem):
    """Fail the Nth seam operation of one kind with EIO (the issue #8 fault seam)."""

    def __init__(self, operation: str, nth: int) -> None:
        self.operation, self.nth, self.seen = operation, nth, 0

    def _count(self, operation: str, path: str) -> None:
        if operation == self.operation:
            self.seen += 1
            if self.seen == self.nth:
                raise OSError(5, "Input/output error")


@pytest.mark.parametrize(("operation", "nth"),
                         [("open", 3), ("write", 2), ("replace", 2), ("rename", 1), ("rename", 2)])
def test_failed_folder_copy_leaves_the_old_folder(tmp_path: Path, operation: str, nth: int) -> None:
    """A folder dest is built beside itself and swapped in: a failure leaves the old one, no leftovers."""
    src = make_tree(tmp_path / "src/conf.d", {"a.conf": b"new a", "b.conf": b"new b", "c.conf": b"new c"})
    make_tree(tmp_path / "etc/conf.d", {"a.conf": b"old a", "z.conf": b"old z"})
    before = read_tree(tmp_path / "etc")
    with pytest.raises(Exception) as info:
        _apply({"config_files": [_entry(src, f"{tmp_path}/etc/conf.d")]}, fs=_FailNth(operation, nth))
    assert "Input/output error" in str(info.value)
    assert read_tree(tmp_path / "etc") == before


def test_leftovers_of_a_killed_start_are_cleaned(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src/conf.d", {"a.conf": b"a"})
    make_tree(tmp_path / "etc", {".conf.d.kolla-entry-new/half": b"h", ".conf.d.kolla-entry-old/x": b"x"})
    _apply({"config_files": [_entry(src, f"{tmp_path}/etc/conf.d")]})
    assert read_tree(tmp_path / "etc") == {"conf.d/a.conf": (b"a", 0o640)}


class _FailChown(seam.FileSystem):
    def _count(self, operation: str, path: str) -> None:
        if operation == "chown":
            raise PermissionError(1, "Operation not permitted")


def test_chown_refused_is_a_privilege_error_naming_uid(tmp_path: Path, accounts: sysusers.Accounts) -> None:
    make_tree(tmp_path, {"svc.log": b""})
    with pytest.raises(PrivilegeError) as info:
        _apply({"files": [{"path": f"{tmp_path}/svc.log", "owner": accounts.service.name, "perm": "0600"}]},
               fs=_FailChown())
    assert f"uid {os.geteuid()}" in str(info.value) and "chown" in str(info.value)
