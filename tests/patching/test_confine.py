"""Confinement: paths stay below the target, only regular files are patch targets."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolla_entry.errors import PatchRefused
from kolla_entry.patching import confine
from kolla_entry.patching.confine import TargetFile, exists, read_target, top_level_exists, validate_relpath
from tests.helpers import Symlink, make_tree


class TestValidateRelpath:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("nova/compute/claims.py", "nova/compute/claims.py"),
            ("./nova//x.py", "nova/x.py"),
            ("a/./b.py", "a/b.py"),
            ("setup.cfg", "setup.cfg"),
            (".hidden/x.py", ".hidden/x.py"),
            ("a\\b.py", "a\\b.py"),
        ],
        ids=["plain", "dot-and-double-slash", "inner-dot", "top-level", "hidden-folder", "backslash-is-a-name"],
    )
    def test_normalises_safe_paths(self, given: str, expected: str) -> None:
        assert validate_relpath(given) == expected

    @pytest.mark.parametrize(
        ("given", "why"),
        [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../x.py", ".."),
            ("a/../../x.py", ".."),
            ("a/..", ".."),
            ("a\0b.py", "NUL"),
            ("a/", "folder"),
            (".", "target itself"),
            ("a/.x.py.kolla-entry-0a1b2c", "reserved"),
            (".kolla-entry-x/y.py", "reserved"),
        ],
        ids=["empty", "absolute", "dotdot-first", "dotdot-inner", "dotdot-last", "nul", "trailing-slash",
             "dot-only", "our-temp-name", "our-marker-in-folder"],
    )
    def test_refuses_unsafe_paths(self, given: str, why: str) -> None:
        with pytest.raises(PatchRefused) as info:
            validate_relpath(given)
        assert why in str(info.value)


class TestReadTarget:
    def test_reads_content_mode_and_owner(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"pkg/mod.py": (b"x = 1\n", 0o751)})
        os.chown(tmp_path / "pkg/mod.py", 1234, 2345)
        got = read_target(tmp_path, "pkg/mod.py")
        assert got == TargetFile(b"x = 1\n", stat.S_IFREG | 0o751, 1234, 2345)

    def test_missing_file_and_missing_folder_are_none(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"pkg/mod.py": b""})
        assert read_target(tmp_path, "pkg/other.py") is None
        assert read_target(tmp_path, "nope/deeper/x.py") is None

    def test_root_may_be_reached_through_a_symlink(self, tmp_path: Path) -> None:
        """Kolla's lib/python3 -> python3.X: the root itself is followed."""
        make_tree(tmp_path, {"lib/python3.11/site-packages/m.py": b"m\n", "lib/python3": Symlink("python3.11")})
        got = read_target(tmp_path / "lib/python3/site-packages", "m.py")
        assert got is not None and got.content == b"m\n"

    def test_folder_symlink_inside_root_is_followed(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"real/pkg/m.py": b"m\n", "pkg": Symlink("real/pkg"),
                             "other/up": Symlink("../real")})
        assert read_target(tmp_path, "pkg/m.py") == read_target(tmp_path, "real/pkg/m.py")
        got = read_target(tmp_path, "other/up/pkg/m.py")
        assert got is not None and got.content == b"m\n"

    @pytest.mark.parametrize(
        "link",
        ["/tmp", "..", "../outside", "a/../../outside"],
        ids=["absolute", "parent", "sibling-of-root", "climbs-through-inner-folder"],
    )
    def test_folder_symlink_leaving_root_is_refused(self, tmp_path: Path, link: str) -> None:
        root = tmp_path / "root"
        make_tree(tmp_path, {"outside/m.py": b"secret\n", "root/a/keep": b""})
        os.symlink(link, root / "pkg")
        with pytest.raises(PatchRefused) as info:
            read_target(root, "pkg/m.py")
        assert info.value.file == "pkg/m.py"

    def test_symlink_loop_is_refused(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"a": Symlink("b"), "b": Symlink("a")})
        with pytest.raises(PatchRefused, match="too many levels"):
            read_target(tmp_path, "a/x.py")

    @pytest.mark.parametrize("kind", ["symlink-inside", "symlink-outside", "folder", "fifo", "socket"])
    def test_last_component_must_be_a_regular_file(self, tmp_path: Path, kind: str) -> None:
        root = tmp_path / "root"
        make_tree(tmp_path, {"root/real.py": b"x\n", "outside.py": b"secret\n"})
        target = root / "m.py"
        if kind == "symlink-inside":
            os.symlink("real.py", target)
        elif kind == "symlink-outside":
            os.symlink(str(tmp_path / "outside.py"), target)
        elif kind == "folder":
            target.mkdir()
        elif kind == "fifo":
            os.mkfifo(target)
        else:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(str(target))
        with pytest.raises(PatchRefused, match="only regular files"):
            read_target(root, "m.py")

    def test_file_used_as_folder_is_refused(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"pkg/mod.py": b""})
        with pytest.raises(PatchRefused, match="not a folder"):
            read_target(tmp_path, "pkg/mod.py/x.py")

    def test_unsafe_relative_path_is_refused_before_any_read(self, tmp_path: Path) -> None:
        with pytest.raises(PatchRefused):
            read_target(tmp_path, "../etc/passwd")


class TestExists:
    def test_top_level_is_looked_up_without_following(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"nova/x.py": b"", "dangling": Symlink("/nonexistent")})
        assert top_level_exists(tmp_path, "nova/y/z.py")
        assert not top_level_exists(tmp_path, "releasenotes/notes/x.yaml")
        assert top_level_exists(tmp_path, "dangling/x.py")

    def test_exists_sees_any_entry_but_refuses_escapes(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"root/nova/x.py": b"", "root/nova/link": Symlink("x.py"),
                             "root/out": Symlink("../elsewhere"), "elsewhere/y.py": b""})
        root = tmp_path / "root"
        assert exists(root, "nova/x.py")
        assert exists(root, "nova/link")
        assert not exists(root, "nova/y.py")
        assert not exists(root, "glance/y.py")
        with pytest.raises(PatchRefused):
            exists(root, "out/y.py")


class TestLocate:
    def test_reports_physical_folders_and_missing_ones(self, tmp_path: Path) -> None:
        make_tree(tmp_path, {"real/pkg/m.py": b"", "pkg": Symlink("real/pkg")})
        root_fd = confine.open_root(tmp_path)
        try:
            where = confine.locate(root_fd, "pkg/new/deeper/n.py")
        finally:
            os.close(root_fd)
        assert where.dirs == ("real", "pkg")
        assert where.missing == ("new", "deeper")
        assert where.physical == "real/pkg/new/deeper/n.py"

    def test_temp_names_are_hidden_and_never_modules(self) -> None:
        name = confine.temp_name("claims.py")
        assert name.startswith(".claims.py.kolla-entry-")
        assert not name.endswith(".py")
        assert name != confine.temp_name("claims.py")
        assert len(os.fsencode(confine.temp_name("x" * 255))) <= 255


class TestProperties:
    """Hypothesis: whatever the symlinks below the root, a located path never leaves it."""

    NAMES = ["a", "b", "c", "..", "."]

    @staticmethod
    def _build(base: Path, links: List[Tuple[str, str]], dirs: List[str]) -> Path:
        root = base / "root"
        (base / "outside" / "a" / "b").mkdir(parents=True, exist_ok=True)
        root.mkdir()
        for folder in dirs:
            (root / folder).mkdir(parents=True, exist_ok=True)
        for where, target in links:
            link = root / where
            if not os.path.lexists(link) and link.parent.is_dir() and not link.parent.is_symlink():
                os.symlink(target, link)
        return root

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        dirs=st.lists(st.sampled_from(["a", "b", "a/b", "b/c", "c/a"]), max_size=4),
        links=st.lists(st.tuples(st.sampled_from(["l", "a/l", "b/m", "m"]),
                                 st.lists(st.sampled_from([*NAMES, "l", "m", "outside"]), min_size=1, max_size=4)
                                 .map("/".join)), max_size=4),
        path=st.lists(st.sampled_from(["a", "b", "c", "l", "m", "x.py"]), min_size=1, max_size=5).map("/".join),
    )
    def test_located_paths_stay_inside_the_root(self, tmp_path_factory: pytest.TempPathFactory,
                                                dirs: List[str], links: List[Tuple[str, str]], path: str) -> None:
        root = self._build(tmp_path_factory.mktemp("prop"), links, dirs)
        real_root = os.path.realpath(root)
        root_fd = confine.open_root(root)
        try:
            where = confine.locate(root_fd, path)
        except PatchRefused:
            return
        finally:
            os.close(root_fd)
        # The physical folders contain no symlink and resolve to the same place inside the root.
        physical = os.path.join(real_root, *where.dirs)
        assert os.path.realpath(physical) == physical
        assert physical == real_root or physical.startswith(real_root + os.sep)
        assert ".." not in where.missing and "." not in where.missing

    @given(st.text(alphabet="ab./\\\0-", max_size=12))
    def test_validated_paths_are_normal_and_stable(self, text: str) -> None:
        try:
            rel = validate_relpath(text)
        except PatchRefused:
            return
        parts = rel.split("/")
        assert "" not in parts and "." not in parts and ".." not in parts
        assert not rel.startswith("/") and "\0" not in rel
        assert validate_relpath(rel) == rel
