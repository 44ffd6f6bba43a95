"""Endless-data attacks: responses that never end, or lie about their size, or drip (docs/DESIGN.md §6 byte
limits). The client must cut every response off at its cap and never hold on to more than that."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.attacks.helpers import client_refuses, core_refuses, disk, state_at, verify
from tests.attacks.simulator import SimResponse, Simulator, endless
from verifier.bundle import MAX_BUNDLE_SIZE
from verifier.client import MAX_JSON_RESPONSE, Client
from verifier.errors import SizeLimitError
from verifier.note import MAX_NOTE_SIZE
from verifier.tlogproof import MAX_PROOF_SIZE
from verifier.update import ClientState

CHUNK = 64 * 1024


@pytest.fixture
def behind(sim: Simulator, state_dir: Path) -> Client:
    """A client that verified epoch 1 while the log has moved on to epoch 3."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    sim.add_epoch()
    sim.add_epoch()
    return client


@pytest.mark.parametrize("path", [
    "/api/v1/trust-roots/2",
    "/api/v1/bundles/latest",
    "/api/v1/bundles/2",
    "/api/v1/proof/consistency?from=1&to=3",
])
def test_endless_response_is_cut_off_at_cap(sim: Simulator, behind: Client, path: str) -> None:
    sim.override(path, SimResponse(200, endless()))
    with client_refuses(behind, SizeLimitError, f"response exceeds the {MAX_JSON_RESPONSE}-byte cap (cut off)"):
        behind.refresh()
    assert sim.requests[-1][1] == path
    assert sim.responses[-1].consumed <= MAX_JSON_RESPONSE + 2 * CHUNK


def test_declared_oversized_response_is_refused_unread(sim: Simulator, behind: Client) -> None:
    sim.override("/api/v1/bundles/latest", SimResponse(200, endless(), {"Content-Length": str(1 << 40)}))
    with client_refuses(behind, SizeLimitError, f"response of {1 << 40} bytes exceeds the {MAX_JSON_RESPONSE}-byte cap"):
        behind.refresh()
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


@pytest.mark.parametrize(("path", "status"), [("/api/v1/bundles/2", 404), ("/api/v1/bundles/latest", 403)])
def test_endless_error_response_is_cut_off(sim: Simulator, behind: Client, path: str, status: int) -> None:
    def eight_mib() -> Iterator[bytes]:  # bounded only so the test terminates when the client does not stop
        for _ in range(128):
            yield b"E" * CHUNK

    saved = disk(behind)
    sim.override(path, SimResponse(status, eight_mib()))
    result = behind.refresh()
    assert result.offline is True and result.epoch == 1  # an error status is an outage, not news
    assert disk(behind) == saved
    assert sim.responses[-1].consumed <= MAX_JSON_RESPONSE, f"read {sim.responses[-1].consumed} bytes of an error body"


def test_slow_drip_response_is_cut_off_by_deadline(sim: Simulator, behind: Client) -> None:
    def drip(seconds: float = 1.0) -> Iterator[bytes]:  # bounded so the test ends when the client does not stop
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.005)
            yield b" "

    behind.http.timeout = 0.1
    behind.http.retries = 0
    saved = disk(behind)
    sim.override("/api/v1/bundles/latest", SimResponse(200, drip()))
    started = time.monotonic()
    result = behind.refresh()
    assert time.monotonic() - started < 0.5, "the client waited for the whole drip"
    assert result.offline is True and disk(behind) == saved


def test_core_refuses_oversized_bundle_before_anything_else(sim: Simulator) -> None:
    # A bundle one byte over the limit is refused by size, not parsed (step 1 comes first).
    sim.add_epoch()
    with core_refuses(ClientState(), SizeLimitError, f"bundle: {MAX_BUNDLE_SIZE + 1} bytes exceeds"):
        verify(sim, 1, ClientState(), bundle=b"{" * (MAX_BUNDLE_SIZE + 1))
