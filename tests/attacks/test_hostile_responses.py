"""Hostile answers around the signed data: the bytes of the static files, headers, statuses and redirects.

Whatever a distributor or CDN answers, :meth:`Client.refresh` must either verify, fall back to offline mode
(an outage), or raise a :class:`~verifier.errors.VerificationError` subclass — never an untyped exception
from a decoder, and never with ``state.json`` changed.

There is no JSON wrapper any more: ``/entry/<N>`` holds the entry's exact bytes and an entry bundle the
C2SP length-prefixed entries, so the first thing the client computes from an entry is its leaf hash. An
entry that is not the log's is refused by the tree root before a single byte of it is parsed
(:class:`~verifier.errors.ConsistencyError`); the only JSON the client ever parses is a logged entry.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.attacks.helpers import LONG_NOW, client_at, client_refuses, disk, entry_bundle, long_log
from tests.attacks.simulator import SimResponse, Simulator
from verifier.checkpoint import Checkpoint
from verifier.client import Client
from verifier.errors import ConsistencyError, FormatError, SizeLimitError
from verifier.note import sign_note


@pytest.fixture
def client1(sim: Simulator, state_dir: Path) -> Client:
    """A client at epoch 1; the log has epoch 2 waiting (the next refresh reads ``/entry/001``)."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.add_epoch()
    sim.requests.clear()
    return client


def _old_api_answer(sim: Simulator, entry: bytes) -> bytes:
    """What ``/api/v1/bundles/2`` answers: the entry wrapped in JSON, not the entry."""
    return json.dumps({"bundle": base64.b64encode(entry).decode(), "epoch": 2, "index": 1, "proof": ""}).encode()


BODIES: list[tuple[str, Callable[[Simulator, bytes], bytes]]] = [
    ("not-json", lambda sim, entry: b"<html>not json</html>"),
    ("not-object", lambda sim, entry: b'["a", "list"]'),
    ("empty", lambda sim, entry: b""),
    ("old-api-wrapper", _old_api_answer),
    ("base64-of-entry", lambda sim, entry: base64.b64encode(entry)),
    ("trailing-newline", lambda sim, entry: entry + b"\n"),
    ("truncated", lambda sim, entry: entry[:-1]),
    ("deeply-nested", lambda sim, entry: b"[" * 60_000),
    ("lone-surrogate", lambda sim, entry: entry.replace(b'"keyset":"', b'"keyset":"\\ud800', 1)),
    ("another-epoch", lambda sim, entry: sim.entries[0]),
]


@pytest.mark.parametrize("mangle", [m for _, m in BODIES], ids=[name for name, _ in BODIES])
def test_malformed_entry_object_is_refused_before_it_is_parsed(sim: Simulator, client1: Client, mangle) -> None:
    body = mangle(sim, sim.entries[1])
    assert body != sim.entries[1]
    sim.override("/entry/001", SimResponse(200, body))
    with client_refuses(client1, ConsistencyError, "the entries are not the log's"):
        client1.refresh()
    assert ("client", "/entry/001") in sim.requests


@pytest.fixture
def client_3_behind(sim: Simulator, state_dir: Path) -> Client:
    """A client at epoch 1; epochs 2..4 are waiting (the next refresh reads ``/tile/entries/000.p/4``)."""
    for _ in range(4):
        sim.add_epoch()
    return client_at(sim, state_dir, 1)


@pytest.mark.parametrize(("mangle", "fragment"), [
    (lambda bundle, entries: bundle[:-len(entries[3]) - 1], "entry bundle: truncated in the length of entry 3"),
    (lambda bundle, entries: bundle[:-1], f"only {0} left"),
    (lambda bundle, entries: bundle + b"\x00\x00", "entry bundle: 2 bytes of trailing data after 4 entries"),
    (lambda bundle, entries: entry_bundle(entries[:3]), "entry bundle: holds 3 entries, 4 expected"),
    (lambda bundle, entries: entry_bundle([*entries, entries[-1]]), "bytes of trailing data after 4 entries"),
    (lambda bundle, entries: b"", "entry bundle: holds 0 entries, 4 expected"),
], ids=["truncated-length", "truncated-entry", "trailing-data", "narrower-width", "wider-width", "empty"])
def test_malformed_entry_bundle_is_refused(sim: Simulator, client_3_behind: Client, mangle, fragment: str) -> None:
    honest = entry_bundle(sim.entries)
    if fragment == f"only {0} left":  # the last entry claims its full length, one byte is missing
        fragment = f"entry bundle: entry 3 claims {len(sim.entries[3])} bytes, only {len(sim.entries[3]) - 1} left"
    sim.override("/tile/entries/000.p/4", SimResponse(200, mangle(honest, sim.entries)))
    with client_refuses(client_3_behind, FormatError, fragment):
        client_3_behind.refresh()
    assert sim.requests[-1] == ("client", "/tile/entries/000.p/4")


def _leading_zero_size(sim: Simulator) -> bytes:
    """The log key signs a tree head whose size is written ``02``: signed, but not the one encoding."""
    head = sim.tree_head()
    body = Checkpoint(head.origin, head.size, head.root).body().replace(b"\n2\n", b"\n02\n", 1)
    return sign_note(body, [sim.world.log_note])


@pytest.mark.parametrize(("mangle", "fragment"), [
    (lambda sim: b"<html>not a checkpoint</html>", "note: no blank line before the signatures"),
    (lambda sim: b"", "note: no blank line before the signatures"),
    (lambda sim: sim.checkpoint().replace(b"\n", b"\xed\xa0\x80\n", 1), "note: not valid UTF-8"),
    (_leading_zero_size, "checkpoint size: expected a canonical decimal number, found '02'"),
], ids=["html", "empty", "lone-surrogate", "size-leading-zero"])
def test_malformed_checkpoint_is_refused(sim: Simulator, client1: Client, mangle, fragment: str) -> None:
    sim.override("/checkpoint", SimResponse(200, mangle(sim)))
    with client_refuses(client1, FormatError, fragment):
        client1.refresh()
    assert [p for _, p in sim.requests] == ["/checkpoint"]


@pytest.mark.parametrize(("mangle", "cls", "fragment"), [
    (lambda tile: tile + tile[:32], SizeLimitError, "response exceeds the 64-byte cap (cut off)"),
    (lambda tile: tile[:32], FormatError, "hash tile: expected 64 bytes for width 2, found 32"),
    (lambda tile: b"", FormatError, "hash tile: expected 64 bytes for width 2, found 0"),
], ids=["one-hash-too-many", "one-hash-missing", "empty"])
def test_hash_tile_of_the_wrong_length_is_refused(state_dir: Path, mangle, cls: type[Exception], fragment: str) -> None:
    """The consistency proof of a catch-up batch is computed from hash tiles (here ``tile/0/001.p/2``, for the
    batch ending at 256 in a log of 258): a tile must hold exactly its width's hashes."""
    sim = long_log(258)
    client = client_at(sim, state_dir, 1, now=LONG_NOW)
    sim.tamper("/tile/0/001.p/2", mangle)
    with client_refuses(client, cls, fragment):
        client.refresh()
    assert sim.requests[-1] == ("client", "/tile/0/001.p/2")


def test_deeply_nested_logged_entry_is_refused(sim: Simulator, client1: Client) -> None:
    """The one JSON a client parses is a logged entry: one that starts like a bundle and nests 60,000 deep
    (logged, so the root matches) is a FormatError, not a RecursionError."""
    sim.entries.pop()
    sim.append(b'{"format":"fleetkeys/bundle/v1","keyset":' + b"[" * 60_000)
    with client_refuses(client1, FormatError, "bundle: not valid JSON"):
        client1.refresh()


@pytest.mark.parametrize(("surrogate", "fragment"), [
    (b"\\ud800", "bundle: not canonical JSON"),
    (b"\xed\xa0\x80", "bundle: not valid JSON ('utf-8' codec can't decode"),
], ids=["escaped", "raw-utf8"])
def test_lone_surrogate_in_a_logged_entry_is_refused(sim: Simulator, client1: Client, surrogate: bytes,
                                                     fragment: str) -> None:
    honest = sim.entries.pop()
    sim.append(honest.replace(b'"keyset":"', b'"keyset":"' + surrogate, 1))
    with client_refuses(client1, FormatError, fragment):
        client1.refresh()


@pytest.mark.parametrize("path", ["/checkpoint", "/entry/001"])
def test_non_ascii_digit_content_length_is_not_a_crash(sim: Simulator, client1: Client, path: str) -> None:
    honest = sim.get(path)
    assert honest.status == 200
    sim.override(path, SimResponse(200, honest.body, {"Content-Length": "\u00b2"}))
    assert client1.refresh().epoch == 2  # a nonsense length header is ignored; the byte cap still applies
    assert ("client", path) in sim.requests


@pytest.mark.parametrize("path", ["/checkpoint", "/entry/001"])
def test_redirect_loop_is_an_outage_not_a_crash(sim: Simulator, client1: Client, path: str) -> None:
    saved = disk(client1)
    sim.override(path, SimResponse(302, b"", {"Location": path}))
    result = client1.refresh()
    assert result.offline is True and result.epoch == 1 and "more than 5 redirects" in result.message
    assert disk(client1) == saved


@pytest.mark.parametrize("path", ["/checkpoint", "/entry/001"])
def test_unexpected_status_is_an_outage(sim: Simulator, client1: Client, path: str) -> None:
    saved = disk(client1)
    sim.override(path, SimResponse(418, json.dumps({"error": "teapot"}).encode()))
    result = client1.refresh()
    assert result.offline is True and "HTTP 418" in result.message
    assert disk(client1) == saved

