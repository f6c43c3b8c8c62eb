"""
Tests for kolla_entry.patching.match: hunk placement, direction, whitespace, line endings.

Where GNU patch is installed the expectations are checked against /usr/bin/patch itself, so a
table row states GNU's behaviour (or our documented departure from it), not our guess of it.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kolla_entry.patching.match import apply_hunks
from kolla_entry.patching.model import ALREADY_APPLIED, APPLIED, CONFLICT, FileResult, Hunk, HunkLine
from kolla_entry.patching.search import Shape

PATCH = shutil.which("patch", path="/usr/bin")
needs_gnu_patch = pytest.mark.skipif(PATCH is None, reason="GNU patch is not installed")

# --- test-only helpers ---------------------------------------------------------------------------

_HEADER = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def hunks_of(diff: bytes) -> List[Hunk]:
    """
    Build Hunk values from unified-diff text; independent of kolla_entry.patching.parse on purpose.

    Counts decide where a hunk ends, so an empty line inside a hunk is an empty context line (as
    in a patch that went through YAML); ``\\ No newline`` marks the line before it.
    """
    hunks: List[Hunk] = []
    header: Optional[Tuple[int, int, int, int]] = None
    body: List[HunkLine] = []
    todo = [0, 0]

    def close() -> None:
        if header is not None:
            hunks.append(Hunk(len(hunks) + 1, *header, lines=tuple(body)))

    for raw in diff.split(b"\n"):
        match = _HEADER.match(raw)
        if match:
            close()
            nums = [int(g) if g is not None else 1 for g in match.groups()]
            header = (nums[0], nums[1], nums[2], nums[3])
            body, todo = [], [nums[1], nums[3]]
        elif raw.startswith(b"\\") and body:
            body[-1] = HunkLine(body[-1].op, body[-1].text, newline=False)
        elif header is not None and (todo[0] or todo[1]):
            op = raw[:1].decode() if raw else " "
            body.append(HunkLine(op, raw[1:]))
            todo[0] -= op != "+"
            todo[1] -= op != "-"
    close()
    return hunks


def text(*lines: str, end: str = "\n") -> bytes:
    """File content from lines, each terminated by ``end``."""
    return "".join(line + end for line in lines).encode()


def udiff(*hunks: str) -> bytes:
    """A one-file diff from hunk texts (header line + body lines, joined by newlines)."""
    return ("--- f\n+++ f\n" + "".join(h if h.endswith("\n") else h + "\n" for h in hunks)).encode()


@dataclass(frozen=True)
class Gnu:
    """What GNU patch did to one file: exit status, content, and per hunk (printed line, offset, fuzz)."""

    status: int
    content: bytes
    hunks: Dict[int, Tuple[int, int, int]]
    failed: Tuple[int, ...]
    output: str


_GNU_OK = re.compile(r"Hunk #(\d+) succeeded at (\d+)(?: with fuzz (\d+))?(?: \(offset (-?\d+) lines?\))?\.")
_GNU_FAILED = re.compile(r"Hunk #(\d+) FAILED")


def gnu_patch(content: bytes, diff: bytes, *options: str) -> Gnu:
    """Run /usr/bin/patch on a temp copy of ``content`` (defaults: fuzz 0, no backups, no rejects)."""
    assert PATCH is not None
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "f").write_bytes(content)
        (Path(tmp) / "p.diff").write_bytes(diff)
        args = [PATCH, "-p0", "--fuzz=0", "--no-backup-if-mismatch", "-r", "-", "-N", *options, "-i", "p.diff"]
        proc = subprocess.run(args, cwd=tmp, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        result = (Path(tmp) / "f").read_bytes()
        leftovers = sorted(p.name for p in Path(tmp).iterdir()) == ["f", "p.diff"]
    assert leftovers, "GNU patch left files behind"
    out = proc.stdout + proc.stderr
    hunks = {int(m[1]): (int(m[2]), int(m[4] or 0), int(m[3] or 0)) for m in _GNU_OK.finditer(out)}
    failed = tuple(int(m[1]) for m in _GNU_FAILED.finditer(out))
    return Gnu(proc.returncode, result, hunks, failed, out)


def gnu_numbers(result: FileResult, hunks: Sequence[Hunk]) -> Dict[int, Tuple[int, int, int]]:
    """Our hunk results as GNU prints them: line in the output file (where + lines added so far)."""
    numbers: Dict[int, Tuple[int, int, int]] = {}
    added = 0
    for hunk, res in zip(hunks, result.hunks):
        if res.offset or res.fuzz:
            numbers[hunk.index] = (res.line + added, res.offset, res.fuzz)
        added += len(hunk.new_lines) - len(hunk.old_lines)
    return numbers


def check(content: bytes, diff: bytes, *, fuzz: int = 0) -> FileResult:
    return apply_hunks(content, hunks_of(diff), fuzz=fuzz)


def test_helper_reads_counts_empty_lines_and_no_newline_markers() -> None:
    """The test-only hunk builder: counts, empty context lines, and the no-newline marker."""
    [hunk] = hunks_of(udiff("@@ -1,3 +1,2 @@\n a\n\n-b\n\\ No newline at end of file"))
    assert (hunk.old_start, hunk.old_len, hunk.new_start, hunk.new_len) == (1, 3, 1, 2)
    assert hunk.lines == (HunkLine(" ", b"a"), HunkLine(" ", b""), HunkLine("-", b"b", newline=False))


# --- placement ----------------------------------------------------------------------------------

LINES_20 = [f"line {i}" for i in range(1, 21)]


class TestPlacement:
    def test_hunk_at_its_stated_line(self) -> None:
        """A hunk whose context is where it says applies there, offset 0."""
        res = check(text(*LINES_20), udiff("@@ -4,3 +4,3 @@\n line 4\n-line 5\n+LINE 5\n line 6"))
        assert res.status == APPLIED
        assert res.content == text(*LINES_20[:4], "LINE 5", *LINES_20[5:])
        assert (res.hunks[0].line, res.hunks[0].offset, res.hunks[0].fuzz) == (4, 0, 0)

    @pytest.mark.parametrize("stated, offset", [(7, -3), (1 + 1, 2)], ids=["backward", "forward"])
    def test_hunk_found_at_an_offset(self, stated: int, offset: int) -> None:
        """The context found a few lines away: applied there, offset reported as GNU prints it."""
        diff = udiff(f"@@ -{stated},3 +{stated},3 @@\n line 4\n-line 5\n+LINE 5\n line 6")
        res = check(text(*LINES_20), diff)
        assert res.status == APPLIED
        assert (res.hunks[0].line, res.hunks[0].offset) == (4, offset)

    @needs_gnu_patch
    def test_equal_distance_prefers_the_later_place_like_gnu(self) -> None:
        """Two matches at the same distance: the later one, as GNU patch tries +k before -k."""
        content = text("l1", "l2", "A", "B", "C", "l6", "A", "B", "C", "l10")
        diff = udiff("@@ -5,3 +5,3 @@\n A\n-B\n+X\n C")
        res, gnu = check(content, diff), gnu_patch(content, diff)
        assert res.content == gnu.content == text("l1", "l2", "A", "B", "C", "l6", "A", "X", "C", "l10")
        assert gnu_numbers(res, hunks_of(diff)) == gnu.hunks == {1: (7, 2, 0)}

    @needs_gnu_patch
    def test_offset_carries_over_to_later_hunks_with_gnu_line_numbers(self) -> None:
        """Hunk 2 starts its search at hunk 1's offset; printed numbers are in the new file."""
        content = text("z", *[str(i) for i in range(1, 13)])
        diff = udiff("@@ -1,2 +1,4 @@\n 1\n+a\n+b\n 2", "@@ -9,3 +11,3 @@\n 9\n-10\n+X\n 11")
        res, gnu = check(content, diff), gnu_patch(content, diff)
        assert res.status == APPLIED and res.content == gnu.content
        assert [(h.line, h.offset) for h in res.hunks] == [(2, 1), (10, 1)]
        assert gnu_numbers(res, hunks_of(diff)) == gnu.hunks == {1: (2, 1, 0), 2: (12, 1, 0)}

    @needs_gnu_patch
    def test_carried_offset_picks_the_right_twin(self) -> None:
        """With hunk 1 found 4 lines down, hunk 2 takes the twin 4 lines down too, not the stated one."""
        block = ["if x:", "    y = 1", "    return y"]
        content = text("pad", "pad", "pad", "pad", "head", "a", "b", *block, "gap", *block, "tail")
        diff = udiff(
            "@@ -1,3 +1,3 @@\n head\n-a\n+A\n b", "@@ -4,3 +4,3 @@\n if x:\n-    y = 1\n+    y = 2\n     return y"
        )
        res, gnu = check(content, diff), gnu_patch(content, diff)
        assert res.status == APPLIED and res.content == gnu.content
        assert [h.line for h in res.hunks] == [5, 8]

    @needs_gnu_patch
    def test_a_hunk_never_starts_inside_the_previous_one(self) -> None:
        """
        GNU patch lets hunk 2 match inside hunk 1's trailing context (the nearer twin at line 6);
        hunks of one diff never overlap, so we take the twin after hunk 1 (line 14).
        """
        content = text("1", "2", "3", "OLD", "q", "w", "e", "r", "9", "10", "11", "12", "13", "w", "e", "r", "T")
        diff = udiff("@@ -1,7 +1,7 @@\n 1\n 2\n 3\n-OLD\n+NEW\n q\n w\n e", "@@ -8,3 +8,3 @@\n w\n-e\n+E\n r")
        gnu = gnu_patch(content, diff)
        assert gnu.hunks[2] == (6, -2, 0), "GNU patch overlaps hunk 1"
        res = check(content, diff)
        assert res.status == APPLIED
        assert [h.line for h in res.hunks] == [1, 14]
        assert res.content == text(
            "1", "2", "3", "NEW", "q", "w", "e", "r", "9", "10", "11", "12", "13", "w", "E", "r", "T"
        )

    @needs_gnu_patch
    @pytest.mark.parametrize(
        "content, diff, applies",
        [
            (text("x", "y", "A", "B", "C", "D"), udiff("@@ -1,3 +1,3 @@\n-A\n+Z\n B\n C"), False),
            (text("x", "y", "A", "B", "C", "D"), udiff("@@ -2,3 +2,3 @@\n-A\n+Z\n B\n C"), True),
            (text("A", "B", "C", "D", "x", "y"), udiff("@@ -2,3 +2,3 @@\n B\n C\n-D\n+Z"), False),
            (text("q", "A", "B", "C", "D"), udiff("@@ -1,3 +1,3 @@\n B\n C\n-D\n+Z"), True),
        ],
        ids=[
            "top-anchored-not-at-top",
            "short-leading-context-below-line-1",
            "end-anchored-not-at-end",
            "end-anchored-at-end",
        ],
    )
    def test_edge_anchoring_as_gnu(self, content: bytes, diff: bytes, applies: bool) -> None:
        """Short leading context at line 1 pins a hunk to the top; short trailing context to the end."""
        res, gnu = check(content, diff), gnu_patch(content, diff)
        assert (gnu.status == 0) is applies
        assert (res.status == APPLIED) is applies
        if applies:
            assert res.content == gnu.content
            assert gnu_numbers(res, hunks_of(diff)) == gnu.hunks
        else:
            assert "must match at" in res.hunks[0].reason

    @needs_gnu_patch
    @pytest.mark.parametrize("content", [
        pytest.param(text("1", "2", "3", "4", "5", "appended"), id="at-its-stated-line"),
        pytest.param(text("0", "1", "2", "3", "4", "5", "appended"), id="at-an-offset"),
    ])
    def test_some_trailing_context_is_not_anchored_to_the_end(self, content: bytes) -> None:
        """
        Issue #12 item 4, a deliberate difference: a hunk with less trailing than leading context (it was
        at the end of the file) still applies after upstream appended code below it, as with git apply.
        GNU patch 2.7.6 insists on the end of the file and fails.
        """
        diff = udiff("@@ -2,4 +2,4 @@\n 2\n 3\n-4\n+four\n 5")
        assert gnu_patch(content, diff).status != 0, "GNU patch now applies it: update the README's differences"
        res = check(content, diff)
        assert res.status == APPLIED and res.content == content.replace(b"4\n", b"four\n")
        assert res.content is not None and check(res.content, diff).status == ALREADY_APPLIED

    def test_conflict_names_the_hunk_the_line_and_the_search(self) -> None:
        """A hunk that fits nowhere: CONFLICT, no content, the reason says where we looked."""
        diff = udiff(
            "@@ -2,3 +2,3 @@\n line 2\n-line 3\n+LINE 3\n line 4", "@@ -12,3 +12,3 @@\n line 12\n-nope\n+NOPE\n line 14"
        )
        res = check(text(*LINES_20), diff)
        assert res.status == CONFLICT and res.content is None
        assert res.reason.startswith("hunk #2: context not found near line 12 (searched from line 5")
        assert [(h.status, h.line) for h in res.hunks] == [(APPLIED, 2), (CONFLICT, 0)]

    def test_first_hunk_conflict_searched_the_whole_file(self) -> None:
        """The first hunk's search covers the whole file, and the message says so."""
        res = check(text(*LINES_20), udiff("@@ -120,3 +120,3 @@\n a\n-b\n+c\n d"))
        assert res.hunks[0].reason.startswith("context not found near line 120 (searched the whole file")

    def test_no_hunks_leaves_content_unchanged(self) -> None:
        """A file patch without hunks (a rename or mode change) changes nothing here."""
        assert apply_hunks(b"a\n", ()) == FileResult(APPLIED, b"a\n", ())


# --- fuzz ---------------------------------------------------------------------------------------


class TestFuzz:
    CONTENT = text("a", "b", "c", "d", "E", "f", "g", "h")
    DIFF = udiff("@@ -2,7 +2,7 @@\n X\n c\n d\n-E\n+Z\n f\n g\n h")

    def test_no_fuzz_by_default(self) -> None:
        """A hunk whose first context line differs is a conflict without fuzz."""
        assert check(self.CONTENT, self.DIFF).status == CONFLICT

    @needs_gnu_patch
    def test_fuzz_drops_edge_context_like_gnu(self) -> None:
        """Fuzz 1 drops one context line at each edge; the file keeps its own text there."""
        res = check(self.CONTENT, self.DIFF, fuzz=1)
        gnu = gnu_patch(self.CONTENT, self.DIFF, "--fuzz=1")
        assert res.status == APPLIED and res.content == gnu.content == text("a", "b", "c", "d", "Z", "f", "g", "h")
        assert gnu_numbers(res, hunks_of(self.DIFF)) == gnu.hunks == {1: (2, 0, 1)}

    @needs_gnu_patch
    def test_fuzzed_trailing_context_may_lie_past_the_end(self) -> None:
        """As in GNU patch, a dropped trailing context line need not exist at all."""
        content = text("a", "b", "c", "d", "E", "f", "g")
        diff = udiff("@@ -2,7 +2,7 @@\n b\n c\n d\n-E\n+Z\n f\n g\n h")
        res, gnu = check(content, diff, fuzz=1), gnu_patch(content, diff, "--fuzz=1")
        assert res.status == APPLIED and res.content == gnu.content
        assert gnu_numbers(res, hunks_of(diff)) == gnu.hunks

    @needs_gnu_patch
    def test_fuzz_is_capped_by_the_hunks_context(self) -> None:
        """Fuzz 3 on a hunk with 2 context lines a side is fuzz 2, as in GNU patch."""
        content = text("x", "y", "E", "u", "v")
        diff = udiff("@@ -1,5 +1,5 @@\n a\n b\n-E\n+Z\n c\n d")
        res, gnu = check(content, diff, fuzz=3), gnu_patch(content, diff, "--fuzz=3")
        assert res.status == APPLIED and res.content == gnu.content == text("x", "y", "Z", "u", "v")
        assert res.hunks[0].fuzz == 2


# --- line endings and missing final newlines ---------------------------------------------------


class TestLineEndings:
    CRLF = text("one", "two", "three", "four", end="\r\n")

    def test_crlf_file_with_crlf_diff(self) -> None:
        """A diff made on the CRLF file (lines carry \\r) applies and the file stays CRLF."""
        res = check(self.CRLF, udiff("@@ -1,3 +1,3 @@\n one\r\n-two\r\n+TWO\r\n three\r"))
        assert res.content == text("one", "TWO", "three", "four", end="\r\n")

    def test_crlf_file_with_lf_normalised_diff(self) -> None:
        """The same diff normalised to LF still matches, and added lines get CRLF."""
        res = check(self.CRLF, udiff("@@ -1,3 +1,4 @@\n one\n-two\n+TWO\n+2b\n three"))
        assert res.content == text("one", "TWO", "2b", "three", "four", end="\r\n")

    def test_lf_file_with_crlf_diff_matches_exactly_and_stays_lf(self) -> None:
        """A CRLF diff on an LF file: one \\r is a line ending, not content (issue #12); added lines follow the file."""
        res = check(text("one", "two", "three"), udiff("@@ -1,3 +1,3 @@\n one\r\n-two\r\n+TWO\r\n three\r"))
        assert res.status == APPLIED and res.content == text("one", "TWO", "three")
        assert res.hunks[0].reason == ""
        again = check(res.content, udiff("@@ -1,3 +1,3 @@\n one\r\n-two\r\n+TWO\r\n three\r"))
        assert again.status == ALREADY_APPLIED

    def test_created_crlf_file_keeps_crlf(self) -> None:
        """Creating a file from a CRLF diff writes CRLF lines."""
        res = check(b"", udiff("@@ -0,0 +1,2 @@\n+a\r\n+b\r"))
        assert res.status == APPLIED and res.content == b"a\r\nb\r\n"

    @needs_gnu_patch
    @pytest.mark.parametrize(
        "content, diff",
        [
            (b"a\nb\nc", udiff("@@ -2,2 +2,2 @@\n b\n-c\n\\ No newline at end of file\n+c")),
            (b"a\nb\nc\n", udiff("@@ -2,2 +2,2 @@\n b\n-c\n+c\n\\ No newline at end of file")),
            (
                b"a\nb\nc",
                udiff("@@ -2,2 +2,3 @@\n b\n-c\n\\ No newline at end of file\n+C\n+d\n\\ No newline at end of file"),
            ),
            (b"a\nb\nc", udiff("@@ -1,2 +1,2 @@\n-a\n+A\n b\n c\n\\ No newline at end of file")),
        ],
        ids=["add-final-newline", "remove-final-newline", "both-sides-without", "context-without"],
    )
    def test_no_newline_at_end_of_file_like_gnu(self, content: bytes, diff: bytes) -> None:
        """``\\ No newline at end of file`` on either side gives GNU patch's bytes."""
        res, gnu = check(content, diff), gnu_patch(content, diff)
        assert gnu.status == 0 and res.status == APPLIED
        assert res.content == gnu.content

    @needs_gnu_patch
    def test_no_newline_side_must_meet_the_files_end(self) -> None:
        """A hunk saying the line has no newline does not match a line that has one (exactly)."""
        diff = udiff("@@ -2,2 +2,2 @@\n b\n-c\n\\ No newline at end of file\n+C\n\\ No newline at end of file")
        assert gnu_patch(b"a\nb\nc\n", diff).status != 0
        res = check(b"a\nb\nc\n", diff)
        # Only a whitespace-insensitive match is left, which ignores final newlines like GNU's -l.
        assert res.status == APPLIED and res.hunks[0].reason == "matched ignoring trailing whitespace"
        assert res.content == b"a\nb\nC"


# --- patches mangled by YAML --------------------------------------------------------------------

MANGLED_FILE = text("def f(x):", "    if x:", "        return 1", "    ", "    return 2   ", "", "def g():", "    pass")


class TestMangled:
    def test_stripped_context_applies_and_keeps_the_files_whitespace(self) -> None:
        """Blank context reduced to an empty line, trailing spaces stripped: applies, file whitespace kept."""
        diff = udiff("@@ -2,5 +2,5 @@\n     if x:\n-        return 1\n+        return 10\n\n     return 2\n ")
        res = check(MANGLED_FILE, diff)
        assert res.status == APPLIED
        assert res.content == MANGLED_FILE.replace(b"return 1\n", b"return 10\n")
        assert res.hunks[0].reason == "matched ignoring trailing whitespace"

    def test_added_lines_are_inserted_as_the_patch_gives_them(self) -> None:
        """The patch's own (stripped) added lines are what gets written."""
        diff = udiff("@@ -3,4 +3,5 @@\n         return 1\n\n+    # note\n     return 2\n\n")
        res = check(MANGLED_FILE, diff)
        assert res.content == MANGLED_FILE.replace(b"    \n    return 2", b"    \n    # note\n    return 2")

    def test_ambiguous_loose_match_is_a_conflict(self) -> None:
        """Ignoring whitespace, the hunk fits two places: refuse rather than guess."""
        block = ["x = 1  ", "y = 2", ""]
        content = text(*block, *block, "end")
        res = check(content, udiff("@@ -1,3 +1,3 @@\n x = 1\n-y = 2\n+y = 3\n"))
        assert res.status == CONFLICT
        assert "more than one place when trailing whitespace is ignored" in res.reason

    def test_mangled_patch_applied_twice_is_already_applied(self) -> None:
        """A restart sees the mangled patch's result and reports it applied, through the same loose rule."""
        diff = udiff("@@ -2,5 +2,5 @@\n     if x:\n-        return 1\n+        return 10\n\n     return 2\n ")
        first = check(MANGLED_FILE, diff)
        assert first.content is not None
        again = check(first.content, diff)
        assert again.status == ALREADY_APPLIED and again.content == first.content


# --- direction: already applied, partly applied, twins -----------------------------------------

TWINS = text(
    "class A:",
    "    def get(self, x):",
    "        if x is None:",
    "            return None",
    "        y = x + 1",
    "        return broken(y)",
    "",
    "",
    "class B:",
    "    def get(self, x):",
    "        if x is None:",
    "            return None",
    "        y = x + 1",
    "        return broken(y)",
    "",
    "",
    "class C:",
    "    pass",
)
FIX_A = udiff(
    "@@ -4,5 +4,5 @@\n             return None\n         y = x + 1\n"
    "-        return broken(y)\n+        return fixed(y)\n \n "
)


class TestDirection:
    def test_applied_twice_is_already_applied(self) -> None:
        """Every hunk found applied: ALREADY_APPLIED, bytes untouched, hunks report where."""
        diff = udiff(
            "@@ -2,3 +2,3 @@\n line 2\n-line 3\n+LINE 3\n line 4",
            "@@ -12,3 +12,4 @@\n line 12\n-line 13\n+L13\n+L13b\n line 14",
        )
        once = check(text(*LINES_20), diff)
        assert once.content is not None
        twice = check(once.content, diff)
        assert twice.status == ALREADY_APPLIED and twice.content == once.content
        assert [(h.status, h.line, h.offset) for h in twice.hunks] == [
            (ALREADY_APPLIED, 2, 0),
            (ALREADY_APPLIED, 12, 0),
        ]

    def test_partly_applied_is_a_conflict(self) -> None:
        """One hunk applied, one not: CONFLICT naming both."""
        diff = udiff(
            "@@ -2,3 +2,3 @@\n line 2\n-line 3\n+LINE 3\n line 4",
            "@@ -12,3 +12,3 @@\n line 12\n-line 13\n+L13\n line 14",
        )
        content = text(*LINES_20).replace(b"line 3\n", b"LINE 3\n")
        res = check(content, diff)
        assert res.status == CONFLICT and res.content is None
        assert res.reason == "partly applied: hunk(s) 1 already in the file, hunk(s) 2 not"
        assert [h.status for h in res.hunks] == [ALREADY_APPLIED, APPLIED]

    def test_equal_distance_both_ways_is_a_conflict(self) -> None:
        """The old side 3 lines below, the new side 3 lines above: no way to tell."""
        content = text("p", "A", "new", "C", "q", "r", "s", "A", "old", "C", "t")
        res = check(content, udiff("@@ -5,3 +5,3 @@\n A\n-old\n+new\n C"))
        assert res.status == CONFLICT
        assert "ambiguous: its old lines match at line 8 and its new lines at line 2" in res.reason

    def test_nearer_direction_wins(self) -> None:
        """Old side 4 lines away, new side 1 line away: already applied."""
        content = text("p", "A", "new", "C", "q", "r", "s", "x", "A", "old", "C", "t")
        res = check(content, udiff("@@ -3,3 +3,3 @@\n A\n-old\n+new\n C"))
        assert res.status == ALREADY_APPLIED and res.hunks[0].offset == -1

    @needs_gnu_patch
    def test_already_applied_fix_is_not_reapplied_into_its_twin(self) -> None:
        """A.get is fixed; GNU patch re-applies the fix into the twin B.get, we report it applied."""
        fixed = TWINS.replace(b"broken", b"fixed", 1)
        gnu = gnu_patch(fixed, FIX_A)
        assert gnu.status == 0 and gnu.content == fixed.replace(b"broken", b"fixed"), "GNU patch patches the twin"
        res = check(fixed, FIX_A)
        assert res.status == ALREADY_APPLIED and res.content == fixed
        assert (res.hunks[0].line, res.hunks[0].offset) == (4, 0)

    @needs_gnu_patch
    def test_already_applied_fix_in_a_shifted_file_is_not_reapplied_into_its_twin(self) -> None:
        """Same with three lines added on top: the fixed block (3 away) is nearer than the twin (5)."""
        fixed = b"#\n#\n#\n" + TWINS.replace(b"broken", b"fixed", 1)
        assert gnu_patch(fixed, FIX_A).status == 0
        res = check(fixed, FIX_A)
        assert res.status == ALREADY_APPLIED and res.hunks[0].offset == 3

    @needs_gnu_patch
    @pytest.mark.parametrize("fuzz", [0, 2])
    def test_fresh_fix_is_not_called_applied_because_a_twin_matches_with_fuzz(self, fuzz: int) -> None:
        """
        A twin below already has the fixed line with different surroundings, so ``patch -R
        --fuzz=2`` "finds the fix applied" (the nova claims.py trap). The exact forward match at
        the stated line decides: applied, with any fuzz setting.
        """
        content = TWINS.replace(
            b"        return broken(y)\n\n\nclass C", b"        return fixed(y)\n    # other\n\nclass C"
        )
        reverse = gnu_patch(content, FIX_A, "-R", "--force", "--dry-run", "--fuzz=2")
        assert reverse.status == 0 and reverse.hunks[1][2] == 2, "GNU's reverse check is fooled"
        res = check(content, FIX_A, fuzz=fuzz)
        assert res.status == APPLIED and (res.hunks[0].line, res.hunks[0].fuzz) == (4, 0)
        assert res.content == content.replace(b"broken", b"fixed", 1)

    def test_fresh_fix_with_an_exact_twin_of_its_result_further_away(self) -> None:
        """B.get already looks like the fixed A.get; A.get at the stated line is still patched."""
        content = TWINS.replace(b"broken", b"fixed").replace(b"fixed", b"broken", 1)
        res = check(content, FIX_A)
        assert res.status == APPLIED and res.hunks[0].line == 4


class TestOverlappingSides:
    def test_exact_old_side_at_its_stated_line_wins_over_a_containing_new_side(self) -> None:
        """Issue #2's first rule: the header says line 2, the context is exactly there: apply."""
        content = text("    return None", "def alpha(self, x):", "    if x is None:")
        res = check(content, udiff("@@ -2 +2,2 @@\n+    return None\n def alpha(self, x):"))
        assert res.status == APPLIED and (res.hunks[0].line, res.hunks[0].offset) == (2, 0)

    def test_addition_found_inside_its_result_off_the_header_is_already_applied(self) -> None:
        """Neither side at its stated line: the new side, which contains the context, explains both."""
        content = text("x", "y", "    return None", "def alpha(self, x):", "    if x is None:")
        res = check(content, udiff("@@ -2 +2,2 @@\n+    return None\n def alpha(self, x):"))
        assert res.status == ALREADY_APPLIED

    def test_both_sides_around_the_same_context_off_the_header_is_a_conflict(self) -> None:
        """The line to add and the line to remove are both next to the context, away from the header."""
        content = text("x", "y", "    return None", "# alpha 0", "", "")
        res = check(content, udiff("@@ -2,2 +2,2 @@\n+    return None\n # alpha 0\n-"))
        assert res.status == CONFLICT
        assert "both its old and its new lines are around line 4" in res.reason

    def test_context_free_replacement_away_from_its_line_with_both_sides_found(self) -> None:
        """A -U0 replacement: X two lines off and Y three lines off; without context, refuse."""
        res = check(text("a", "b", "c", "X", "Y"), udiff("@@ -2 +2 @@\n-X\n+Y"))
        assert res.status == CONFLICT and "has no context lines and matches at line 4" in res.reason

    def test_context_free_replacement_with_its_result_at_its_line(self) -> None:
        """A -U0 replacement whose new line is exactly where it says: already applied."""
        res = check(text("a", "Y", "b", "X"), udiff("@@ -2 +2 @@\n-X\n+Y"))
        assert res.status == ALREADY_APPLIED

    @needs_gnu_patch
    def test_context_free_addition_stated_inside_the_previous_hunk(self) -> None:
        """GNU patch: "misordered hunks"; we: a conflict naming the reason."""
        content = text("a", "b", "c", "d")
        diff = udiff("@@ -2,3 +2,3 @@\n b\n-c\n+C\n d", "@@ -1,0 +2 @@\n+new")
        assert gnu_patch(content, diff).failed == (2,)
        res = check(content, diff)
        assert res.status == CONFLICT and "lies within the previous hunk" in res.reason


class TestAmbiguity:
    """Issue #12 item 5: when both sides fit at the stated line, the direction cannot be known."""

    RUN = text("x", *["b"] * 7)
    DIFF = udiff("@@ -1,5 +1,4 @@\n x\n-b\n b\n b\n b")

    def test_both_sides_at_the_stated_line_is_a_conflict_with_advice(self) -> None:
        res = check(self.RUN, self.DIFF)
        assert res.status == CONFLICT and res.content is None
        assert res.reason == (
            "hunk #1: ambiguous at line 1: the original and the patched text both fit, so kolla-entry cannot "
            "tell whether the fix is already in this image; make the patch with more context, e.g. `git diff -U10`"
        )

    def test_the_same_fix_with_more_context_applies_once(self) -> None:
        """With the line after the run as context, only one side fits: applied, then already applied."""
        content = text("x", *["b"] * 7, "end")
        diff = udiff("@@ -1,9 +1,8 @@\n x\n-b\n" + "".join(" b\n" for _ in range(6)) + " end")
        res = check(content, diff)
        assert res.status == APPLIED and res.content == text("x", *["b"] * 6, "end")
        assert res.content is not None
        again = check(res.content, diff)
        assert again.status == ALREADY_APPLIED and again.content == res.content

    @pytest.mark.parametrize("body", [
        pytest.param(["    pass"] * 6, id="pass-block"),
        pytest.param([""] * 6, id="blank-run"),
    ])
    def test_runs_of_identical_lines(self, body: List[str]) -> None:
        content = text("def f():", *body)
        diff = udiff("@@ -1,4 +1,5 @@\n def f():\n+" + body[0] + "\n " + body[0] + "\n " + body[0] + "\n " + body[0])
        res = check(content, diff)
        assert res.status == CONFLICT and "ambiguous at line 1" in res.reason


class TestEmptySides:
    def test_create_into_empty_file(self) -> None:
        """``@@ -0,0 +1,N @@`` on empty content writes the lines."""
        res = check(b"", udiff("@@ -0,0 +1,2 @@\n+a\n+b"))
        assert res.status == APPLIED and res.content == b"a\nb\n"
        assert (res.hunks[0].line, res.hunks[0].offset) == (1, 0)

    def test_create_again_is_already_applied(self) -> None:
        """The created content is there already: ALREADY_APPLIED, not a second copy."""
        res = check(b"a\nb\n", udiff("@@ -0,0 +1,2 @@\n+a\n+b"))
        assert res.status == ALREADY_APPLIED

    @needs_gnu_patch
    def test_context_free_addition_goes_at_its_stated_line(self) -> None:
        """A -U0 addition carries no context: placed at the stated line (plus offset), as GNU does."""
        content, diff = text("1", "2", "3", "4", "5"), udiff("@@ -2,0 +3 @@\n+NEW")
        res, gnu = check(content, diff), gnu_patch(content, diff)
        assert res.status == APPLIED and res.content == gnu.content == text("1", "2", "NEW", "3", "4", "5")

    def test_context_free_addition_found_at_its_place_is_applied(self) -> None:
        """The added line right at its stated new position: already applied."""
        res = check(text("1", "2", "NEW", "3"), udiff("@@ -2,0 +3 @@\n+NEW"))
        assert res.status == ALREADY_APPLIED

    def test_context_free_addition_with_same_line_elsewhere_is_applied(self) -> None:
        """The added line existing elsewhere proves nothing: it is added."""
        res = check(text("1", "2", "3", "NEW"), udiff("@@ -2,0 +3 @@\n+NEW"))
        assert res.status == APPLIED and res.content == text("1", "2", "NEW", "3", "NEW")

    @needs_gnu_patch
    def test_context_free_deletion_at_its_stated_line(self) -> None:
        """A -U0 deletion whose line is where it says: deleted, as GNU does."""
        content, diff = text("0", "1", "X", "3"), udiff("@@ -3 +2,0 @@\n-X")
        res, gnu = check(content, diff), gnu_patch(content, diff)
        assert res.status == APPLIED and res.content == gnu.content == text("0", "1", "3")

    @needs_gnu_patch
    def test_context_free_deletion_found_elsewhere_is_a_conflict(self) -> None:
        """
        GNU patch deletes the nearest match; with no context that may be a twin of a line already
        deleted, and a restart would delete one more each time. We refuse.
        """
        content, diff = text("0", "1", "2", "X", "3"), udiff("@@ -3 +2,0 @@\n-X")
        assert gnu_patch(content, diff).content == text("0", "1", "2", "3")
        res = check(content, diff)
        assert res.status == CONFLICT and "has no context lines" in res.reason

    def test_context_free_deletion_of_absent_lines_is_already_applied(self) -> None:
        """The lines to delete are nowhere: the deletion is done."""
        res = check(text("0", "1", "2", "3"), udiff("@@ -3 +2,0 @@\n-X"))
        assert res.status == ALREADY_APPLIED and res.content == text("0", "1", "2", "3")

    def test_delete_whole_content(self) -> None:
        """A deletion hunk of every line leaves empty content."""
        res = check(text("a", "b"), udiff("@@ -1,2 +0,0 @@\n-a\n-b"))
        assert res.status == APPLIED and res.content == b""

    def test_context_only_hunk_follows_the_others(self) -> None:
        """A hunk whose two sides are equal proves nothing: it takes the file's verdict."""
        diff = udiff("@@ -1,2 +1,2 @@\n line 1\n line 2", "@@ -5,3 +5,3 @@\n line 5\n-line 6\n+LINE 6\n line 7")
        fresh = check(text(*LINES_20), diff)
        assert fresh.status == APPLIED and [h.status for h in fresh.hunks] == [APPLIED, APPLIED]
        assert fresh.content is not None
        again = check(fresh.content, diff)
        assert again.status == ALREADY_APPLIED and [h.status for h in again.hunks] == [ALREADY_APPLIED] * 2

    def test_only_context_hunks_is_already_applied(self) -> None:
        """Nothing to change: the file is as the patch wants it."""
        res = check(text(*LINES_20), udiff("@@ -1,2 +1,2 @@\n line 1\n line 2"))
        assert res.status == ALREADY_APPLIED and res.content == text(*LINES_20)

    def test_context_only_hunk_that_does_not_match_is_a_conflict(self) -> None:
        """Even a no-op hunk must find its context."""
        res = check(text(*LINES_20), udiff("@@ -1,2 +1,2 @@\n nope\n line 2"))
        assert res.status == CONFLICT


# --- differential test against GNU patch -------------------------------------------------------

BLOCKS = [
    ["def {n}(self, x):", "    if x is None:", "        return {v}", "    return x + {v}", ""],
    ["class {N}:", "    value = {v}", ""],
    ["for item in {n}:", "    total += item * {v}", ""],
    ["# {n} {v}", ""],
    ["if {n}:", "    {n}({v})", "else:", "    pass", ""],
]
NAMES = ["alpha", "beta", "gamma"]


@st.composite
def python_like(draw: st.DrawFn) -> List[str]:
    """Lines of Python-like code from a few block templates and few names: many near twins."""
    lines: List[str] = []
    for _ in range(draw(st.integers(1, 14))):
        block = draw(st.sampled_from(BLOCKS))
        name, value = draw(st.sampled_from(NAMES)), draw(st.integers(0, 2))
        lines += [line.format(n=name, N=name.title(), v=value) for line in block]
    return lines


@st.composite
def edits(draw: st.DrawFn, lines: List[str]) -> List[str]:
    """Replace, insert and delete a few lines (new lines also drawn from the same small vocabulary)."""
    new = list(lines)
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(new)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        payload = draw(st.sampled_from(["    return None", "    x = {v}", "", "pass", "    total = 0"])).format(
            v=draw(st.integers(0, 2))
        )
        if kind == "insert":
            new.insert(at, payload)
        elif at < len(new):
            new[at : at + 1] = [payload] if kind == "replace" else []
    return new


def _as_bytes(lines: List[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _shift_headers(diff: bytes, shift: int) -> bytes:
    """Move every hunk header by ``shift`` lines, both sides alike, never below the first line."""

    def fix(m: re.Match[bytes]) -> bytes:
        old, new = int(m[1]), int(m[3])
        lowest = (0 if m[2] == b",0" else 1, 0 if m[4] == b",0" else 1)
        by = max(shift, lowest[0] - old, lowest[1] - new)
        return b"@@ -%d%s +%d%s @@" % (old + by, m[2] or b"", new + by, m[4] or b"")

    return re.sub(rb"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@", fix, diff, flags=re.M)


def _new_side_present(content: bytes, hunk: Hunk) -> bool:
    """Brute force: does the hunk's new side occur anywhere in ``content``?"""
    lines, want = content.split(b"\n"), [line.text for line in hunk.new_lines]
    return any(lines[i : i + len(want)] == want for i in range(len(lines) - len(want) + 1))


def _direction_doubt(result: FileResult) -> bool:
    """A conflict because the direction is in doubt (not because the context is missing)."""
    doubts = ("ambiguous", "partly applied", "has no context lines")
    return result.status == CONFLICT and any(word in result.reason for word in doubts)


@needs_gnu_patch
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_differential_against_gnu_patch(data: st.DataObject) -> None:
    """
    Generated code with twins, generated edits, difflib's diff (context 0-3), applied to the
    original, to a copy with lines inserted (real offsets) and with shifted headers: when we apply,
    GNU patch applies too with the same bytes and offsets; when we refuse, it is for a stated reason
    GNU patch does not check (an exact copy of the result nearer than the place, or overlap).
    Applying our result again is always ALREADY_APPLIED.
    """
    old = data.draw(python_like(), label="old")
    new = data.draw(edits(old), label="new")
    context = data.draw(st.integers(0, 3), label="context")
    diff = "".join(difflib.unified_diff([x + "\n" for x in old], [x + "\n" for x in new], "f", "f", n=context)).encode()
    if not diff:
        return
    target = list(old)
    for _ in range(data.draw(st.integers(0, 3), label="insertions")):
        at = data.draw(st.integers(0, len(target)))
        target.insert(at, data.draw(st.sampled_from(["# padding", "", "    pass"])))
    shift = data.draw(st.integers(-3, 3), label="header shift")
    diff = _shift_headers(diff, shift)
    content, hunks = _as_bytes(target), hunks_of(diff)
    res, gnu = apply_hunks(content, hunks), gnu_patch(content, diff)
    if res.status == APPLIED:
        if gnu.status != 0 and _pinned_to_the_end(gnu, hunks):
            return  # GNU pins short trailing context to the end of the file; we, like git, do not (issue #12)
        assert gnu.status == 0, gnu.output
        if _gnu_overlaps(gnu, hunks):
            return  # GNU let a hunk start inside the previous one; we take the next twin (documented)
        assert res.content == gnu.content
        # A context-free addition stated past the end goes at the end: we report where it went,
        # GNU patch the offset it was given.
        numbers = gnu_numbers(res, hunks)
        assert {k: v for k, v in numbers.items() if hunks[k - 1].old_lines} == {
            k: v for k, v in gnu.hunks.items() if hunks[k - 1].old_lines
        }
        assert res.content is not None
        # Applied once, then again: where the target matched the diff exactly, recognised as applied
        # (or refused as doubtful), never applied twice. With wrong line numbers in a file of twins
        # and 1 line of context, deleting one of two adjacent identical blocks can look undone from
        # the stated line (known limit, as with -U0 patches, where nothing tells the states apart).
        again = apply_hunks(res.content, hunks)
        exact = target == old and shift == 0
        if exact and context:
            assert again.status == ALREADY_APPLIED or _direction_doubt(again), again
        if exact:
            assert res.content == _as_bytes(new)
    elif res.status == ALREADY_APPLIED:
        assert all(_new_side_present(content, hunks[h.index - 1]) for h in res.hunks if h.status == ALREADY_APPLIED)
    else:
        _check_refusal(res, hunks, content, gnu)


def _pinned_to_the_end(gnu: Gnu, hunks: Sequence[Hunk]) -> bool:
    """Did GNU patch fail a hunk with some, but less trailing than leading, context?"""
    return any(0 < Shape.of(hunks[i - 1]).suffix < Shape.of(hunks[i - 1]).prefix for i in gnu.failed)


def _gnu_overlaps(gnu: Gnu, hunks: Sequence[Hunk]) -> bool:
    """Did GNU patch start a hunk before the end of the previous hunk's old side?"""
    added, end = 0, 0
    for hunk in hunks:
        stated = hunk.old_start + (0 if hunk.old_len else 1)
        where = gnu.hunks[hunk.index][0] - added if hunk.index in gnu.hunks else stated
        if where - 1 < end:
            return True
        end = where - 1 + len(hunk.old_lines)
        added += len(hunk.new_lines) - len(hunk.old_lines)
    return False


def _check_refusal(res: FileResult, hunks: Sequence[Hunk], content: bytes, gnu: Gnu) -> None:
    """Our CONFLICT is either GNU's failure too, or one of the doubts GNU patch does not have."""
    [failed] = [h for h in res.hunks if h.status == CONFLICT][:1] or [None]
    if "lies within the previous hunk" in res.reason:
        assert gnu.status != 0, "GNU patch reports misordered hunks too"
    elif "has no context lines" in res.reason:
        assert failed is not None and all(line.op != " " for line in hunks[failed.index - 1].lines)
    elif "ambiguous" in res.reason or "partly applied" in res.reason:
        assert any(_new_side_present(content, hunk) for hunk in hunks)
    elif gnu.status == 0:
        # GNU succeeded where we found nothing: only its overlap with the previous hunk does that.
        assert failed is not None and failed.index > 1, (res, gnu.output)
