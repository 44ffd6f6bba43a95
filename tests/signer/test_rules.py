"""The publication rules as pure functions: each test is named after the misuse it stops."""

from __future__ import annotations

import pytest

from signer.app import STATUS_OF_CODE
from signer.rules import (
    MODE_DIGEST,
    MODE_KEYSET,
    STATUS_DISABLED,
    STATUS_INITIALIZATION,
    STATUS_ONLINE,
    Namespace,
    Refusal,
    SignedEntry,
    SignRequest,
    check_request,
    next_timestamp,
)
from verifier.keyset import GENESIS_PREVIOUS

NS = Namespace("ns", 1, STATUS_ONLINE, None, 0, MODE_DIGEST)  # digest-only requests allowed
KNS = Namespace("ns", 1, STATUS_ONLINE, None, 0, MODE_KEYSET)
D1, D2, D3 = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32


def entry(epoch: int, digest: bytes) -> SignedEntry:
    return SignedEntry("ns", epoch, digest, None, 1, epoch, b"st", bytes(64), bytes(32))


def refusal(req: SignRequest, ns=NS, last=None, at=None, digest_epoch=None) -> Refusal:
    with pytest.raises(Refusal) as info:
        check_request(req, ns, last, at, digest_epoch)
    return info.value


def test_unknown_namespace_is_404_and_not_recorded():
    r = refusal(SignRequest("nope", 1, D1), ns=None)
    assert (STATUS_OF_CODE.get(r.code, 400), r.code, r.record) == (404, "unknown-namespace", False)


def test_first_epoch_must_be_1():
    r = refusal(SignRequest("ns", 2, D1))
    assert (STATUS_OF_CODE.get(r.code, 400), r.code, r.record) == (409, "wrong-epoch", True)
    assert "first epoch is 1" in r.reason
    assert check_request(SignRequest("ns", 1, D1), NS, None, None, None) is None


def test_epoch_gap_refused():
    r = refusal(SignRequest("ns", 3, D3), last=entry(1, D1))
    assert r.code == "wrong-epoch" and "epoch 3 skips epochs 2..2" in r.reason


def test_equivocation_second_digest_for_signed_epoch_refused():
    r = refusal(SignRequest("ns", 1, D2), last=entry(1, D1), at=entry(1, D1))
    assert (STATUS_OF_CODE.get(r.code, 400), r.code, r.record) == (409, "equivocation", True)
    assert D1.hex() in r.reason and D2.hex() in r.reason


def test_repeat_of_signed_request_returns_stored_entry():
    stored = entry(1, D1)
    assert check_request(SignRequest("ns", 1, D1), NS, stored, stored, 1) is stored


def test_repeat_still_answered_after_namespace_disabled():
    stored = entry(1, D1)
    disabled = Namespace("ns", 1, STATUS_DISABLED, None, 0, MODE_DIGEST)
    assert check_request(SignRequest("ns", 1, D1), disabled, stored, stored, 1) is stored


@pytest.mark.parametrize("status", [STATUS_DISABLED, STATUS_INITIALIZATION])
def test_namespace_not_online_refused(status):
    r = refusal(SignRequest("ns", 1, D1), ns=Namespace("ns", 1, status, None, 0, MODE_DIGEST))
    assert (STATUS_OF_CODE.get(r.code, 400), r.code, r.record) == (409, "namespace-not-online", True)


def test_digest_replay_at_a_later_epoch_refused():
    r = refusal(SignRequest("ns", 3, D1), last=entry(2, D2), digest_epoch=1)
    assert (r.code, r.record) == ("digest-reused", True)


def test_forked_previous_refused_on_keyset_path():
    r = refusal(SignRequest("ns", 2, D2, previous=D3), last=entry(1, D1))
    assert (r.code, r.record) == ("broken-chain", True)
    assert check_request(SignRequest("ns", 2, D2, previous=D1), NS, entry(1, D1), None, None) is None


def test_genesis_previous_must_be_zeros():
    r = refusal(SignRequest("ns", 1, D1, previous=D3))
    assert r.code == "broken-chain"
    assert check_request(SignRequest("ns", 1, D1, previous=GENESIS_PREVIOUS), NS, None, None, None) is None


def test_digest_only_request_on_a_keyset_namespace_refused():
    """The chain bypass: a bare digest would skip the previous and keyset checks of the keyset path."""
    r = refusal(SignRequest("ns", 2, D2), ns=KNS, last=entry(1, D1))
    assert (STATUS_OF_CODE.get(r.code, 400), r.code, r.record) == (409, "keyset-required", True)
    stored = entry(1, D1)
    assert refusal(SignRequest("ns", 1, D1), ns=KNS, last=stored, at=stored, digest_epoch=1).code == "keyset-required"
    assert check_request(SignRequest("ns", 2, D2, previous=D1), KNS, entry(1, D1), None, None) is None


def test_namespace_without_a_mode_is_a_keyset_namespace():
    assert Namespace("ns", 1, STATUS_ONLINE, None, 0).mode == MODE_KEYSET


def test_issued_at_going_backwards_refused():
    last = SignedEntry("ns", 1, D1, GENESIS_PREVIOUS, 1, 1, b"st", bytes(64), bytes(32), issued_at=2000)
    r = refusal(SignRequest("ns", 2, D2, previous=D1, issued_at=1999), ns=KNS, last=last)
    assert (STATUS_OF_CODE.get(r.code, 400), r.code, r.record) == (409, "issued-at-regressed", True)
    assert "1970-01-01T00:33:19Z" in r.reason and "1970-01-01T00:33:20Z" in r.reason
    assert check_request(SignRequest("ns", 2, D2, previous=D1, issued_at=2000), KNS, last, None, None) is None
    # Unknown issued_at of the last epoch (a digest-only or pre-migration signature): nothing to compare.
    assert check_request(SignRequest("ns", 2, D2, previous=D1, issued_at=5), KNS, entry(1, D1), None, None) is None


def test_timestamp_strictly_increases_even_when_the_clock_goes_back():
    assert next_timestamp(1000, None) == 1000
    assert next_timestamp(1000, 999) == 1000
    assert next_timestamp(1000, 1000) == 1001
    assert next_timestamp(500, 1000) == 1001
