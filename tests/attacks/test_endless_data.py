"""Endless-data attacks: responses that never end, or lie about their size, or drip (docs/DESIGN.md §6 byte
limits). The client must cut every response off at its cap and never hold on to more than that.

The client reads only static files: ``/checkpoint`` (at most ``MAX_NOTE_SIZE``), the per-entry objects
``/entry/<N>`` (at most ``MAX_ENTRY_SIZE``), the entry bundles ``/tile/entries/<N>[.p/<W>]`` (at most
``entry_bundle_cap(W)``) and the hash tiles ``/tile/<L>/<N>[.p/<W>]`` (exactly ``W * 32`` bytes). Each is
attacked here at the point of the refresh where the client really reads it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attacks.helpers import LONG_NOW, client_at, client_refuses, core_refuses, disk, long_log, state_at, verify
from tests.attacks.simulator import SimResponse, Simulator, endless
from tests.factory import World
from verifier.bundle import MAX_BUNDLE_SIZE
from verifier.client import Client, entry_bundle_cap
from verifier.errors import SizeLimitError
from verifier.http import MAX_ERROR_BODY
from verifier.note import MAX_NOTE_SIZE
from verifier.tiles import MAX_ENTRY_SIZE
from verifier.tlogproof import MAX_PROOF_SIZE
from verifier.update import ClientState

CHUNK = 64 * 1024


def _behind(kind: str, state_dir: Path) -> tuple[Simulator, Client]:
    """A client that verified epoch 1 of a log that has moved on, so its next refresh reads:

    * ``"2 behind"`` (log at epoch 3): ``/checkpoint``, then ``/entry/001`` and ``/entry/002``;
    * ``"4 behind"`` (log at epoch 5): ``/checkpoint``, then ``/tile/entries/000.p/5``;
    * ``"across a tile"`` (a log of 258 epochs): ``/checkpoint``, ``/tile/entries/000``, then the hash tile
      ``/tile/0/001.p/2`` for the consistency proof from 256 (the batch's end) to 258.
    """
    if kind == "across a tile":
        sim = long_log(258)
        return sim, client_at(sim, state_dir, 1, now=LONG_NOW)
    sim = Simulator(World())
    for _ in range({"2 behind": 3, "4 behind": 5}[kind]):
        sim.add_epoch()
    return sim, client_at(sim, state_dir, 1)


@pytest.fixture
def behind(sim: Simulator, state_dir: Path) -> Client:
    """A client that verified epoch 1 while the log has moved on to epoch 3 (see :func:`_behind`)."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.add_epoch()
    sim.add_epoch()
    sim.requests.clear()
    sim.responses.clear()
    return client


@pytest.mark.parametrize(("kind", "path", "limit"), [
    ("2 behind", "/checkpoint", MAX_NOTE_SIZE),
    ("2 behind", "/entry/001", MAX_ENTRY_SIZE),
    ("4 behind", "/tile/entries/000.p/5", entry_bundle_cap(5)),
    ("across a tile", "/tile/0/001.p/2", 2 * 32),
], ids=["checkpoint", "entry-object", "entry-bundle", "hash-tile"])
def test_endless_response_is_cut_off_at_cap(state_dir: Path, kind: str, path: str, limit: int) -> None:
    sim, client = _behind(kind, state_dir)
    sim.override(path, SimResponse(200, endless()))
    with client_refuses(client, SizeLimitError, f"response exceeds the {limit}-byte cap (cut off)"):
        client.refresh()
    assert sim.requests[-1][1] == path
    assert sim.responses[-1].consumed <= limit + 2 * CHUNK


@pytest.mark.parametrize(("path", "limit"), [("/checkpoint", MAX_NOTE_SIZE), ("/entry/001", MAX_ENTRY_SIZE)],
                         ids=["checkpoint", "entry-object"])
def test_declared_oversized_response_is_refused_unread(sim: Simulator, behind: Client, path: str, limit: int) -> None:
    sim.override(path, SimResponse(200, endless(), {"Content-Length": str(1 << 40)}))
    with client_refuses(behind, SizeLimitError, f"response of {1 << 40} bytes exceeds the {limit}-byte cap"):
        behind.refresh()
    assert sim.requests[-1][1] == path
    assert sim.responses[-1].consumed == 0


@pytest.mark.parametrize(("part", "limit"), [
    ("bundle", MAX_BUNDLE_SIZE), ("proof", MAX_PROOF_SIZE), ("checkpoint", MAX_NOTE_SIZE),
])
def test_oversized_input_is_refused_by_core(sim: Simulator, part: str, limit: int) -> None:
    sim.add_epoch()
    sim.add_epoch()
    state = state_at(sim, 1)
    with core_refuses(state, SizeLimitError, f"{limit + 1} bytes exceeds the {limit}-byte limit"):
        verify(sim, 2, state, **{part: b"\n" * (limit + 1)})


def test_oversized_consistency_proof_is_refused_by_core(sim: Simulator) -> None:
    for _ in range(2):
        sim.add_epoch()
    state = state_at(sim, 1)
    with core_refuses(state, SizeLimitError, "consistency proof: more than 64 hashes"):
        verify(sim, 2, state, consistency=[b"\x00" * 32] * 65)


@pytest.mark.parametrize(("paths", "status"), [
    (("/checkpoint",), 403),
    (("/entry/001", "/tile/entries/000.p/3"), 404),  # a missing entry object falls back to the entry bundle
], ids=["checkpoint-403", "entry-and-bundle-404"])
def test_endless_error_response_is_cut_off(sim: Simulator, behind: Client, paths: tuple[str, ...], status: int) -> None:
    def eight_mib() -> Iterator[bytes]:  # bounded only so the test terminates when the client does not stop
        for _ in range(128):
            yield b"E" * CHUNK

    saved = disk(behind)
    for path in paths:
        sim.override(path, SimResponse(status, eight_mib()))
    result = behind.refresh()
    assert result.offline is True and result.epoch == 1  # an error status is an outage, not news
    assert disk(behind) == saved
    served = dict(zip([p for _, p in sim.requests], sim.responses, strict=True))
    for path in paths:
        assert path in served, f"{path} was not read: the attack did not happen"
        # The error body is read to MAX_ERROR_BODY bytes and one more (to know it was longer), never further.
        assert served[path].consumed <= MAX_ERROR_BODY + 1, f"read {served[path].consumed} bytes of an error body"


@pytest.mark.parametrize("path", ["/checkpoint", "/entry/002"])
def test_slow_drip_response_is_cut_off_by_deadline(sim: Simulator, behind: Client, path: str) -> None:
    def drip(seconds: float = 1.0) -> Iterator[bytes]:  # bounded so the test ends when the client does not stop
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.005)
            yield b" "

    behind.fetcher.http.timeout = 0.1
    behind.fetcher.http.retries = 0
    saved = disk(behind)
    sim.override(path, SimResponse(200, drip()))
    started = time.monotonic()
    result = behind.refresh()
    assert time.monotonic() - started < 0.5, "the client waited for the whole drip"
    assert sim.requests[-1][1] == path
    assert result.offline is True and result.epoch == 1 and disk(behind) == saved


def test_core_refuses_oversized_bundle_before_anything_else(sim: Simulator) -> None:
    # A bundle one byte over the limit is refused by size, not parsed (step 1 comes first).
    sim.add_epoch()
    with core_refuses(ClientState(), SizeLimitError, f"bundle: {MAX_BUNDLE_SIZE + 1} bytes exceeds"):
        verify(sim, 1, ClientState(), bundle=b"{" * (MAX_BUNDLE_SIZE + 1))
