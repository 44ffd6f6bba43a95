"""The C2SP files of a log held in memory (what a distributor's ``static/`` directory would hold), a
:class:`verifier.fetch.Fetcher` over them, and :func:`replay`, which collects what the streaming
:func:`verifier.audit.replay_log` reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from verifier.audit import AuditResult, EntryRecord, Problem, replay_log
from verifier.errors import SizeLimitError
from verifier.fetch import check_path
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


class MemoryFetcher:
    """A :class:`~verifier.fetch.Fetcher` over ``files`` (``None`` for a missing path); counts reads."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.reads: list[str] = []

    def fetch(self, path: str, limit: int) -> bytes | None:
        check_path(path)
        self.reads.append(path)
        data = self.files.get(path)
        if data is not None and len(data) > limit:
            raise SizeLimitError(f"{path}: larger than the {limit}-byte cap")
        return data


@dataclass
class Report:
    """Everything one replay reported, in order."""

    result: AuditResult
    entries: list[EntryRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def summary(self):
        return self.result.summary

    @property
    def ok(self) -> bool:
        return self.result.summary.ok

    @property
    def epochs(self) -> list[EntryRecord]:
        return [e for e in self.entries if e.kind == "bundle" and e.verified]


def replay(fetcher, trust_root, now: int, **kwargs) -> Report:
    entries: list[EntryRecord] = []
    problems: list[Problem] = []
    result = replay_log(fetcher, trust_root=trust_root, now=now, on_entry=entries.append, on_problem=problems.append,
                        **kwargs)
    return Report(result, entries, problems)
