"""
Hunk placement: where each hunk of a file patch goes, and whether it is already there.

:func:`apply_hunks` is pure: file bytes and hunks in, a :class:`~kolla_entry.patching.model.FileResult` out.

Placement mirrors GNU patch 2.7.6's ``locate_hunk`` (the search itself is in
:mod:`kolla_entry.patching.search`; checked against /usr/bin/patch, see tests/patching/test_match.py):

- A hunk is tried at its stated line plus the offset carried over from the previous hunk, then at
  growing distances, the later line first on a tie (GNU tries ``+k`` before ``-k``).
- A hunk never starts before the end of the previous placed hunk. GNU patch lets a hunk overlap the
  previous hunk's trailing context (and, from a stated line inside it, even its changed lines); we
  do not: hunks of one diff never overlap, so such a place is a twin, not the target.
- Leading context shorter than trailing context in a hunk stated at line 1: only line 1 will do
  (GNU patch's rule). No trailing context at all (any stated line): only the end of the file will
  do, git apply's rule; GNU patch also pins a hunk with *some* trailing context, shorter than its
  leading context, to the end, and so fails once upstream appended code below it (issue #12: we
  search such a hunk like any other; a deliberate difference, README).
- ``fuzz`` N: when nothing matches exactly, retry with up to N context lines dropped at the edges,
  as GNU patch computes them (the longer edge loses one line per level, the shorter edge only
  once it is as long). Dropped context lines keep the file's text.

Our additions:

- Direction. Each hunk is looked for both ways at once: its old side (not yet applied) and its new
  side (already applied), each nearest its stated line. A side found exactly at its stated line
  wins over the other found elsewhere; otherwise the nearer wins, a tie is a conflict. The
  first level that finds either side decides, in this order: exact; trailing whitespace ignored;
  then fuzz 1..N. So fuzz never outvotes an exact match, and a twin that only matches loosely
  never makes a fresh fix look applied (the nova ``claims.py`` trap of ``patch -R --fuzz 2``).
  When *both* sides fit exactly at their stated lines (a run of identical lines: a repeated line,
  blank lines, a block of ``pass``), the text cannot tell applied from not: a conflict that asks
  for more context, never a forward apply that would repeat at every start (issue #12).
  Two refinements when neither side is at its stated line: when one side's place lies within the
  other's (an addition's context inside its result), the larger find wins whatever the distance;
  when both hang on the same context lines (the lines to remove and the lines to add are both
  there), it is a conflict.
- Whitespace. Patches that travelled through YAML lose trailing whitespace and the space of blank
  context lines. When no side matches exactly, lines are compared with trailing spaces, tabs and
  ``\\r`` ignored (and, like GNU ``-l``, a missing final newline); such a match counts only if it
  is the only one between the end of the previous hunk and the end of the file.
- Line endings. One trailing ``\\r`` on a patch line or a file line is its line ending, not content:
  an LF, CRLF or mixed patch matches an LF or CRLF file the same way, in the forward, the reverse
  and the already-applied checks alike (issue #12: a CRLF patch adding a line without context was
  added again at every start). Added lines take the file's dominant ending.
- Hunks without any context line (``diff -U0``) carry no evidence of place: a pure addition goes
  at its stated line unless its lines are exactly there already; a pure deletion or replacement
  found away from its stated line while the other side is also possible is a conflict (GNU patch
  would delete a twin, on every restart); a pure deletion whose lines are nowhere is already applied.
- A hunk whose two sides are equal proves nothing and takes the file's verdict; a file patch
  without hunks is APPLIED with unchanged bytes; all hunks found applied is ALREADY_APPLIED;
  some applied and some not is a "partly applied" conflict.

``HunkResult.line`` is the 1-based line of the *original* file where the placed side starts (GNU's
``where``); GNU patch prints ``where`` plus the lines added by earlier hunks, so "succeeded at 130"
for a hunk at original line 128 after a hunk that added two lines. ``offset`` is ``line`` minus
the stated line, cumulative, as GNU prints it. For an already-applied hunk both refer to the new
side as found in the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

from kolla_entry.patching.model import (
    ALREADY_APPLIED,
    APPLIED,
    CONFLICT,
    CONTEXT,
    REMOVE,
    FileResult,
    Hunk,
    HunkResult,
)
from kolla_entry.patching.search import (
    EXACT,
    LOOSE,
    Found,
    Search,
    Shape,
    Side,
    Text,
    at_guess,
    exact_key,
    find,
    levels,
)


@dataclass(frozen=True)
class _Place:
    """Where a hunk goes: ``forward`` (old side found, to apply) or not (new side found, applied)."""

    forward: bool
    start: int
    fuzz: int
    loose: bool


@dataclass(frozen=True)
class _Track:
    """What one hunk leaves to the next: the end of its place and the offsets it implies."""

    low: int = 0
    old_offset: int = 0
    new_offset: int = 0


def _choose(
    found: Tuple[Found, Found],
    guesses: Tuple[int, int],
    sizes: Tuple[int, int],
    anchors: Tuple[Optional[int], Optional[int]],
    level: Tuple[str, int],
) -> Union[_Place, str, None]:
    """Pick the direction from one level's finds: a place, a conflict reason, or None (look further)."""
    fwd, rev = found
    mode, fuzz = level
    loose = mode == LOOSE
    if fwd.ambiguous or rev.ambiguous:
        start = fwd.start if fwd.ambiguous else rev.start
        assert start is not None
        return f"matches more than one place when trailing whitespace is ignored (nearest at line {start + 1})"
    if fwd.start is None:
        return None if rev.start is None else _Place(False, rev.start, fuzz, loose)
    if rev.start is None:
        return _Place(True, fwd.start, fuzz, loose)
    at_stated = (fwd.start == guesses[0], rev.start == guesses[1])
    if at_stated[0] != at_stated[1]:
        # Issue #2's first rule: an exact find at the stated line wins over any find elsewhere.
        return _Place(at_stated[0], fwd.start if at_stated[0] else rev.start, fuzz, loose)
    inside = _inside((fwd.start, sizes[0]), (rev.start, sizes[1]))
    if inside is not None:
        # One side found within the other (an addition's context inside its result, a deletion's
        # result inside its old lines): the larger find explains the smaller, whatever the distance.
        return _Place(inside, fwd.start if inside else rev.start, fuzz, loose)
    if anchors[0] is not None and anchors[1] is not None and fwd.start + anchors[0] == rev.start + anchors[1]:
        # Both finds hang on the same context lines: the lines to remove and the lines to add are
        # both there, so the distances only measure how wrong the header is.
        return f"ambiguous: both its old and its new lines are around line {fwd.start + anchors[0] + 1}"
    near_old, near_new = abs(fwd.start - guesses[0]), abs(rev.start - guesses[1])
    if near_old == near_new:
        return (
            f"ambiguous: its old lines match at line {fwd.start + 1} and its new lines at line "
            f"{rev.start + 1}, both {near_old} lines from where the hunk says"
        )
    return _Place(True, fwd.start, fuzz, loose) if near_old < near_new else _Place(False, rev.start, fuzz, loose)


def _inside(old: Tuple[int, int], new: Tuple[int, int]) -> Optional[bool]:
    """True: the new side's place lies within the old side's; False: the reverse; None: neither."""
    (o, o_size), (n, n_size) = old, new
    if o_size > n_size and o <= n and n + n_size <= o + o_size:
        return True
    if n_size > o_size and n <= o and o + o_size <= n + n_size:
        return False
    return None


def _not_found(hunk: Hunk, shape: Shape, guess: int, low: int, fuzz: int) -> str:
    """The conflict reason for a hunk found nowhere: where it was looked for and how."""
    if shape.prefix < shape.suffix and hunk.old_start <= 1:
        where = "a hunk at the top of the file must match at line 1"
    elif shape.suffix == 0 < shape.prefix:
        where = "a hunk without trailing context must match at the end of the file"
    elif low == 0:
        where = "searched the whole file"
    else:
        where = f"searched from line {low + 1}, after the previous hunk, to the end"
    tried = "also ignoring trailing whitespace"
    most = min(fuzz, shape.context)
    if most:
        tried += f" and with fuzz up to {most}"
    return f"context not found near line {guess + 1} ({where}; {tried})"


def _first_context(side: Side) -> Optional[int]:
    """The position of the side's first context line (its anchor), if any."""
    return next((i for i, line in enumerate(side.lines) if line.op == CONTEXT), None)


def _clamp(guess: int, track: _Track, text: Text) -> int:
    """The guess kept between the previous hunk's end and the end of the file."""
    return max(track.low, min(guess, text.size))


def _place(text: Text, hunk: Hunk, track: _Track, fuzz: int) -> Union[_Place, str]:
    """Find where ``hunk`` goes and which way, or say why it does not fit."""
    old, new = Side.of(hunk.old_lines, hunk.old_start), Side.of(hunk.new_lines, hunk.new_start)
    shape = Shape.of(hunk)
    guesses = (old.first + track.old_offset, new.first + track.new_offset)
    if not old.lines:
        return _place_addition(text, new, shape, guesses, track)
    neutral = hunk.old_lines == hunk.new_lines
    if not neutral:
        # The common cases, a fresh hunk or an applied one exactly where the header says, decided
        # without indexing the whole file: the same answer the exact level below gives (first rule).
        here = (at_guess(text, Search(old, shape, EXACT, 0, guesses[0], track.low)),
                at_guess(text, Search(new, shape, EXACT, 0, guesses[1], track.low)))
        if here[0] != here[1]:
            return _Place(here[0], guesses[0] if here[0] else guesses[1], 0, False)
        if here[0]:
            # In a run of identical lines (a repeated line, blank lines, a block of `pass`) both
            # sides fit exactly where the header says: applying would change the file again at
            # every start, one line at a time (issue #12). Only more context can tell.
            return (f"ambiguous at line {guesses[0] + 1}: the original and the patched text both fit, so "
                    "kolla-entry cannot tell whether the fix is already in this image; make the patch with "
                    "more context, e.g. `git diff -U10`")
    bare = all(line.op != CONTEXT for line in hunk.lines)
    anchors = (_first_context(old), _first_context(new))
    for mode, level in levels(shape, fuzz):
        fwd = find(text, Search(old, shape, mode, level, guesses[0], track.low))
        rev = Found(None) if neutral else find(text, Search(new, shape, mode, level, guesses[1], track.low))
        choice = _choose((fwd, rev), guesses, (len(old.lines), len(new.lines)), anchors, (mode, level))
        if isinstance(choice, _Place) and bare and (not new.lines or rev.start is not None):
            off_place = _off_stated_place(choice, guesses)
            if off_place is not None:
                return off_place
        if choice is not None:
            return choice
    if not new.lines:  # a pure deletion without context whose lines are nowhere: already done
        return _Place(False, _clamp(guesses[1], track, text), 0, False)
    return _not_found(hunk, shape, guesses[0], track.low, fuzz)


def _place_addition(text: Text, new: Side, shape: Shape, guesses: Tuple[int, int], track: _Track) -> Union[_Place, str]:
    """Place a hunk with no old lines (a pure addition without context)."""
    # GNU puts it at the stated place; only its lines found exactly there say it is already applied.
    found = find(text, Search(new, shape, EXACT, 0, guesses[1], track.low))
    if new.lines and found.start == guesses[1]:
        return _Place(False, found.start, 0, False)
    if guesses[0] < track.low:  # GNU patch: "misordered hunks"
        return f"has no context lines and its place, line {guesses[0] + 1}, lies within the previous hunk"
    return _Place(True, min(guesses[0], text.size), 0, False)


def _off_stated_place(choice: _Place, guesses: Tuple[int, int]) -> Optional[str]:
    """The conflict reason when a hunk without context was found away from its stated line."""
    stated = guesses[0] if choice.forward else guesses[1]
    if choice.start == stated:
        return None
    # Without context only the stated place tells "applied" from "not yet": a pure deletion found
    # elsewhere may be a twin of lines it already deleted (deleting it would change the code on
    # every restart), and so may either side of a replacement when both are found.
    return (
        f"has no context lines and matches at line {choice.start + 1}, not at line "
        f"{stated + 1}: cannot tell whether it is already applied"
    )


def _advance(text: Text, hunk: Hunk, place: _Place) -> _Track:
    """What a placed hunk leaves to the next: the end of its place and both sides' offsets."""
    old, new = Side.of(hunk.old_lines, hunk.old_start), Side.of(hunk.new_lines, hunk.new_start)
    here, other = (old, new) if place.forward else (new, old)
    end = place.start + len(here.lines)
    offsets = (place.start - here.first, end - other.end)
    if not place.forward:
        offsets = offsets[::-1]
    return _Track(min(end, text.size), offsets[0], offsets[1])


def _hunk_result(hunk: Hunk, result: Union[_Place, str], file_status: str) -> HunkResult:
    """One hunk's result; a hunk whose two sides are equal takes the file's verdict."""
    if isinstance(result, str):
        return HunkResult(hunk.index, CONFLICT, reason=result)
    if hunk.old_lines == hunk.new_lines:
        status = ALREADY_APPLIED if file_status == ALREADY_APPLIED else APPLIED
    else:
        status = APPLIED if result.forward else ALREADY_APPLIED
    side = Side.of(
        hunk.old_lines if result.forward else hunk.new_lines, hunk.old_start if result.forward else hunk.new_start
    )
    note = "matched ignoring trailing whitespace" if result.loose else ""
    return HunkResult(hunk.index, status, result.start - side.first, result.fuzz, result.start + 1, note)


def _assemble(text: Text, placed: Sequence[Tuple[Hunk, _Place]]) -> bytes:
    """The new content: file lines outside the hunks, context from the file, added lines from the hunk."""
    # A run of untouched file lines is one join, not one piece per line: files are up to 1.5 MB.
    pieces: List[bytes] = []
    cursor = 0
    for hunk, place in placed:
        ending = text.ending(hunk)
        pieces.append(text.run(cursor, place.start))
        i = place.start
        for line in hunk.lines:
            if line.op == CONTEXT:
                pieces.append(text.run(i, i + 1))  # empty past the end: a fuzzed-away trailing line
                i += 1
            elif line.op == REMOVE:
                i += 1
            else:
                body = exact_key(line.text)
                pieces.append(body + ending if line.newline else body)
        cursor = max(cursor, min(i, text.size))
    pieces.append(text.run(cursor, text.size))
    pieces = [piece for piece in pieces if piece]
    fallback = text.ending(placed[0][0]) if placed else b"\n"
    for k in range(len(pieces) - 1):  # a line that lost its terminator is no longer the last one
        if not pieces[k].endswith(b"\n"):
            pieces[k] += fallback
    return b"".join(pieces)


def _verdict(hunks: Sequence[Hunk], results: List[Union[_Place, str]]) -> Tuple[str, str]:
    """File status and reason from the per-hunk places."""
    for hunk, result in zip(hunks, results):
        if isinstance(result, str):
            return CONFLICT, f"hunk #{hunk.index}: {result}"
    voting = [(h, r) for h, r in zip(hunks, results) if isinstance(r, _Place) and h.old_lines != h.new_lines]
    applied = [h.index for h, r in voting if isinstance(r, _Place) and not r.forward]
    missing = [h.index for h, r in voting if isinstance(r, _Place) and r.forward]
    if applied and missing:
        return CONFLICT, (
            f"partly applied: hunk(s) {', '.join(map(str, applied))} already in the file, "
            f"hunk(s) {', '.join(map(str, missing))} not"
        )
    if applied or (hunks and not voting):
        return ALREADY_APPLIED, ""
    return APPLIED, ""


def apply_hunks(content: bytes, hunks: Sequence[Hunk], *, fuzz: int = 0) -> FileResult:
    """
    Place every hunk of one file patch in ``content`` and apply them, or tell why not.

    Args:
        content: the target file's bytes (``b""`` for a file the patch creates).
        hunks: the file patch's hunks, in patch order.
        fuzz: context lines that may be dropped at a hunk's edges when nothing matches exactly.

    Returns:
        APPLIED with the new bytes when every hunk fits forward (no hunks at all: unchanged bytes);
        ALREADY_APPLIED with ``content`` when every hunk is found applied; CONFLICT with
        ``content=None`` when a hunk fits nowhere, is ambiguous, or the patch is partly applied.
        Each hunk result carries its place (see the module doc for ``line`` and ``offset``).
    """
    text = Text(content)
    track = _Track()
    results: List[Union[_Place, str]] = []
    for hunk in hunks:
        result = _place(text, hunk, track, fuzz)
        results.append(result)
        if isinstance(result, _Place):
            track = _advance(text, hunk, result)
    status, reason = _verdict(hunks, results)
    reports = tuple(_hunk_result(hunk, result, status) for hunk, result in zip(hunks, results))
    if status == CONFLICT:
        return FileResult(CONFLICT, None, reports, reason)
    if status == ALREADY_APPLIED:
        return FileResult(ALREADY_APPLIED, content, reports)
    placed = [(hunk, result) for hunk, result in zip(hunks, results) if isinstance(result, _Place)]
    return FileResult(APPLIED, _assemble(text, placed), reports)
