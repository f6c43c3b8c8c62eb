"""
Hunk placement: where each hunk of a file patch goes, and whether it is already there.

:func:`apply_hunks` is pure: file bytes and hunks in, a :class:`~kolla_entry.model.FileResult` out.

Placement mirrors GNU patch 2.7.6's ``locate_hunk`` (checked against /usr/bin/patch, see
tests/test_match.py):

- A hunk is tried at its stated line plus the offset carried over from the previous hunk, then at
  growing distances, the later line first on a tie (GNU tries ``+k`` before ``-k``).
- A hunk never starts before the end of the previous placed hunk. GNU patch lets a hunk overlap the
  previous hunk's trailing context (and, from a stated line inside it, even its changed lines); we
  do not: hunks of one diff never overlap, so such a place is a twin, not the target.
- Leading context shorter than trailing context in a hunk stated at line 1: only line 1 will do.
  Trailing context shorter than leading context (any stated line): only the end of the file will
  do. Both are GNU patch's rules for hunks at a file's edges.
- ``fuzz`` N: when nothing matches exactly, retry with up to N context lines dropped at the edges,
  as GNU patch computes them (the longer edge loses one line per level, the shorter edge only
  once it is as long). Dropped context lines keep the file's text.

Our additions:

- Direction. Each hunk is looked for both ways at once: its old side (not yet applied) and its new
  side (already applied), each nearest its stated line. The nearer wins, a tie is a conflict. The
  first level that finds either side decides, in this order: exact; trailing whitespace ignored;
  then fuzz 1..N. So fuzz never outvotes an exact match, and a twin that only matches loosely
  never makes a fresh fix look applied (the nova ``claims.py`` trap of ``patch -R --fuzz 2``).
  Two refinements: when one side's place lies within the other's (an addition's context inside
  its result), the larger find wins whatever the distance; when both hang on the same context
  lines (the lines to remove and the lines to add are both there), it is a conflict.
- Whitespace. Patches that travelled through YAML lose trailing whitespace and the space of blank
  context lines. When no side matches exactly, lines are compared with trailing spaces, tabs and
  ``\\r`` ignored (and, like GNU ``-l``, a missing final newline); such a match counts only if it
  is the only one between the end of the previous hunk and the end of the file.
- Line endings. A patch line matches a CRLF file line with or without its ``\\r`` (a diff of the
  CRLF file, or one normalised to LF). Added lines take the file's dominant ending.
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

import bisect
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from kolla_entry.model import (
    ALREADY_APPLIED,
    APPLIED,
    CONFLICT,
    CONTEXT,
    REMOVE,
    FileResult,
    Hunk,
    HunkLine,
    HunkResult,
)

_EXACT = "exact"
_LOOSE = "loose"
_TRAILING_WS = b" \t\r"


def _exact_key(text: bytes) -> bytes:
    # One trailing \r is a CRLF line ending, not content: it lets LF-normalised patches match.
    return text[:-1] if text.endswith(b"\r") else text


def _loose_key(text: bytes) -> bytes:
    return text.rstrip(_TRAILING_WS)


_KEYS = {_EXACT: _exact_key, _LOOSE: _loose_key}


class _Text:
    """The target file as lines (terminators kept), with per-mode content indexes built on demand."""

    def __init__(self, content: bytes) -> None:
        parts = content.split(b"\n")
        self.lines: List[bytes] = [part + b"\n" for part in parts[:-1]]
        if parts[-1]:
            self.lines.append(parts[-1])
        self.bodies = [line[:-1] if line.endswith(b"\n") else line for line in self.lines]
        self.size = len(self.lines)
        self.open_end = bool(parts[-1])  # the last line has no terminator
        self._keys: Dict[str, List[bytes]] = {}
        self._index: Dict[str, Dict[bytes, List[int]]] = {}
        self._ending: Optional[bytes] = None

    def keys(self, mode: str) -> List[bytes]:
        if mode not in self._keys:
            self._keys[mode] = [_KEYS[mode](body) for body in self.bodies]
        return self._keys[mode]

    def index(self, mode: str) -> Dict[bytes, List[int]]:
        """Line key -> ascending positions, so a search visits candidates, not the whole file."""
        if mode not in self._index:
            index: Dict[bytes, List[int]] = {}
            for position, key in enumerate(self.keys(mode)):
                index.setdefault(key, []).append(position)
            self._index[mode] = index
        return self._index[mode]

    def line_matches(self, i: int, line: HunkLine, mode: str) -> bool:
        if mode == _LOOSE:
            return self.keys(_LOOSE)[i] == _loose_key(line.text)
        body = self.bodies[i]
        terminated = not (self.open_end and i == self.size - 1)
        return (body == line.text or body == line.text + b"\r") and terminated == line.newline

    def ending(self, hunk: Hunk) -> bytes:
        """The line ending for added lines: the file's majority, or the hunk's for an empty file."""
        if self._ending is None:
            crlf = sum(1 for line in self.lines if line.endswith(b"\r\n"))
            terminated = self.size - (1 if self.open_end else 0)
            self._ending = (b"\r\n" if 2 * crlf > terminated else b"\n") if terminated else b""
        if self._ending:
            return self._ending
        added = [line.text for line in hunk.new_lines if line.text]
        return b"\r\n" if added and all(text.endswith(b"\r") for text in added) else b"\n"


@dataclass(frozen=True)
class _Side:
    """One side of a hunk: its lines and where it says it starts (0-based; for an empty side, the gap)."""

    lines: Tuple[HunkLine, ...]
    first: int

    @classmethod
    def of(cls, lines: Tuple[HunkLine, ...], start: int) -> _Side:
        # Unified diffs number an empty range by the line before it (``-5,0``), GNU's p_first++.
        return cls(lines, start - 1 if lines else start)

    @property
    def end(self) -> int:
        return self.first + len(self.lines)


@dataclass(frozen=True)
class _Shape:
    """Leading and trailing context line counts, as GNU patch's prefix/suffix context."""

    prefix: int
    suffix: int

    @classmethod
    def of(cls, hunk: Hunk) -> _Shape:
        ops = [line.op for line in hunk.lines]
        prefix = next((i for i, op in enumerate(ops) if op != CONTEXT), len(ops))
        suffix = next((i for i, op in enumerate(reversed(ops)) if op != CONTEXT), len(ops))
        return cls(prefix, suffix)

    @property
    def context(self) -> int:
        return max(self.prefix, self.suffix)


@dataclass(frozen=True)
class _Search:
    """One look for one side: how (mode, fuzz) and where (stated guess, lowest allowed start)."""

    side: _Side
    shape: _Shape
    mode: str
    fuzz: int
    guess: int
    low: int


@dataclass(frozen=True)
class _Found:
    """The nearest start of a side (None: nowhere), and whether a loose search saw a second one."""

    start: Optional[int]
    ambiguous: bool = False


@dataclass(frozen=True)
class _Place:
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


def _by_distance(guess: int, later: Iterable[int], earlier: Iterable[int]) -> Iterator[int]:
    """Merge ascending starts >= guess and descending starts < guess, nearest first, later on a tie."""
    up, down = iter(later), iter(earlier)
    a, b = next(up, None), next(down, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a - guess <= guess - b):
            assert a is not None
            yield a
            a = next(up, None)
        else:
            yield b
            b = next(down, None)


def _matches_at(text: _Text, side: _Side, start: int, skip: Tuple[int, int], mode: str) -> bool:
    head, tail = skip
    return all(text.line_matches(start + j, side.lines[j], mode) for j in range(head, len(side.lines) - tail))


def _free_starts(text: _Text, search: _Search, skip: Tuple[int, int], high: int) -> Iterator[int]:
    """Candidate starts in [low, high], GNU's order, from the index of the rarest compared line."""
    side, guess, low = search.side, search.guess, search.low
    compared = range(skip[0], len(side.lines) - skip[1])
    if not compared:  # fuzz dropped every line: anything fits, as in GNU patch
        yield from _by_distance(guess, range(max(guess, low), high + 1), range(min(guess, high + 1) - 1, low - 1, -1))
        return
    index, key = text.index(search.mode), _KEYS[search.mode]
    j = min(compared, key=lambda k: len(index.get(key(side.lines[k].text), ())))
    positions = index.get(key(side.lines[j].text), [])
    a = bisect.bisect_left(positions, low + j)
    b = bisect.bisect_right(positions, high + j)
    g = max(a, min(b, bisect.bisect_left(positions, guess + j)))
    later = (positions[k] - j for k in range(g, b))
    earlier = (positions[k] - j for k in range(g - 1, a - 1, -1))
    yield from _by_distance(guess, later, earlier)


def _starts(text: _Text, search: _Search) -> Iterator[int]:
    """Every start where the side matches, in GNU patch's order of preference (locate_hunk)."""
    side, shape, fuzz = search.side, search.shape, search.fuzz
    size = len(side.lines)
    head = fuzz + shape.prefix - shape.context
    tail = fuzz + shape.suffix - shape.context
    if head < 0 and side.first <= 0:  # anchored to the top of the file
        if search.low == 0 and size - tail <= text.size and _matches_at(text, side, 0, (0, tail), search.mode):
            yield 0
        return
    head = max(head, 0)
    if tail < 0:  # anchored to the end of the file
        start = text.size - size
        if start >= search.low and _matches_at(text, side, start, (head, 0), search.mode):
            yield start
        return
    high = text.size - (size - tail)
    for start in _free_starts(text, search, (head, tail), high):
        if _matches_at(text, side, start, (head, tail), search.mode):
            yield start


def _find(text: _Text, search: _Search) -> _Found:
    if not search.side.lines:
        return _Found(None)
    starts = _starts(text, search)
    first = next(starts, None)
    if search.mode == _LOOSE and first is not None and next(starts, None) is not None:
        return _Found(first, ambiguous=True)
    return _Found(first)


def _levels(shape: _Shape, fuzz: int) -> List[Tuple[str, int]]:
    return [(_EXACT, 0), (_LOOSE, 0)] + [(_EXACT, level) for level in range(1, min(fuzz, shape.context) + 1)]


def _choose(
    found: Tuple[_Found, _Found],
    guesses: Tuple[int, int],
    sizes: Tuple[int, int],
    anchors: Tuple[Optional[int], Optional[int]],
    level: Tuple[str, int],
) -> Union[_Place, str, None]:
    """Pick the direction from one level's finds: a place, a conflict reason, or None (look further)."""
    fwd, rev = found
    mode, fuzz = level
    loose = mode == _LOOSE
    if fwd.ambiguous or rev.ambiguous:
        start = fwd.start if fwd.ambiguous else rev.start
        assert start is not None
        return f"matches more than one place when trailing whitespace is ignored (nearest at line {start + 1})"
    if fwd.start is None:
        return None if rev.start is None else _Place(False, rev.start, fuzz, loose)
    if rev.start is None:
        return _Place(True, fwd.start, fuzz, loose)
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


def _not_found(hunk: Hunk, shape: _Shape, guess: int, low: int, fuzz: int) -> str:
    if shape.prefix < shape.suffix and hunk.old_start <= 1:
        where = "a hunk at the top of the file must match at line 1"
    elif shape.suffix < shape.prefix:
        where = "a hunk with less trailing than leading context must match at the end of the file"
    elif low == 0:
        where = "searched the whole file"
    else:
        where = f"searched from line {low + 1}, after the previous hunk, to the end"
    tried = "also ignoring trailing whitespace"
    levels = min(fuzz, shape.context)
    if levels:
        tried += f" and with fuzz up to {levels}"
    return f"context not found near line {guess + 1} ({where}; {tried})"


def _first_context(side: _Side) -> Optional[int]:
    return next((i for i, line in enumerate(side.lines) if line.op == CONTEXT), None)


def _clamp(guess: int, track: _Track, text: _Text) -> int:
    return max(track.low, min(guess, text.size))


def _place(text: _Text, hunk: Hunk, track: _Track, fuzz: int) -> Union[_Place, str]:
    """Find where ``hunk`` goes and which way, or say why it does not fit."""
    old, new = _Side.of(hunk.old_lines, hunk.old_start), _Side.of(hunk.new_lines, hunk.new_start)
    shape = _Shape.of(hunk)
    guesses = (old.first + track.old_offset, new.first + track.new_offset)
    if not old.lines:
        # A pure addition without context: GNU puts it at the stated place; only its lines found
        # exactly there say it is already applied.
        found = _find(text, _Search(new, shape, _EXACT, 0, guesses[1], track.low))
        if new.lines and found.start == guesses[1]:
            return _Place(False, found.start, 0, False)
        if guesses[0] < track.low:  # GNU patch: "misordered hunks"
            return f"has no context lines and its place, line {guesses[0] + 1}, lies within the previous hunk"
        return _Place(True, min(guesses[0], text.size), 0, False)
    neutral = hunk.old_lines == hunk.new_lines
    bare = all(line.op != CONTEXT for line in hunk.lines)
    anchors = (_first_context(old), _first_context(new))
    for mode, level in _levels(shape, fuzz):
        fwd = _find(text, _Search(old, shape, mode, level, guesses[0], track.low))
        rev = _Found(None) if neutral else _find(text, _Search(new, shape, mode, level, guesses[1], track.low))
        choice = _choose((fwd, rev), guesses, (len(old.lines), len(new.lines)), anchors, (mode, level))
        if isinstance(choice, _Place) and bare and (not new.lines or rev.start is not None):
            stated = guesses[0] if choice.forward else guesses[1]
            if choice.start != stated:
                # Without context only the stated place tells "applied" from "not yet": a pure
                # deletion found elsewhere may be a twin of lines it already deleted (deleting it
                # would change the code on every restart), and so may either side of a
                # replacement when both are found.
                return (
                    f"has no context lines and matches at line {choice.start + 1}, not at line "
                    f"{stated + 1}: cannot tell whether it is already applied"
                )
        if choice is not None:
            return choice
    if not new.lines:  # a pure deletion without context whose lines are nowhere: already done
        return _Place(False, _clamp(guesses[1], track, text), 0, False)
    return _not_found(hunk, shape, guesses[0], track.low, fuzz)


def _advance(text: _Text, hunk: Hunk, place: _Place) -> _Track:
    old, new = _Side.of(hunk.old_lines, hunk.old_start), _Side.of(hunk.new_lines, hunk.new_start)
    here, other = (old, new) if place.forward else (new, old)
    end = place.start + len(here.lines)
    offsets = (place.start - here.first, end - other.end)
    if not place.forward:
        offsets = offsets[::-1]
    return _Track(min(end, text.size), offsets[0], offsets[1])


def _hunk_result(hunk: Hunk, place: _Place, status: str) -> HunkResult:
    side = _Side.of(
        hunk.old_lines if place.forward else hunk.new_lines, hunk.old_start if place.forward else hunk.new_start
    )
    note = "matched ignoring trailing whitespace" if place.loose else ""
    return HunkResult(hunk.index, status, place.start - side.first, place.fuzz, place.start + 1, note)


def _assemble(text: _Text, placed: Sequence[Tuple[Hunk, _Place]]) -> bytes:
    """The new content: file lines outside the hunks, context from the file, added lines from the hunk."""
    pieces: List[bytes] = []
    cursor = 0
    for hunk, place in placed:
        ending = text.ending(hunk)
        pieces.extend(text.lines[cursor : place.start])
        i = place.start
        for line in hunk.lines:
            if line.op == CONTEXT:
                if i < text.size:  # a fuzzed-away trailing context line may lie past the end
                    pieces.append(text.lines[i])
                i += 1
            elif line.op == REMOVE:
                i += 1
            else:
                body = _exact_key(line.text)
                pieces.append(body + ending if line.newline else body)
        cursor = max(cursor, min(i, text.size))
    pieces.extend(text.lines[cursor:])
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
    text = _Text(content)
    track = _Track()
    results: List[Union[_Place, str]] = []
    for hunk in hunks:
        result = _place(text, hunk, track, fuzz)
        results.append(result)
        if isinstance(result, _Place):
            track = _advance(text, hunk, result)
    status, reason = _verdict(hunks, results)
    hunk_status = ALREADY_APPLIED if status == ALREADY_APPLIED else APPLIED
    reports = tuple(
        HunkResult(hunk.index, CONFLICT, reason=result)
        if isinstance(result, str)
        else _hunk_result(
            hunk,
            result,
            hunk_status if hunk.old_lines == hunk.new_lines else (APPLIED if result.forward else ALREADY_APPLIED),
        )
        for hunk, result in zip(hunks, results)
    )
    if status == CONFLICT:
        return FileResult(CONFLICT, None, reports, reason)
    if status == ALREADY_APPLIED:
        return FileResult(ALREADY_APPLIED, content, reports)
    placed = [(hunk, result) for hunk, result in zip(hunks, results) if isinstance(result, _Place)]
    return FileResult(APPLIED, _assemble(text, placed), reports)
