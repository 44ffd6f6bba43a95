"""C2SP tlog-tiles (c2sp.org/tlog-tiles): static, cacheable tiles of the Merkle tree.

Tile height is 8, so a full tile holds 256 hashes. A tile at level ``L`` and index ``N`` holds the
hashes of the complete subtrees of ``2**(8L)`` leaves numbered ``N*256 .. N*256+W-1`` at Merkle level
``8L``: level-0 tiles hold leaf hashes. ``W`` is 256 for a full tile, ``1..255`` for the partial tile
at the right edge of a tree that is not a multiple of 256.

Paths::

    tile/<L>/<N>[.p/<W>]          hash tile: W * 32 bytes, concatenated hashes
    tile/entries/<N>[.p/<W>]      entry bundle: W entries, each a big-endian uint16 length + bytes

``<N>`` is written in groups of three decimal digits, every group but the last prefixed with ``x``
(``1234067`` -> ``x001/x234/067``; ``5`` -> ``005``). Every tile never changes, partial ones too:
a partial tile's URL names its width, so the log growing makes a new URL, never new bytes at an old
one. Clients cache all of them forever; only the checkpoint changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import FormatError, ProofError, SizeLimitError
from .merkle import HASH_SIZE, NodeReader, root

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF


def encode_index(n: int) -> str:
    """``1234067`` -> ``x001/x234/067``."""
    if n < 0:
        raise FormatError(f"tile index {n} is negative")
    text = str(n)
    text = "0" * (-len(text) % 3) + text
    groups = [text[i : i + 3] for i in range(0, len(text), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """Path of a hash tile; ``width < 256`` gives a partial tile path."""
    _check_width(width)
    if not 0 <= level <= MAX_LEVEL:
        raise FormatError(f"tile level {level} out of range")
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def entry_object_path(index: int) -> str:
    """``entry/<N>``: the per-entry object of entry ``index`` (a fleetkeys extension to tlog-tiles,
    ``bundles/FORMAT.md``), ``<N>`` encoded like a tile index; its body is the entry's exact bytes."""
    return "entry/" + encode_index(index)


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """Path of an entry bundle; ``width < 256`` gives a partial bundle path."""
    _check_width(width)
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/entries/{encode_index(index)}{suffix}"


def _check_width(width: int) -> None:
    if not 1 <= width <= TILE_WIDTH:
        raise FormatError(f"tile width {width} not in 1..{TILE_WIDTH}")


@dataclass(frozen=True)
class TileRef:
    """A parsed tile path. ``level`` is ``None`` for an entry bundle."""

    level: int | None
    index: int
    width: int

    @property
    def is_entries(self) -> bool:
        return self.level is None

    @property
    def path(self) -> str:
        return entries_path(self.index, self.width) if self.level is None else tile_path(self.level, self.index, self.width)


def _decode_index(groups: list[str], what: str) -> int:
    """The index ``x001/x234/067`` encodes (``encode_index``'s groups; canonical form checked by callers)."""
    digits = []
    for i, group in enumerate(groups):
        last = i == len(groups) - 1
        g = group if last else group[1:]
        if (not last and not group.startswith("x")) or len(g) != 3 or not g.isascii() or not g.isdigit():
            raise FormatError(f"{what}: malformed index element {group!r}")
        digits.append(g)
    return int("".join(digits))


def parse_entry_object_path(path: str) -> int:
    """The index named by a per-entry object path; only the canonical ``entry_object_path`` is accepted."""
    if len(path) > 200 or not path.startswith("entry/"):
        raise FormatError(f"not an entry path: {path[:80]!r}")
    index = _decode_index(path[len("entry/"):].split("/"), f"entry path {path!r}")
    if entry_object_path(index) != path:
        raise FormatError(f"entry path {path!r} is not canonical (expected {entry_object_path(index)!r})")
    return index


def parse_tile_path(path: str) -> TileRef:
    """Parse a tile path strictly; the canonical path is the only one accepted."""
    if len(path) > 200 or not path.startswith("tile/"):
        raise FormatError(f"not a tile path: {path[:80]!r}")
    parts = path.split("/")[1:]
    if len(parts) < 2:
        raise FormatError(f"not a tile path: {path!r}")
    level_text, rest = parts[0], parts[1:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not w.isascii() or not w.isdigit() or w[0] == "0" or not 1 <= int(w) < TILE_WIDTH:
            raise FormatError(f"tile path {path!r}: partial width must be 1..255")
        width = int(w)
        rest = [*rest[:-2], rest[-2][:-2]]
    index = _decode_index(rest, f"tile path {path!r}")
    if level_text == "entries":
        ref = TileRef(None, index, width)
    else:
        if not level_text.isascii() or not level_text.isdigit() or (len(level_text) > 1 and level_text[0] == "0"):
            raise FormatError(f"tile path {path!r}: bad level")
        ref = TileRef(int(level_text), index, width)
        if ref.level > MAX_LEVEL:
            raise FormatError(f"tile path {path!r}: level above {MAX_LEVEL}")
    if ref.path != path:
        raise FormatError(f"tile path {path!r} is not canonical (expected {ref.path!r})")
    return ref


def tile_hashes(data: bytes, width: int) -> list[bytes]:
    """Split a hash tile of ``width`` hashes; the length must be exactly ``width * 32``."""
    _check_width(width)
    if len(data) != width * HASH_SIZE:
        raise FormatError(f"hash tile: expected {width * HASH_SIZE} bytes for width {width}, found {len(data)}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Concatenate ``uint16_be(len(entry)) || entry`` for 1..256 entries of at most 65535 bytes."""
    _check_width(len(entries))
    if max(map(len, entries)) > MAX_ENTRY_SIZE:
        raise SizeLimitError(f"entry of {max(map(len, entries))} bytes exceeds the {MAX_ENTRY_SIZE}-byte tile entry limit")
    return b"".join([part for e in entries for part in (len(e).to_bytes(2, "big"), e)])


def _entry_ends(data: bytes, count: int | None) -> list[int]:
    """End offsets of the first ``count`` entries (all entries if ``None``) of entry-bundle bytes."""
    ends: list[int] = []
    pos, n = 0, len(data)
    while pos < n and (count is None or len(ends) < count):
        if len(ends) == TILE_WIDTH:
            raise FormatError(f"entry bundle: more than {TILE_WIDTH} entries")
        if pos + 2 > n:
            raise FormatError(f"entry bundle: truncated in the length of entry {len(ends)}")
        end = pos + 2 + int.from_bytes(data[pos:pos + 2], "big")
        if end > n:
            raise FormatError(f"entry bundle: entry {len(ends)} claims {end - pos - 2} bytes, only {n - pos - 2} left")
        ends.append(end)
        pos = end
    if count is not None and len(ends) < count:
        raise FormatError(f"entry bundle: holds {len(ends)} entries, {count} expected")
    return ends


def split_entry_bundle(data: bytes, count: int | None = None) -> list[bytes]:
    """The entries of entry-bundle bytes: the first ``count`` if given, else all (at most 256).

    Raises :class:`FormatError` if the bytes end inside an entry or hold fewer than ``count``.
    """
    out, pos = [], 0
    for end in _entry_ends(data, count):
        out.append(bytes(data[pos + 2:end]))
        pos = end
    return out


def entry_bundle_prefix(data: bytes, count: int) -> bytes:
    """The bytes of the first ``count`` entries of an entry bundle (:class:`FormatError` if it holds fewer).

    This is the partial entry bundle ``.p/<count>`` of a full or wider partial one.
    """
    ends = _entry_ends(data, count)
    return bytes(data[:ends[-1]]) if ends else b""


def decode_entry_bundle(data: bytes, width: int) -> list[bytes]:
    """Decode an entry bundle of exactly ``width`` entries with no trailing data."""
    _check_width(width)
    ends = _entry_ends(data, width)
    if ends[-1] != len(data):
        raise FormatError(f"entry bundle: {len(data) - ends[-1]} bytes of trailing data after {width} entries")
    return split_entry_bundle(data, width)


def tile_width_at(level: int, index: int, size: int) -> int:
    """Width of tile (level, index) in the tree of ``size`` leaves (0 if it does not exist yet)."""
    nodes = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, nodes - index * TILE_WIDTH))


def tiles_for_size(size: int) -> list[TileRef]:
    """Every hash tile (full and the right-edge partial ones) of a tree of ``size`` leaves."""
    refs = []
    level = 0
    while (size >> (TILE_HEIGHT * level)) > 0:
        nodes = size >> (TILE_HEIGHT * level)
        for n in range((nodes + TILE_WIDTH - 1) // TILE_WIDTH):
            refs.append(TileRef(level, n, tile_width_at(level, n, size)))
        level += 1
    return refs


TileFetcher = Callable[[TileRef], bytes]


def tile_node_reader(size: int, fetch: TileFetcher) -> NodeReader:
    """A :data:`~verifier.merkle.NodeReader` for the tree of ``size`` leaves, reading hash tiles.

    A node at Merkle level ``8L + r`` is rebuilt from the ``2**r`` level-``8L`` hashes it covers in
    tile level ``L``. Each tile is fetched at most once (cached in the reader). The fetched bytes are
    not trusted: whatever root they produce is checked by the proof verification that follows.
    """
    cache: dict[tuple[int, int], list[bytes]] = {}

    def node(level: int, index: int) -> bytes:
        tile_level, r = divmod(level, TILE_HEIGHT)
        first = index << r
        count = 1 << r
        n = first // TILE_WIDTH
        width = tile_width_at(tile_level, n, size)
        if width == 0 or (first % TILE_WIDTH) + count > width:
            raise ProofError(f"node (level {level}, index {index}) is not complete at tree size {size}")
        key = (tile_level, n)
        if key not in cache:
            cache[key] = tile_hashes(fetch(TileRef(tile_level, n, width)), width)
        hashes = cache[key]
        start = first % TILE_WIDTH
        return root(hashes[start : start + count])

    return node


__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileRef",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "encode_index",
    "entries_path",
    "entry_object_path",
    "parse_entry_object_path",
    "parse_tile_path",
    "tile_hashes",
    "tile_node_reader",
    "tile_path",
    "tile_width_at",
    "tiles_for_size",
]
