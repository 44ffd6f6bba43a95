"""Bringing back the entries a restored database lacks, from the static export or a mirror.

A database restored from a backup taken before the log exported (or had witnesses cosign) its
latest checkpoint is refused at start-up (:func:`distributor.log.check_not_behind`): appending to
it would sign a second history. Those entries still exist wherever the log was copied: its static
export (``fleetkeys serve``'s ``static/`` or ``fleetkeys export --out``) or any mirror of it over
HTTP(S) (a CDN, ``tlog-tiles`` mirror). :func:`recover` reads them back, in these steps (the tests
in ``tests/distributor/test_restore.py`` follow them):

1. ``checkpoint`` is read from the source and verified under the log key: only a tree this log
   signed is believed, whoever serves the copy;
2. its size is compared with the database head: equal with the same root, nothing to do; smaller,
   nothing to do (the start-up check proves the head consistent with it); equal or smaller with
   another root, or larger with a database that is not a prefix of it: a **fork**, refused;
3. the entries from the head to the checkpoint's size are read from the entry bundles
   ``tile/entries/<N>[.p/<W>]`` at the widths the checkpoint implies, else from the entry objects
   ``entry/<N>``; the entries of the head's partial bundle the database already holds must be its
   own, byte for byte (else a fork, named by its first differing index);
4. :meth:`distributor.log.Log.append_recovered` appends them in one write transaction, under the
   log's rules, only if the database is still at the head read in step 2 and the result is exactly
   the checkpoint's size and root.

Nothing is written unless every step passes. The source needs only reads (a ``fetch(path)``
returning the bytes or ``None``), so any copy of the log works.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from verifier.checkpoint import open_checkpoint
from verifier.errors import FetchError, VerificationError
from verifier.http import HttpClient
from verifier.tiles import MAX_ENTRY_SIZE, TILE_WIDTH, entries_path, entry_object_path, split_entry_bundle

from .errors import IntegrityError
from .log import Log, holds_tree

#: Bytes read for one file of a copy: an entry bundle holds at most 256 entries of 65535 bytes (and
#: their 2-byte lengths).
MAX_FILE = TILE_WIDTH * (MAX_ENTRY_SIZE + 2)
#: Bytes of a checkpoint file (a checkpoint with its cosignature lines).
MAX_CHECKPOINT = 64 * 1024

Fetch = Callable[[str], bytes | None]
"""Reads a file of a copy by its C2SP path (``checkpoint``, ``tile/entries/000``, ...): its bytes,
or ``None`` when the copy does not have it."""


@dataclass(frozen=True)
class Recovered:
    """What :func:`recover` did: the log grew from ``start`` to ``size`` entries (equal: nothing was
    missing) and its root is ``root``, the source checkpoint's."""

    start: int
    size: int
    root: bytes

    @property
    def count(self) -> int:
        return self.size - self.start


def directory_source(directory: str) -> Fetch:
    """Reads the files of a static export directory (paths are the C2SP ones, never absolute)."""
    base = os.path.abspath(directory)

    def fetch(path: str) -> bytes | None:
        limit = MAX_CHECKPOINT if path == "checkpoint" else MAX_FILE
        try:
            with open(os.path.join(base, path), "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IntegrityError(f"cannot read {base}/{path}: {exc}") from exc
        if len(data) > limit:
            raise IntegrityError(f"{base}/{path} is larger than {limit} bytes")
        return data

    return fetch


def url_source(url: str, http: HttpClient | None = None) -> Fetch:
    """Reads the files of a mirror served over HTTP(S) at ``url`` (a 404 is a file the mirror lacks)."""
    base = url.rstrip("/") + "/"
    client = http or HttpClient(timeout=30, user_agent="fleetkeys-recover")

    def fetch(path: str) -> bytes | None:
        limit = MAX_CHECKPOINT if path == "checkpoint" else MAX_FILE
        try:
            resp = client.get(base + quote(path), limit=limit)
        except FetchError as exc:
            raise IntegrityError(f"cannot read {base}{path}: {exc}") from exc
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise IntegrityError(f"{base}{path}: HTTP {resp.status}")
        return resp.body

    return fetch


def _bundle_entries(fetch: Fetch, number: int, width: int) -> list[bytes] | None:
    """The ``width`` entries of entry bundle ``number`` from its file, or ``None`` if the copy lacks it."""
    data = fetch(entries_path(number, width))
    if data is None and width < TILE_WIDTH:
        data = fetch(entries_path(number, TILE_WIDTH))  # a copy that has moved on holds the full bundle
    if data is None:
        return None
    try:
        found = split_entry_bundle(data)
    except VerificationError as exc:
        raise IntegrityError(f"entry bundle {number} of the copy is damaged: {exc}") from exc
    if len(found) < width:
        raise IntegrityError(f"entry bundle {number} of the copy holds {len(found)} entries, the checkpoint "
                             f"implies {width}")
    return found[:width]


def read_entries(fetch: Fetch, have: list[bytes], start: int, size: int) -> list[bytes]:
    """Entries ``start .. size-1`` of a copy (step 3 of the module docstring). ``have``: the entries
    ``start - start % 256 .. start - 1`` of the database (the head's partial bundle), which the copy
    must hold byte for byte."""
    out: list[bytes] = []
    for number in range(start // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1 if size > start else 0):
        first = number * TILE_WIDTH
        width = min(TILE_WIDTH, size - first)
        found = _bundle_entries(fetch, number, width)
        if found is None:
            found = []
            for index in range(max(first, start), first + width):
                data = fetch(entry_object_path(index))
                if data is None:
                    raise IntegrityError(f"the copy has neither entry bundle {number} nor entry object {index}")
                found.append(data)
            found = [b""] * (max(first, start) - first) + found
        elif first < start:
            for offset, mine in enumerate(have):
                if found[offset] != mine:
                    raise IntegrityError(f"fork: entry {first + offset} of the copy differs from the database's: "
                                         "the copy's history is not this database's")
        out += found[max(first, start) - first:]
    return out


def recover(log: Log, fetch: Fetch, *, where: str) -> Recovered:
    """Append the entries the copy ``fetch`` has beyond the database head (see the module docstring).

    ``where`` names the copy in messages. Raises :class:`IntegrityError` with the reason when the
    copy's checkpoint does not verify, is a fork of the database, lacks entries, or its entries do
    not give exactly its root; nothing is written then.
    """
    # 1. the copy's checkpoint, believed only under the log key
    note = fetch("checkpoint")
    if note is None:
        raise IntegrityError(f"{where} has no checkpoint: it is not a copy of a log")
    try:
        target = open_checkpoint(note, log.log_key).checkpoint
    except VerificationError as exc:
        raise IntegrityError(f"the checkpoint of {where} does not verify under this log's key "
                             f"{log.log_key.vkey}: {exc}") from exc
    # 2. where the database stands against it
    database = log.storage.description
    head = log.head()
    if target.size <= head.size:
        with log.storage.read() as tx:
            if not holds_tree(tx, head, log.log_key, target):
                raise IntegrityError(f"fork: {where} holds the signed checkpoint of size {target.size} with root "
                                     f"{target.root.hex()}, but {database} (size {head.size}) has another root at "
                                     "that size: there is nothing to recover from it")
        return Recovered(head.size, head.size, target.root)
    # 3. the missing entries, and the database's entries of the partial bundle they continue
    first = head.size - head.size % TILE_WIDTH
    with log.storage.read() as tx:
        have = tx.entries(first, head.size) if head.size > first else []
    if len(have) != head.size - first:
        raise IntegrityError(f"{database}: the entries {first}..{head.size - 1} cannot be read")
    entries = read_entries(fetch, list(have), head.size, target.size)
    # 4. one transaction, under the log's rules, to exactly the signed tree
    log.append_recovered(head.size, entries, target)
    return Recovered(head.size, target.size, target.root)


__all__ = ["Fetch", "Recovered", "directory_source", "read_entries", "recover", "url_source"]
