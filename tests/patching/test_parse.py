"""Tests for kolla_entry.patching.parse: real patches from git and GNU diff, mangled copies, junk."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import unidiff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolla_entry.errors import PatchInvalid
from kolla_entry.patching.model import ADD, CONTEXT, COPY, CREATE, DELETE, MODIFY, REMOVE, RENAME, FilePatch, Patch
from kolla_entry.patching.parse import names, parse_patch, strip_path
from tests.helpers import make_tree

DATA = Path(__file__).parent / "data" / "parse"
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Op",
    "GIT_AUTHOR_EMAIL": "op@example.org",
    "GIT_COMMITTER_NAME": "Op",
    "GIT_COMMITTER_EMAIL": "op@example.org",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


class Repo:
    """A throw-away git repository driven with the real git."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> bytes:
        env = {**os.environ, **GIT_ENV}
        done = subprocess.run(["git", *args], cwd=self.root, env=env, check=True, capture_output=True)
        return done.stdout

    def write(self, files: Dict[str, bytes]) -> None:
        make_tree(self.root, files)

    def commit(self, message: str = "base") -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def diff(self, *args: str) -> bytes:
        self.git("add", "-A")
        return self.git("diff", "--cached", *args)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def _parse(data: bytes) -> Patch:
    return parse_patch(data, name="test.patch")


def _only(patch: Patch) -> FilePatch:
    assert len(patch.files) == 1, patch.files
    return patch.files[0]


def _invalid(data: bytes) -> PatchInvalid:
    with pytest.raises(PatchInvalid) as caught:
        _parse(data)
    assert caught.value.patch == "test.patch"
    return caught.value


def _lines(n: int, word: str = "line") -> bytes:
    return b"".join(f"{word} {i}\n".encode() for i in range(1, n + 1))


# --- git diff -------------------------------------------------------------------------------------


class TestGitDiff:
    def test_modify_keeps_prefixes_counts_and_positions(self, repo: Repo) -> None:
        """A plain change: a/ b/ paths as written, hunk counts, 1-based indexes and patch lines."""
        repo.write({"nova/x.py": _lines(30)})
        repo.commit()
        repo.write({"nova/x.py": _lines(30).replace(b"line 3\n", b"LINE 3\n").replace(b"line 25\n", b"")})
        data = repo.diff()
        patch = _parse(data)
        file = _only(patch)
        assert (file.old_path, file.new_path, file.kind) == ("a/nova/x.py", "b/nova/x.py", MODIFY)
        assert (file.old_mode, file.new_mode, file.patch_line) == (None, None, 1)
        assert [h.index for h in file.hunks] == [1, 2]
        first = file.hunks[0]
        assert (first.old_start, first.old_len, first.new_start, first.new_len) == (1, 6, 1, 6)
        assert data.split(b"\n")[first.patch_line - 1].startswith(b"@@ -1,6 +1,6 @@")
        assert data.split(b"\n")[file.hunks[1].patch_line - 1].startswith(b"@@ -22,7 +22,6 @@")
        assert [(ln.op, ln.text) for ln in first.lines if ln.op != CONTEXT] == [
            (REMOVE, b"line 3"), (ADD, b"LINE 3"),
        ]
        assert patch.sha256 == hashlib.sha256(data).hexdigest()
        assert patch.name == "test.patch"

    def test_agrees_with_unidiff_on_plain_git_diff(self, repo: Repo) -> None:
        """Where unidiff works (a clean git diff), both read the same hunks."""
        repo.write({"a.py": _lines(40), "b.py": _lines(10, "b")})
        repo.commit()
        repo.write({"a.py": _lines(40).replace(b"line 7\n", b"seven\n") + b"tail\n", "b.py": b"b 1\n"})
        data = repo.diff()
        ours = _parse(data)
        theirs = unidiff.PatchSet(data.decode())
        assert len(ours.files) == len(theirs)
        for mine, other in zip(ours.files, theirs):
            assert [(h.old_start, h.old_len, h.new_start, h.new_len) for h in mine.hunks] == [
                (h.source_start, h.source_length, h.target_start, h.target_length) for h in other
            ]
            assert [(ln.op, ln.text.decode()) for h in mine.hunks for ln in h.lines] == [
                (ln.line_type, ln.value.rstrip("\n")) for h in other for ln in h
            ]

    def test_new_and_deleted_files(self, repo: Repo) -> None:
        """new file mode / deleted file mode: CREATE and DELETE, /dev/null side is None, modes as ints."""
        repo.write({"gone.py": b"x = 1\n", "empty_gone": b""})
        repo.commit()
        (repo.root / "gone.py").unlink()
        (repo.root / "empty_gone").unlink()
        repo.write({"tool.sh": (b"#!/bin/sh\n", 0o755), "empty_new": b""})
        files = {f.kind + ":" + f.first_path: f for f in _parse(repo.diff("--no-renames")).files}
        created = files["create:b/tool.sh"]
        assert (created.old_path, created.new_path, created.new_mode, created.old_mode) == (
            None, "b/tool.sh", 0o100755, None,
        )
        assert [(ln.op, ln.text) for ln in created.hunks[0].lines] == [(ADD, b"#!/bin/sh")]
        deleted = files["delete:a/gone.py"]
        assert (deleted.new_path, deleted.old_mode, deleted.hunks[0].new_len) == (None, 0o100644, 0)
        empty_new = files["create:b/empty_new"]
        assert (empty_new.hunks, empty_new.old_path) == ((), None)
        empty_gone = files["delete:a/empty_gone"]
        assert (empty_gone.hunks, empty_gone.new_path) == ((), None)

    def test_mode_only_change(self, repo: Repo) -> None:
        """old mode / new mode without hunks: a MODIFY with both modes, paths from diff --git."""
        repo.write({"bin/run me": b"echo\n"})
        repo.commit()
        (repo.root / "bin/run me").chmod(0o755)
        file = _only(_parse(repo.diff()))
        assert (file.kind, file.old_path, file.new_path) == (MODIFY, "a/bin/run me", "b/bin/run me")
        assert (file.old_mode, file.new_mode, file.hunks) == (0o100644, 0o100755, ())

    def test_pure_rename_and_rename_with_hunks(self, repo: Repo) -> None:
        """similarity index + rename from/to: RENAME, with and without hunks, spaces in names."""
        repo.write({"old name.py": _lines(20), "pkg/a.py": _lines(20, "a")})
        repo.commit()
        os.rename(repo.root / "old name.py", repo.root / "new name.py")
        os.rename(repo.root / "pkg/a.py", repo.root / "pkg/b.py")
        repo.write({"pkg/b.py": _lines(20, "a").replace(b"a 10\n", b"ten\n")})
        files = _parse(repo.diff("-M")).files
        pure = next(f for f in files if not f.hunks)
        assert (pure.kind, pure.old_path, pure.new_path) == (RENAME, "a/old name.py", "b/new name.py")
        edited = next(f for f in files if f.hunks)
        assert (edited.kind, edited.old_path, edited.new_path) == (RENAME, "a/pkg/a.py", "b/pkg/b.py")

    def test_rename_with_custom_prefixes(self, repo: Repo) -> None:
        """Prefixes seen on the diff --git line are re-added to the rename names."""
        repo.write({"x y.py": _lines(5)})
        repo.commit()
        os.rename(repo.root / "x y.py", repo.root / "z w.py")
        file = _only(_parse(repo.diff("-M", "--src-prefix=old/", "--dst-prefix=new/")))
        assert (file.old_path, file.new_path) == ("old/x y.py", "new/z w.py")

    def test_copy(self, repo: Repo) -> None:
        """copy from / copy to: COPY."""
        repo.write({"src.py": _lines(30)})
        repo.commit()
        repo.write({"dup.py": _lines(30).replace(b"line 2\n", b"two\n")})
        file = _only(_parse(repo.diff("-C", "--find-copies-harder")))
        assert (file.kind, file.old_path, file.new_path) == (COPY, "a/src.py", "b/dup.py")
        assert len(file.hunks) == 1

    def test_quoted_names_are_decoded(self, repo: Repo) -> None:
        """git's C-quoted names (octal UTF-8 bytes, escaped quotes) become plain str paths."""
        name = 'f\u00e9 "x".py'
        repo.write({name: b"1\n"})
        repo.commit()
        repo.write({name: b"2\n"})
        data = repo.diff()
        assert b'"a/f\\303\\251 \\"x\\".py"' in data
        file = _only(_parse(data))
        assert (file.old_path, file.new_path) == ("a/" + name, "b/" + name)

    def test_quoted_names_without_hunks(self, repo: Repo) -> None:
        """A quoted name on a mode-only change comes from the diff --git line."""
        name = "caf\u00e9 au lait.sh"
        repo.write({name: b"1\n"})
        repo.commit()
        (repo.root / name).chmod(0o755)
        file = _only(_parse(repo.diff()))
        assert (file.old_path, file.new_path, file.hunks) == ("a/" + name, "b/" + name, ())

    def test_committed_mixed_fixture(self) -> None:
        """Quoted UTF-8 name with git's trailing TAB, copy with hunks, deletion, mode change."""
        files = _parse((DATA / "git-diff-mixed.patch").read_bytes()).files
        summary = [(f.kind, f.old_path, f.new_path, f.old_mode, f.new_mode) for f in files]
        assert summary == [
            (CREATE, None, 'b/nova/caf\u00e9 "q".py', None, 0o100644),
            (COPY, "a/nova/compute/claims.py", "b/nova/compute/claims2.py", None, None),
            (DELETE, "a/nova/new.py", None, 0o100644, None),
            (MODIFY, "a/nova/old.py", "b/nova/old.py", 0o100644, 0o100755),
        ]
        assert files[0].hunks[0].lines[-1].newline is False
        assert [ln.newline for ln in files[3].hunks[0].lines] == [True, True, False]

    def test_undecodable_bytes_survive_as_surrogates(self) -> None:
        """Paths are decoded UTF-8 with surrogateescape, so any byte name round-trips."""
        data = b"--- a/\xff.py\n+++ b/\xff.py\n@@ -1 +1 @@\n-1\n+2\n"
        file = _only(_parse(data))
        assert file.old_path is not None
        assert file.old_path.encode("utf-8", "surrogateescape") == b"a/\xff.py"


# --- git format-patch -----------------------------------------------------------------------------


def _format_patch_series(repo: Repo) -> bytes:
    repo.write({"nova/x.py": _lines(12), "doc.txt": b"doc\n"})
    repo.commit()
    repo.write({"nova/x.py": _lines(12).replace(b"line 12\n", b"")})
    repo.commit("Drop the last line\n\n--- this line starts like a header\n+++ and so does this one\n"
                "---\nnot a separator either")
    repo.write({"nova/x.py": _lines(11).replace(b"line 1\n", b"first\n"), "doc.txt": b"-- \n"})
    repo.commit("Second fix")
    return repo.git("format-patch", "--stdout", "HEAD~2")


class TestFormatPatch:
    def test_series_in_order_with_mail_headers_and_signature(self, repo: Repo) -> None:
        """Two commits in one mbox: all files in order, a file twice, signature not a removed line."""
        data = _format_patch_series(repo)
        assert data.count(b"\n-- \n") == 2 and data.startswith(b"From ")
        files = _parse(data).files
        assert [f.old_path for f in files] == ["a/nova/x.py", "a/doc.txt", "a/nova/x.py"]
        last_of_first = files[0].hunks[-1].lines[-1]
        assert (last_of_first.op, last_of_first.text) == (REMOVE, b"line 12")
        doc = files[1].hunks[0].lines
        assert [(ln.op, ln.text) for ln in doc] == [(REMOVE, b"doc"), (ADD, b"-- ")]

    def test_signature_stripped_by_yaml_is_still_a_signature(self, repo: Repo) -> None:
        """'-- ' loses its blank in a ConfigMap; after a complete hunk it is still the signature."""
        data = _format_patch_series(repo)
        stripped = b"\n".join(ln.rstrip() for ln in data.split(b"\n"))
        assert b"\n--\n" in stripped
        assert [f.old_path for f in _parse(stripped).files] == [f.old_path for f in _parse(data).files]

    def test_diff_lookalikes_in_the_commit_message_are_prose(self) -> None:
        """Inside a mail message, a '---'/'+++' pair or '@@' without a hunk body is text."""
        data = (b"From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n"
                b"Subject: [PATCH] quote\n\n--- a/quoted\n+++ b/quoted\nsee @@ below\n@@ is fine\n"
                b"---\n x | 2 +-\n\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n-- \n2.39.5\n\n")
        assert [f.old_path for f in _parse(data).files] == ["a/x"]

    def test_committed_series_fixture(self) -> None:
        """The committed format-patch fixture (two commits) parses to four file patches."""
        files = _parse((DATA / "format-patch-series.patch").read_bytes()).files
        assert [f.kind for f in files] == [MODIFY, CREATE, MODIFY, RENAME]


# --- diff -ruN ------------------------------------------------------------------------------------


def _diff_ruN(tmp_path: Path, old: Dict[str, bytes], new: Dict[str, bytes], tz: str = "UTC",
              flags: str = "-ruN") -> bytes:
    make_tree(tmp_path / "old", old)
    make_tree(tmp_path / "new", new)
    done = subprocess.run(["diff", flags, "old", "new"], cwd=tmp_path, capture_output=True,
                          env={**os.environ, "TZ": tz})
    assert done.returncode == 1, done.stderr
    return done.stdout


class TestDiffRuN:
    @pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
    def test_epoch_dates_mean_create_and_delete(self, tmp_path: Path, tz: str) -> None:
        """diff -N dates absent files at the epoch, in the local zone: CREATE / DELETE."""
        data = _diff_ruN(tmp_path, {"x/keep.py": b"a\n", "x/gone.py": b"g\n"},
                         {"x/keep.py": b"b\n", "x/born.py": b"n\n"}, tz=tz)
        assert b"diff -ruN old/x/keep.py new/x/keep.py" in data
        files = {f.first_path: f for f in _parse(data).files}
        assert (files["new/x/born.py"].kind, files["new/x/born.py"].old_path) == (CREATE, None)
        assert (files["old/x/gone.py"].kind, files["old/x/gone.py"].new_path) == (DELETE, None)
        keep = files["old/x/keep.py"]
        assert (keep.kind, keep.old_path, keep.new_path) == (MODIFY, "old/x/keep.py", "new/x/keep.py")

    def test_committed_fixture(self) -> None:
        """diff -ruN made in America/New_York: epoch at -0500, CRLF lines keep their \\r."""
        data = (DATA / "diff-ruN.patch").read_bytes()
        files = _parse(data).files
        assert [(f.kind, f.first_path) for f in files] == [
            (MODIFY, "old/pkg/a.py"), (CREATE, "new/pkg/born.py"), (DELETE, "old/pkg/gone.py"),
            (MODIFY, "old/pkg/w.txt"),
        ]
        assert [ln.text for ln in files[3].hunks[0].lines] == [b"one\r", b"two\r", b"TWO\r"]
        assert files[1].patch_line == data.split(b"\n").index(b"diff -ruN old/pkg/born.py new/pkg/born.py") + 2

    def test_only_in_lines_are_ignored(self, tmp_path: Path) -> None:
        """diff -ru (no -N) prints 'Only in'; those lines are no file diff."""
        data = _diff_ruN(tmp_path, {"a.py": b"1\n"}, {"a.py": b"2\n", "extra.py": b"e\n"}, flags="-ru")
        assert b"Only in new: extra.py" in data
        assert _only(_parse(data)).old_path == "old/a.py"

    def test_dev_null_header_means_create(self) -> None:
        """A hand-made '--- /dev/null' creation."""
        file = _only(_parse(b"--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,2 @@\n+a\n+b\n"))
        assert (file.kind, file.old_path, file.new_path) == (CREATE, None, "b/new.py")

    def test_epoch_date_on_a_real_old_side_is_a_modify(self) -> None:
        """An epoch-dated file that the hunk reads from is an old file, not an absent one."""
        data = (b"--- a/x.py\t1970-01-01 00:00:00.000000000 +0000\n+++ b/x.py\t2026-01-01 00:00:00 +0000\n"
                b"@@ -1 +1 @@\n-a\n+b\n")
        assert _only(_parse(data)).kind == MODIFY

    @pytest.mark.parametrize(("stamp", "epoch"), [
        (b"1970-01-01 00:00:00.000000000 +0000", True),
        (b"1969-12-31 19:00:00.000000000 -0500", True),
        (b"1970-01-01 05:30:00 +0530", True),
        (b"1970-01-01 00:00:01.000000000 +0000", False),
        (b"1970-01-01 00:00:00.5 +0000", False),
        (b"1969-12-31 19:00:00 +0500", False),
        (b"2026-01-01 00:00:00 +0000", False),
        (b"", False),
    ])
    def test_is_epoch(self, stamp: bytes, epoch: bool) -> None:
        assert names.is_epoch(stamp) is epoch

    def test_svn_revision_0_means_create(self) -> None:
        """svn diff marks a file added in the working copy ``(revision 0)``, as GNU patch reads it (issue #12)."""
        data = (b"Index: nova/new.py\n" + b"=" * 67 + b"\n--- nova/new.py\t(revision 0)\n"
                b"+++ nova/new.py\t(working copy)\n@@ -0,0 +1 @@\n+hello = 1\n")
        file = _only(_parse(data))
        assert (file.kind, file.old_path, file.new_path) == (CREATE, None, "nova/new.py")

    def test_svn_revision_0_on_a_real_old_side_is_a_modify(self) -> None:
        data = b"--- x.py\t(revision 0)\n+++ x.py\t(working copy)\n@@ -1 +1 @@\n-a\n+b\n"
        assert _only(_parse(data)).kind == MODIFY


class TestHeaderNames:
    """``---``/``+++`` names followed by a date after a space, not a TAB (issue #12, item 7)."""

    @pytest.mark.parametrize(("rest", "name", "stamp"), [
        pytest.param(b"x.txt Sun Dec 27 16:08:28 2009", "x.txt", b"Sun Dec 27 16:08:28 2009", id="ctime"),
        pytest.param(b"x.txt Sun Dec  7 16:08:28 2009", "x.txt", b"Sun Dec  7 16:08:28 2009", id="ctime-pad"),
        pytest.param(b"a/x.txt 2009-12-27 16:08:28.000000000 +0100", "a/x.txt",
                     b"2009-12-27 16:08:28.000000000 +0100", id="iso-nanoseconds"),
        pytest.param(b"a/x.txt 2009-12-27 16:08:28 +0100", "a/x.txt", b"2009-12-27 16:08:28 +0100", id="iso"),
        pytest.param(b"a/x.txt 2009-12-27 16:08:28", "a/x.txt", b"2009-12-27 16:08:28", id="iso-no-zone"),
        pytest.param(b"my file.txt 2009-12-27 16:08:28 +0100", "my file.txt", b"2009-12-27 16:08:28 +0100",
                     id="space-in-name"),
        pytest.param(b"my file.txt", "my file.txt", b"", id="space-in-name-no-date"),
        pytest.param(b"x.txt\t2009-12-27 16:08:28 +0100", "x.txt", b"2009-12-27 16:08:28 +0100", id="tab"),
        pytest.param(b'"x 2009-12-27 16:08:28 +0100" 2009-12-27 16:08:28 +0100', "x 2009-12-27 16:08:28 +0100",
                     b"2009-12-27 16:08:28 +0100", id="quoted-name-wins"),
        pytest.param(b"1970-01-01 00:00:00 +0000", "1970-01-01 00:00:00 +0000", b"", id="a-date-alone-is-a-name"),
    ])
    def test_date_after_a_space_is_not_part_of_the_name(self, rest: bytes, name: str, stamp: bytes) -> None:
        assert names.header_name(rest, patch="p") == (name, stamp)

    def test_date_after_a_space_still_marks_an_absent_file(self) -> None:
        """A space-separated epoch date is diff -N's absent file as much as a TAB-separated one."""
        data = b"--- a/n.py 1970-01-01 00:00:00.000000000 +0000\n+++ b/n.py 2026-01-01 00:00:00 +0000\n" \
               b"@@ -0,0 +1 @@\n+x = 1\n"
        file = _only(_parse(data))
        assert (file.kind, file.new_path) == (CREATE, "b/n.py")


# --- line endings, missing newlines, ConfigMap mangling ---------------------------------------


class TestLines:
    def test_no_newline_marker_on_both_sides(self, repo: Repo) -> None:
        """'\\ No newline at end of file' clears newline on the line before it, either side."""
        repo.write({"x": b"a\nb"})
        repo.commit()
        repo.write({"x": b"a\nc"})
        lines = _only(_parse(repo.diff())).hunks[0].lines
        assert [(ln.op, ln.text, ln.newline) for ln in lines] == [
            (CONTEXT, b"a", True), (REMOVE, b"b", False), (ADD, b"c", False),
        ]

    def test_no_newline_marker_on_new_side_only(self, repo: Repo) -> None:
        repo.write({"x": b"a\n"})
        repo.commit()
        repo.write({"x": b"a\nb"})
        lines = _only(_parse(repo.diff())).hunks[0].lines
        assert [(ln.op, ln.text, ln.newline) for ln in lines] == [(CONTEXT, b"a", True), (ADD, b"b", False)]

    def test_crlf_file_keeps_cr_in_text(self, repo: Repo) -> None:
        """A diff of a CRLF file: the \\r stays at the end of each hunk line's text."""
        repo.write({"w.txt": b"one\r\ntwo\r\n"})
        repo.commit()
        repo.write({"w.txt": b"one\r\nTWO\r\n"})
        lines = _only(_parse(repo.diff())).hunks[0].lines
        assert [ln.text for ln in lines] == [b"one\r", b"two\r", b"TWO\r"]

    def test_crlf_patch_headers_are_recognised(self, repo: Repo) -> None:
        """A whole patch saved with CRLF: headers, modes and names still read."""
        repo.write({"a.py": _lines(5)})
        repo.commit()
        repo.write({"a.py": _lines(5).replace(b"line 2\n", b"two\n"), "n.sh": (b"x\n", 0o755)})
        crlf = repo.diff().replace(b"\n", b"\r\n")
        files = _parse(crlf).files
        assert [(f.kind, f.first_path, f.new_mode) for f in files] == [
            (MODIFY, "a/a.py", None), (CREATE, "b/n.sh", 0o100755),
        ]
        assert files[0].hunks[0].lines[0].text == b"line 1\r"

    def test_configmap_mangled_patch_reads_like_the_original(self, repo: Repo) -> None:
        """Blank context emptied, trailing blanks stripped, trailing blank lines and final newline lost."""
        body = b"def f():\n    return 1   \n\n\n" + _lines(6) + b"\n\n"
        repo.write({"m.py": body})
        repo.commit()
        repo.write({"m.py": body.replace(b"line 4\n", b"four\n")})
        data = repo.diff()
        mangled = b"\n".join(ln.rstrip() for ln in data.split(b"\n")).rstrip(b"\n")
        assert mangled.endswith(b"\n line 6"), "the blank context lines at the end were dropped"
        original, shrunk = _only(_parse(data)), _only(_parse(mangled))
        assert [(h.old_len, h.new_len) for h in shrunk.hunks] == [(h.old_len, h.new_len) for h in original.hunks]
        assert [(ln.op, ln.text.rstrip()) for ln in shrunk.hunks[0].lines] == [
            (ln.op, ln.text.rstrip()) for ln in original.hunks[0].lines
        ]

    def test_configmap_mangled_through_real_yaml(self, repo: Repo) -> None:
        """A patch pasted as a YAML block scalar (trailing blanks removed) and read back."""
        import yaml

        repo.write({"m.py": b"a\n\nb\nc\nd\n\n\n"})
        repo.commit()
        repo.write({"m.py": b"a\n\nB\nc\nd\n\n\n"})
        data = repo.diff()
        text = "\n".join(ln.rstrip() for ln in data.decode().split("\n"))
        doc = "data:\n  fix.patch: |-\n" + "".join(f"    {ln}\n" if ln else "\n" for ln in text.split("\n"))
        loaded = yaml.safe_load(doc)["data"]["fix.patch"].encode()
        assert loaded != data
        assert [(ln.op, ln.text) for ln in _only(_parse(loaded)).hunks[0].lines] == [
            (ln.op, ln.text) for ln in _only(_parse(data)).hunks[0].lines
        ]

    def test_missing_non_blank_lines_at_end_are_invalid(self) -> None:
        """A cut-off patch is not the YAML case: the missing lines are not only blank context."""
        error = _invalid(b"--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n")
        assert (error.file, error.hunk) == ("a/x", 1)
        assert "ends inside the hunk" in error.message

    def test_too_much_blank_context_at_end_is_invalid(self) -> None:
        """Trailing context longer than leading context cannot come from diff: not filled in."""
        _invalid(b"--- a/x\n+++ b/x\n@@ -5,9 +5,9 @@\n a\n-b\n+c\n d\n")


# --- invalid patches --------------------------------------------------------------------------


class TestInvalid:
    def test_binary_files_differ(self, repo: Repo) -> None:
        repo.write({"blob.bin": b"\0\1\2"})
        repo.commit()
        repo.write({"blob.bin": b"\0\1\3", "t.py": b"text\n"})
        error = _invalid(repo.diff())
        assert "binary" in error.message and error.file == "a/blob.bin"

    def test_git_binary_patch(self, repo: Repo) -> None:
        repo.write({"blob.bin": b"\0\1\2"})
        repo.commit()
        repo.write({"blob.bin": b"\0\1\3"})
        data = repo.diff("--binary")
        assert b"GIT binary patch" in data
        assert "binary" in _invalid(data).message

    def test_diff_ruN_binary(self, tmp_path: Path) -> None:
        data = _diff_ruN(tmp_path, {"b.bin": b"\0a"}, {"b.bin": b"\0b", "c.py": b"c\n"})
        assert b"Binary files" in data
        _invalid(data)

    @pytest.mark.parametrize("data", [b"", b"\n\n", b"just some text\nand more\n", b"--- a\n+++ b\n"],
                             ids=["empty", "blank", "prose", "header-only"])
    def test_no_file_diff(self, data: bytes) -> None:
        _invalid(data)

    def test_git_header_without_change(self) -> None:
        error = _invalid(b"diff --git a/x b/x\nindex 1234567..89abcde 100644\n")
        assert "names no change" in error.message and error.file == "a/x"

    def test_header_without_hunks(self) -> None:
        error = _invalid(b"--- a/x\n+++ b/x\nnot a hunk\n")
        assert "not followed by an '@@' hunk" in error.message

    @pytest.mark.parametrize("data", [
        b"--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n@@ -9 +9 @@\n-x\n+y\n",
        b"--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n d\n e\n",
        b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-b\n+c\n+d\n",
        b"--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n+d\n",
        b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-b\n+c\n--- d\n",
        b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-b\n+c\n+++ d\n",
    ], ids=["short-before-next-hunk", "long-context", "long-added", "wrong-added", "long-dashes", "long-pluses"])
    def test_counts_do_not_match(self, data: bytes) -> None:
        error = _invalid(data)
        assert error.hunk is not None and "@@" in error.message

    def test_garbage_in_hunk(self) -> None:
        error = _invalid(b"--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n#oops\n-b\n+c\n")
        assert "unexpected line" in error.message and error.hunk == 1

    def test_nul_in_header(self) -> None:
        assert "NUL" in _invalid(b"--- a/x\0y\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n").message

    @pytest.mark.parametrize("header", [b"@@ -1,x +1 @@", b"@@ 1,1 1,1 @@", b"@@ -1 +1", b"@@@ -1 +1 @@@",
                                        b"@@ -1,99999999999999999999 +1 @@"])
    def test_bad_hunk_header(self, header: bytes) -> None:
        error = _invalid(b"--- a/x\n+++ b/x\n" + header + b"\n-a\n+b\n")
        assert error.hunk == 1 or "no '--- '/'+++ ' file header" in error.message

    def test_hunk_without_file_header(self) -> None:
        assert "no '--- '/'+++ ' file header" in _invalid(b"@@ -1 +1 @@\n-a\n+b\n").message

    def test_creation_with_old_lines(self) -> None:
        _invalid(b"--- /dev/null\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")

    def test_symlink_is_refused(self, repo: Repo) -> None:
        os.makedirs(repo.root, exist_ok=True)
        os.symlink("target", repo.root / "link")
        assert "symlink" in _invalid(repo.diff()).message

    def test_bad_quoting(self) -> None:
        _invalid(b'diff --git "a/x b/x\nold mode 100644\nnew mode 100755\n')
        _invalid(b'--- "a/\\9x"\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n')


# --- robustness, cost, strip ----------------------------------------------------------------------


def _seeds() -> List[bytes]:
    return [path.read_bytes() for path in sorted(DATA.glob("*.patch"))]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(_seeds()))
    lines = seed.split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "junk", "cut", "flip"]))
        if action == "drop" and len(lines) > 1:
            del lines[where]
        elif action == "dup":
            lines.insert(where, lines[where])
        elif action == "junk":
            lines[where] = draw(st.binary(max_size=20))
        elif action == "cut":
            lines[where] = lines[where][: draw(st.integers(0, max(0, len(lines[where]) - 1)))]
        else:
            lines[where] = draw(st.sampled_from([b" ", b"+", b"-", b"\\", b"@", b"\r"])) + lines[where][1:]
    return b"\n".join(lines)


class TestRobustness:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=400))
    def test_random_bytes_give_a_patch_or_patch_invalid(self, data: bytes) -> None:
        _parse_or_invalid(data)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_mutated())
    def test_mutated_real_patches_give_a_patch_or_patch_invalid(self, data: bytes) -> None:
        _parse_or_invalid(data)

    def test_seeds_parse(self) -> None:
        """The committed fixtures are real, valid patches (the mutation test starts from them)."""
        assert all(_parse(seed).files for seed in _seeds())

    def test_five_megabytes_parse_in_linear_time(self) -> None:
        """Cost is linear in the patch bytes: 10x the data takes well under 30x the time."""
        unit = (DATA / "format-patch-series.patch").read_bytes()
        small, big = unit * (500_000 // len(unit)), unit * (5_000_000 // len(unit))
        small_time, big_time = _timed(small), _timed(big)
        assert len(big) > 4_900_000
        assert big_time < 15 and big_time < 30 * max(small_time, 0.01), (small_time, big_time)


def _parse_or_invalid(data: bytes) -> Optional[Patch]:
    try:
        patch = _parse(data)
    except PatchInvalid as error:
        assert error.message and error.patch == "test.patch"
        return None
    assert patch.files
    for file in patch.files:
        assert file.old_path is not None or file.new_path is not None
        for hunk in file.hunks:
            assert sum(ln.op != ADD for ln in hunk.lines) == hunk.old_len
            assert sum(ln.op != REMOVE for ln in hunk.lines) == hunk.new_len
    return patch


def _timed(data: bytes) -> float:
    start = time.perf_counter()
    files = _parse(data).files
    elapsed = time.perf_counter() - start
    assert files
    return elapsed


@pytest.mark.parametrize(("path", "strip", "expected"), [
    ("a/nova/x.py", 1, "nova/x.py"),
    ("orig.dir/nova/x.py", 1, "nova/x.py"),
    ("a/nova///x.py", 1, "nova/x.py"),
    ("a//etc/x", 1, "/etc/x"),  # issue #12: absolute once the stripped component is gone (refused later)
    ("a/nova/x.py", 0, "a/nova/x.py"),
    ("a//nova/x.py", 0, "a/nova/x.py"),
    ("a/nova/x.py", 2, "x.py"),
    ("a/nova/x.py", 3, None),
    ("x.py", 1, None),
    ("/u/x.py", 1, "u/x.py"),
])
def test_strip_path(path: str, strip: int, expected: Optional[str]) -> None:
    assert strip_path(path, strip) == expected


def test_strip_path_rejects_negative() -> None:
    with pytest.raises(ValueError):
        strip_path("a/b", -1)
