"""The tiled Merkle tree's right edge: batched appends and root computation, pure (no I/O).

A tree of ``size`` leaves stored as C2SP hash tiles (height 8) has, at each tile level ``L``,
``size >> 8L`` complete-subtree hashes; all but the last ``(size >> 8L) % 256`` of them sit in full
tiles that never change. The *edge* is those last, incomplete tiles, one per level: it is all an
append needs to extend the tree and all the root computation needs, so the writer keeps it in memory
(a few KiB) and reads nothing else from the database on the hot path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from verifier.merkle import HASH_SIZE, frontier_root, root
from verifier.tiles import TILE_HEIGHT, TILE_WIDTH

from .errors import TreeError
from .storage import TileKey

FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE


def split_hashes(data: bytes) -> list[bytes]:
    return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def full_tile_root(data: bytes) -> bytes:
    """Root of the 256 hashes of a full tile: the hash one tile level up."""
    return root(split_hashes(data))


def levels_for_size(size: int) -> int:
    """Number of tile levels that hold at least one hash in a tree of ``size`` leaves."""
    levels = 0
    while size >> (TILE_HEIGHT * levels):
        levels += 1
    return levels


def edge_tiles(size: int) -> list[tuple[int, int, int]]:
    """``(level, index, width)`` of the incomplete tile of every level that has one."""
    out = []
    for level in range(levels_for_size(size)):
        count = size >> (TILE_HEIGHT * level)
        if count % TILE_WIDTH:
            out.append((level, count // TILE_WIDTH, count % TILE_WIDTH))
    return out


def _pair_up(nodes: list[bytes]) -> list[bytes]:
    """Parents of ``nodes[0], nodes[1]``, ``nodes[2], nodes[3]``, ... (RFC 9162 interior nodes)."""
    sha = hashlib.sha256
    return [sha(b"\x01" + nodes[i] + nodes[i + 1]).digest() for i in range(0, len(nodes) - 1, 2)]


@dataclass(frozen=True)
class Edge:
    """The right edge of the tree.

    ``partials[L]``: the incomplete tile of tile level ``L`` (``width * 32`` bytes, possibly empty).
    ``frontier``: the roots of the perfect subtrees the tree decomposes into, one per set bit of
    ``size``, lowest height first (the RFC 9162 root is their right-to-left fold).
    """

    size: int
    partials: tuple[bytes, ...]
    frontier: tuple[bytes, ...]

    @classmethod
    def empty(cls) -> Edge:
        return cls(0, (), ())

    @classmethod
    def load(cls, size: int, fetch: Callable[[int, int], bytes | None]) -> Edge:
        """Rebuild the edge of a ``size``-leaf tree from stored tiles (``fetch(level, index)``)."""
        partials = [b""] * levels_for_size(size)
        for level, index, width in edge_tiles(size):
            data = fetch(level, index)
            if data is None or len(data) < width * HASH_SIZE:
                found = "missing" if data is None else f"{len(data) // HASH_SIZE} hashes"
                raise TreeError(f"tile {level}/{index} should hold {width} hashes at size {size}, found {found}")
            partials[level] = data[:width * HASH_SIZE]
        edge = cls(size, tuple(partials), ())
        frontier = tuple(edge._node(h, (size >> h) - 1) for h in range(size.bit_length()) if size >> h & 1)
        return cls(size, tuple(partials), frontier)

    def _node(self, height: int, index: int) -> bytes:
        """A complete node on the right edge, rebuilt from the incomplete tile that holds it."""
        tile_level, r = divmod(height, TILE_HEIGHT)
        count = self.size >> (TILE_HEIGHT * tile_level)
        offset = (index << r) - (count // TILE_WIDTH) * TILE_WIDTH
        chunk = self.partials[tile_level][offset * HASH_SIZE:(offset + (1 << r)) * HASH_SIZE]
        if offset < 0 or len(chunk) != (1 << r) * HASH_SIZE:
            raise TreeError(f"node {height}/{index} is not on the right edge of size {self.size}")
        return root(split_hashes(chunk))

    def root(self) -> bytes:
        """The RFC 9162 root of the tree (``EMPTY_ROOT`` for size 0): the fold of the frontier."""
        return frontier_root(self.frontier)

    def extend(self, leaf_hashes: Sequence[bytes]) -> tuple[Edge, dict[TileKey, bytes]]:
        """Append leaves; return the new edge and every tile that changed (full or partial).

        Works level by level: at height ``h`` the new complete nodes (plus the old frontier node to
        their left when it is a left sibling) are paired into their parents, so each new interior node
        is hashed exactly once. Nodes at heights ``8L`` go into tile level ``L``. A tile that fills up
        is returned at its full width (written once, never again); each level's new incomplete tile is
        returned at its new width.
        """
        old, new_size = self.size, self.size + len(leaf_hashes)
        old_frontier = dict(zip((h for h in range(old.bit_length()) if old >> h & 1), self.frontier, strict=True))
        frontier: list[bytes] = []
        tile_rows: list[list[bytes]] = []
        nodes = list(leaf_hashes)
        for height in range(new_size.bit_length()):
            if height % TILE_HEIGHT == 0:
                tile_rows.append(nodes)
            row = nodes
            if (old >> height) & 1:
                row = [old_frontier[height], *nodes]
            if len(row) % 2:
                frontier.append(row[-1])
            nodes = _pair_up(row)
        changed: dict[TileKey, bytes] = {}
        partials = list(self.partials) + [b""] * (len(tile_rows) - len(self.partials))
        for level, new in enumerate(tile_rows):
            if not new:
                continue
            index = (old >> (TILE_HEIGHT * level)) // TILE_WIDTH
            buf = partials[level] + b"".join(new)
            full = len(buf) - len(buf) % FULL_TILE_BYTES
            for pos in range(0, full, FULL_TILE_BYTES):
                changed[(level, index)] = buf[pos:pos + FULL_TILE_BYTES]
                index += 1
            partials[level] = buf[full:]
            if partials[level]:
                changed[(level, index)] = partials[level]
        return Edge(new_size, tuple(partials), tuple(frontier)), changed


def check_level(level: int, size: int, tiles: Iterable[tuple[int, bytes]],
                expected: Callable[[int, int], bytes] | None) -> bytes:
    """Check one stored tile level of a ``size``-leaf tree; return the roots of its full tiles.

    ``tiles`` are the stored ``(index, data)`` rows of the level in index order. They must be exactly
    the tiles the size implies, each exactly as wide as the size implies, and equal to
    ``expected(start, width)``: the hashes recomputed from the level below (the roots of its full
    tiles) or, at level 0, the leaf hashes of the stored entries. Raises :class:`TreeError` naming the
    first tile that differs.
    """
    count = size >> (TILE_HEIGHT * level)
    roots = []
    seen = 0
    for index, data in tiles:
        start = index * TILE_WIDTH
        width = min(TILE_WIDTH, count - start)
        if index != seen or width <= 0:
            raise TreeError(f"tile {level}/{index} should not exist at size {size}")
        if len(data) != width * HASH_SIZE:
            raise TreeError(f"tile {level}/{index} holds {len(data) / HASH_SIZE:g} hashes, size {size} implies {width}")
        if expected is not None and data != expected(start, width):
            source = "the stored entries" if level == 0 else f"tile level {level - 1}"
            raise TreeError(f"tile {level}/{index} does not match the hashes recomputed from {source}: "
                            "a stored hash or entry was changed")
        if width == TILE_WIDTH:
            roots.append(full_tile_root(data))
        seen += 1
    if seen * TILE_WIDTH < count:
        raise TreeError(f"tile {level}/{seen} is missing at size {size}")
    return b"".join(roots)


__all__ = ["Edge", "TreeError", "check_level", "edge_tiles", "full_tile_root", "levels_for_size", "split_hashes"]
