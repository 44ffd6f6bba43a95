"""The C2SP files of a log held in memory: what a distributor's ``static/`` directory would hold."""

from __future__ import annotations

from verifier.audit import TileUnavailable
from verifier.merkle import leaf_hash, leaves_reader
from verifier.tiles import TILE_HEIGHT, TILE_WIDTH, encode_entry_bundle, entries_path, tiles_for_size


def tile_files(entries: list[bytes]) -> dict[str, bytes]:
    """Every entry bundle and hash tile of the tree of ``entries`` (current widths only)."""
    size = len(entries)
    files = {}
    for n in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        chunk = entries[n * TILE_WIDTH:(n + 1) * TILE_WIDTH]
        files[entries_path(n, len(chunk))] = encode_entry_bundle(chunk)
    node = leaves_reader([leaf_hash(e) for e in entries])
    for ref in tiles_for_size(size):
        first = ref.index * TILE_WIDTH
        files[ref.path] = b"".join(node(TILE_HEIGHT * ref.level, first + i) for i in range(ref.width))
    return files


def fetcher(files: dict[str, bytes]):
    """A ``fetch(path)`` over ``files`` that raises :class:`TileUnavailable` for a missing path."""

    def fetch(path: str) -> bytes:
        if path not in files:
            raise TileUnavailable(f"{path}: not found")
        return files[path]

    return fetch
