"""The atomic single-file writer: config files, the state file and the journal (kolla_entry.fs.atomic)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Dict, Tuple

import pytest

from kolla_entry.errors import WriteFailed
from kolla_entry.fs.atomic import atomic_write_file
from tests.faults import FaultFS, HookFS, crash_at
from tests.helpers import read_tree


class TestAtomicWriteFile:
    def test_writes_content_mode_and_owner(self, tmp_path: Path) -> None:
        atomic_write_file(tmp_path / "nova.conf", b"[DEFAULT]\n", mode=0o640, uid=1234, gid=2345)
        st = (tmp_path / "nova.conf").lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o640)
        assert read_tree(tmp_path) == {"nova.conf": (b"[DEFAULT]\n", 0o640)}

    def test_secret_is_never_readable_by_others_and_owned_before_the_rename(self, tmp_path: Path) -> None:
        (tmp_path / "secret.conf").write_bytes(b"old\n")
        seen: Dict[str, Tuple[int, int]] = {}

        def inspect(operation: str, path: str) -> None:
            for temp in tmp_path.glob(".secret.conf.kolla-entry-*"):
                st = temp.lstat()
                seen[operation] = (stat.S_IMODE(st.st_mode), st.st_uid)

        atomic_write_file(tmp_path / "secret.conf", b"password\n", mode=0o600, uid=1234, gid=1234,
                          fs=HookFS(inspect))
        assert seen["write"] == (0o600, 0)
        assert seen["replace"] == (0o600, 1234)
        assert all(mode & 0o077 == 0 for mode, _uid in seen.values())

    def test_replaces_a_symlink_instead_of_following_it(self, tmp_path: Path) -> None:
        (tmp_path / "elsewhere").write_bytes(b"keep\n")
        os.symlink(str(tmp_path / "elsewhere"), tmp_path / "app.conf")
        atomic_write_file(tmp_path / "app.conf", b"new\n", mode=0o644)
        assert read_tree(tmp_path) == {"elsewhere": (b"keep\n", 0o644), "app.conf": (b"new\n", 0o644)}

    def test_accepts_str_paths(self, tmp_path: Path) -> None:
        atomic_write_file(str(tmp_path / "a.conf"), b"a\n", mode=0o600)
        assert read_tree(tmp_path) == {"a.conf": (b"a\n", 0o600)}

    @pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC, errno.EACCES], ids=["EIO", "ENOSPC", "EACCES"])
    def test_every_failing_operation_leaves_the_old_file(self, tmp_path: Path, code: int) -> None:
        (tmp_path / "app.conf").write_bytes(b"old\n")
        n = 0
        while True:
            n += 1
            fs = FaultFS(n, code)
            try:
                atomic_write_file(tmp_path / "app.conf", b"new\n", mode=0o640, uid=0, gid=0, fs=fs)
            except WriteFailed as err:
                assert err.operation == fs.calls[n - 1][0]
                assert err.file == str(tmp_path / "app.conf")
                if n == len(fs.calls) and err.operation == "fsync" and "replace" in str(fs.calls):
                    assert "file written" in str(err)
                expected = b"new\n" if fs.calls[n - 1] == ("fsync", str(tmp_path / "app.conf")) and \
                    any(op == "replace" for op, _p in fs.calls[: n - 1]) else b"old\n"
                assert [p.name for p in tmp_path.iterdir()] == ["app.conf"]
                assert (tmp_path / "app.conf").read_bytes() == expected
                (tmp_path / "app.conf").write_bytes(b"old\n")
                continue
            assert len(fs.calls) < n
            break
        assert n > 5
        assert (tmp_path / "app.conf").read_bytes() == b"new\n"

    def test_a_killed_write_never_leaves_a_half_file_or_an_exposed_secret(self, tmp_path: Path) -> None:
        """Issue #8: killed at any operation, the config is old or new; a leftover temp is private."""
        target = tmp_path / "keystone.conf"
        n = 0
        while True:
            n += 1
            target.write_bytes(b"old\n")
            target.chmod(0o644)
            code, _ops = crash_at(n, lambda fs: atomic_write_file(target, b"password\n", mode=0o640,
                                                                 uid=1234, gid=1234, fs=fs))
            st = target.lstat()
            assert (target.read_bytes(), stat.S_IMODE(st.st_mode)) in ((b"old\n", 0o644), (b"password\n", 0o640))
            if target.read_bytes() == b"password\n":
                assert (st.st_uid, st.st_gid) == (1234, 1234)
            for temp in tmp_path.glob(".keystone.conf.kolla-entry-*"):
                assert stat.S_IMODE(temp.lstat().st_mode) & 0o007 == 0, f"N={n}: temp readable by others"
            from kolla_entry.patching.transaction import remove_stale_temps

            remove_stale_temps(target)
            assert os.listdir(tmp_path) == ["keystone.conf"]
            if code == 0:
                break
        assert target.read_bytes() == b"password\n" and n > 5

    def test_missing_folder_is_a_write_failure(self, tmp_path: Path) -> None:
        with pytest.raises(WriteFailed) as info:
            atomic_write_file(tmp_path / "nope" / "a.conf", b"", mode=0o600)
        assert info.value.operation == "open"

    def test_a_folder_at_the_destination_is_a_write_failure(self, tmp_path: Path) -> None:
        (tmp_path / "a.conf").mkdir()
        with pytest.raises(WriteFailed) as info:
            atomic_write_file(tmp_path / "a.conf", b"", mode=0o600)
        assert info.value.operation == "replace"
        assert read_tree(tmp_path) == {"a.conf": "<dir>"}
