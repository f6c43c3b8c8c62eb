"""
Hunk search: the target file's lines, indexed, and where one side of a hunk matches in them.

This is the GNU patch 2.7.6 ``locate_hunk`` half of :mod:`kolla_entry.patching.match` (its module doc
states the rules): candidate starts nearest the guess first, the later one on a tie; never before
the end of the previous hunk; the top- and end-of-file anchors of hunks with uneven context; fuzz
dropping context lines at the edges. Unlike GNU patch, only a hunk with *no* trailing context is
anchored to the end (git apply's rule, issue #12): one with some, but less than its leading
context, is searched like any other, so it still applies after upstream appended code below it.
Which side wins, and what the file becomes, is decided in :mod:`kolla_entry.patching.match`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from kolla_entry.patching.model import CONTEXT, Hunk, HunkLine

#: Compare lines as they are (a CRLF file's ``\r`` aside).
EXACT = "exact"
#: Compare lines with trailing whitespace ignored.
LOOSE = "loose"
_TRAILING_WS = b" \t\r"


def exact_key(text: bytes) -> bytes:
    """The line's text for an exact comparison: without one trailing ``\\r``."""
    # One trailing \r is a CRLF line ending, not content: it lets LF-normalised patches match.
    return text[:-1] if text.endswith(b"\r") else text


def _loose_key(text: bytes) -> bytes:
    return text.rstrip(_TRAILING_WS)


_KEYS = {EXACT: exact_key, LOOSE: _loose_key}


class Text:
    """The target file as lines (terminators kept), with per-mode content indexes built on demand."""

    def __init__(self, content: bytes) -> None:
        parts = content.split(b"\n")
        self.open_end = bool(parts[-1])  # the last line has no terminator
        # Each line's text without its "\n": what every comparison reads.
        self.bodies: List[bytes] = parts if self.open_end else parts[:-1]
        self.size = len(self.bodies)
        self._has_cr = b"\r" in content
        self._keys: Dict[str, List[bytes]] = {}
        self._index: Dict[str, Dict[bytes, List[int]]] = {}
        self._ending: Optional[bytes] = None

    def run(self, start: int, stop: int) -> bytes:
        """Lines ``start`` to ``stop`` (past the end: none) with their terminators, as one piece."""
        stop = min(stop, self.size)
        if start >= stop:
            return b""
        joined = b"\n".join(self.bodies[start:stop])
        return joined if stop == self.size and self.open_end else joined + b"\n"

    def keys(self, mode: str) -> List[bytes]:
        """Every line's comparison key in ``mode``, computed once."""
        if mode not in self._keys:
            if mode == EXACT and not self._has_cr:
                self._keys[mode] = self.bodies  # nothing to strip: the bodies are the keys
            else:
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
        """Whether file line ``i`` matches the hunk line in ``mode`` (exact also checks the terminator)."""
        if mode == LOOSE:
            return self.keys(LOOSE)[i] == _loose_key(line.text)
        body = self.bodies[i]
        terminated = not (self.open_end and i == self.size - 1)
        # One trailing \r on either side is a line ending, as in the index (exact_key): a CRLF patch
        # line must match the LF line it wrote, or every restart would add it again (issue #12).
        return (body == line.text or exact_key(body) == exact_key(line.text)) and terminated == line.newline

    def ending(self, hunk: Hunk) -> bytes:
        """The line ending for added lines: the file's majority, or the hunk's for an empty file."""
        if self._ending is None:
            terminated = self.size - (1 if self.open_end else 0)
            crlf = sum(1 for body in self.bodies[:terminated] if body.endswith(b"\r")) if self._has_cr else 0
            self._ending = (b"\r\n" if 2 * crlf > terminated else b"\n") if terminated else b""
        if self._ending:
            return self._ending
        added = [line.text for line in hunk.new_lines if line.text]
        return b"\r\n" if added and all(text.endswith(b"\r") for text in added) else b"\n"


@dataclass(frozen=True)
class Side:
    """One side of a hunk: its lines and where it says it starts (0-based; for an empty side, the gap)."""

    lines: Tuple[HunkLine, ...]
    first: int

    @classmethod
    def of(cls, lines: Tuple[HunkLine, ...], start: int) -> Side:
        """The side from a hunk header's 1-based start."""
        # Unified diffs number an empty range by the line before it (``-5,0``), GNU's p_first++.
        return cls(lines, start - 1 if lines else start)

    @property
    def end(self) -> int:
        """The position just past the side."""
        return self.first + len(self.lines)


@dataclass(frozen=True)
class Shape:
    """Leading and trailing context line counts, as GNU patch's prefix/suffix context."""

    prefix: int
    suffix: int

    @classmethod
    def of(cls, hunk: Hunk) -> Shape:
        """Count the context lines before the first and after the last change of ``hunk``."""
        ops = [line.op for line in hunk.lines]
        prefix = next((i for i, op in enumerate(ops) if op != CONTEXT), len(ops))
        suffix = next((i for i, op in enumerate(reversed(ops)) if op != CONTEXT), len(ops))
        return cls(prefix, suffix)

    @property
    def context(self) -> int:
        """The longer edge: the most fuzz that can still change anything."""
        return max(self.prefix, self.suffix)


@dataclass(frozen=True)
class Search:
    """One look for one side: how (mode, fuzz) and where (stated guess, lowest allowed start)."""

    side: Side
    shape: Shape
    mode: str
    fuzz: int
    guess: int
    low: int


@dataclass(frozen=True)
class Found:
    """The nearest start of a side (None: nowhere), and whether a loose search saw a second one."""

    start: Optional[int]
    ambiguous: bool = False


def levels(shape: Shape, fuzz: int) -> List[Tuple[str, int]]:
    """The (mode, fuzz) levels to try, strictest first: exact, loose, then fuzz 1..N."""
    return [(EXACT, 0), (LOOSE, 0)] + [(EXACT, level) for level in range(1, min(fuzz, shape.context) + 1)]


def find(text: Text, search: Search) -> Found:
    """
    Look for one side of a hunk.

    Args:
        text: the target file.
        search: the side and how and where to look.

    Returns:
        The preferred start (None for an empty side or no match); a loose search that matches
        more than once is marked ambiguous.
    """
    if not search.side.lines:
        return Found(None)
    starts = _starts(text, search)
    first = next(starts, None)
    if search.mode == LOOSE and first is not None and next(starts, None) is not None:
        return Found(first, ambiguous=True)
    return Found(first)


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


def _matches_at(text: Text, side: Side, start: int, skip: Tuple[int, int], mode: str) -> bool:
    head, tail = skip
    return all(text.line_matches(start + j, side.lines[j], mode) for j in range(head, len(side.lines) - tail))


def _free_starts(text: Text, search: Search, skip: Tuple[int, int], high: int) -> Iterator[int]:
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


def at_guess(text: Text, search: Search) -> bool:
    """
    Whether the side matches at its guess, a place :func:`_starts` would allow: then it is the
    first start ``_starts`` yields (distance 0), found without building the line index.
    """
    side, shape = search.side, search.shape
    size = len(side.lines)
    if not size:
        return False
    head = search.fuzz + shape.prefix - shape.context
    tail = search.fuzz + shape.suffix - shape.context
    guess = search.guess
    if head < 0 and side.first <= 0:  # anchored to the top of the file
        return (guess == 0 and search.low == 0 and size - tail <= text.size
                and _matches_at(text, side, 0, (0, tail), search.mode))
    head = max(head, 0)
    if tail < 0 and shape.suffix == 0:  # anchored to the end of the file
        start = text.size - size
        return guess == start >= search.low and _matches_at(text, side, start, (head, 0), search.mode)
    tail = max(tail, 0)
    high = text.size - (size - tail)
    return search.low <= guess <= high and _matches_at(text, side, guess, (head, tail), search.mode)


def _starts(text: Text, search: Search) -> Iterator[int]:
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
    if tail < 0 and shape.suffix == 0:  # anchored to the end of the file (git's rule, issue #12)
        start = text.size - size
        if start >= search.low and _matches_at(text, side, start, (head, 0), search.mode):
            yield start
        return
    tail = max(tail, 0)
    high = text.size - (size - tail)
    for start in _free_starts(text, search, (head, tail), high):
        if _matches_at(text, side, start, (head, tail), search.mode):
            yield start
