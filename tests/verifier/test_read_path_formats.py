"""The formats and pure rules the static read path rests on (FORMAT.md §3.2, §3.3, §7.2, §9.7)."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factory import World, fleet
from verifier.bundle import check_names_root, require_root_name, verify_bundle
from verifier.errors import FormatError, MismatchError, ProofError, RollbackError, SizeLimitError, TrustRootError
from verifier.keyset import TrustRootRef, parse_keyset
from verifier.merkle import frontier_append, frontier_of, frontier_root, leaf_hash, leaves_reader, root
from verifier.trustroot import encode_trust_root_object, parse_trust_root_object
from verifier.update import MAX_REVOKED, ClientState, check_revocations, revocation_marks


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 8, 9, 255, 256, 257, 1000])
def test_frontier_append_gives_the_rfc9162_root_from_any_split(n: int) -> None:
    leaves = [leaf_hash(b"entry %d" % i) for i in range(n)]
    for split in sorted({0, 1, n // 3, n // 2, n - 1, n} & set(range(n + 1))):
        start = frontier_of(split, leaves_reader(leaves[:split])) if split else ()
        assert frontier_root(frontier_append(split, start, leaves[split:])) == root(leaves), (n, split)


@given(st.integers(0, 300), st.integers(0, 300))
def test_frontier_is_one_hash_per_set_bit(a: int, b: int) -> None:
    leaves = [leaf_hash(bytes([i % 256, i // 256])) for i in range(a + b)]
    f = frontier_append(0, (), leaves[:a])
    assert len(f) == a.bit_count()
    assert frontier_root(frontier_append(a, f, leaves[a:])) == root(leaves)


def test_frontier_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ProofError, match="must hold 2 hashes"):
        frontier_append(3, (bytes(32),), [leaf_hash(b"x")])


def test_a_changed_leaf_changes_the_root() -> None:
    leaves = [leaf_hash(b"e%d" % i) for i in range(10)]
    f = frontier_append(0, (), leaves[:6])
    tampered = leaves[6:]
    tampered[2] = leaf_hash(b"other")
    assert frontier_root(frontier_append(6, f, tampered)) != root(leaves)


def test_trust_root_object_round_trip_and_strictness() -> None:
    env = b'{"format":"fleetkeys/trust-root/v1"}'
    assert parse_trust_root_object(encode_trust_root_object(41, env)) == (41, env)
    for bad in (b"041\n" + env, b"\n" + env, b"x\n" + env, b"41" + env, b"-1\n" + env, b"1" * 20 + b"\n"):
        with pytest.raises(FormatError):
            parse_trust_root_object(bad)
    with pytest.raises(SizeLimitError):
        parse_trust_root_object(b"1\n" + b"x" * 70_000)


def test_keyset_names_its_trust_root_strictly() -> None:
    w = World()
    ks = parse_keyset(w.keyset(1, [fleet("a")]))
    assert ks.trust_root == w.root_ref()
    assert parse_keyset(w.keyset(1, [fleet("a")], root=None)).trust_root is None
    raw = w.keyset(1, [fleet("a")])
    for bad in (raw.replace(b'"version":1', b'"version":0'), raw.replace(b'"sha256":"', b'"sha256":"A'),
                raw.replace(b'"version":1}', b'"version":1,"x":1}')):
        with pytest.raises(FormatError):
            parse_keyset(bad)


def _bundle(w: World, ref) -> bytes:
    return w.bundle(w.keyset(1, [fleet("a")], root=ref), 1)


def test_a_bundle_naming_the_root_in_force_must_match_its_body() -> None:
    w = World()
    root_v1 = w.trust_root()
    verify_bundle(_bundle(w, True), root_v1)
    other = TrustRootRef(1, hashlib.sha256(b"another body").digest())
    with pytest.raises(MismatchError, match="names trust root v1 with body SHA-256"):
        verify_bundle(_bundle(w, other), root_v1)


def test_a_bundle_naming_a_newer_root_means_a_hidden_rotation() -> None:
    w = World()
    with pytest.raises(TrustRootError, match="a rotation was not shown"):
        verify_bundle(_bundle(w, TrustRootRef(2, bytes(32))), w.trust_root())


def test_log_writers_require_exactly_the_root_in_force() -> None:
    w = World()
    ks_named = parse_keyset(w.keyset(1, [fleet("a")]))
    require_root_name(ks_named, w.trust_root())
    for ref in (None, TrustRootRef(1, bytes(32))):
        with pytest.raises(MismatchError, match="must name the trust root in force"):
            require_root_name(parse_keyset(w.keyset(1, [fleet("a")], root=ref)), w.trust_root())
    check_names_root(parse_keyset(w.keyset(1, [fleet("a")], root=None)), w.trust_root())  # legacy: not checked


def test_revocation_is_never_undone_by_id_or_by_key() -> None:
    w = World()
    revoked = check_revocations(frozenset(), parse_keyset(w.keyset(1, [fleet("a", "revoked"), fleet("b")])))
    assert revoked == revocation_marks(parse_keyset(w.keyset(1, [fleet("a", "revoked")])))
    with pytest.raises(RollbackError, match="fleet 'a' is active but its id was revoked"):
        check_revocations(revoked, parse_keyset(w.keyset(2, [fleet("a")], previous=bytes([1]) * 32)))
    same_key = fleet("a")
    renamed = type(same_key)("a2", same_key.algorithm, same_key.public_key, same_key.not_before, same_key.not_after,
                             "active")
    with pytest.raises(RollbackError, match="its key was revoked"):
        check_revocations(revoked, parse_keyset(w.keyset(2, [renamed], previous=bytes([1]) * 32)))
    # retired (not active) may still list it; a new fleet is fine
    check_revocations(revoked, parse_keyset(w.keyset(2, [fleet("a", "retired"), fleet("c")], previous=bytes([1]) * 32)))


def test_revocation_marks_are_bounded() -> None:
    w = World()
    full = frozenset(f"id:x{i}" for i in range(MAX_REVOKED))
    with pytest.raises(SizeLimitError):
        check_revocations(full, parse_keyset(w.keyset(1, [fleet("z", "revoked")])))


def test_state_v2_round_trip_and_frontier_checked() -> None:
    w = World()
    leaves = [leaf_hash(b"e%d" % i) for i in range(5)]
    frontier = frontier_append(0, (), leaves)
    state = ClientState(w.keyset(1, [fleet("a", "revoked")]), 5, root(leaves), 7, None, (), frontier, b"bundle",
                        frozenset({"id:a"}))
    assert ClientState.from_bytes(state.to_bytes()) == state
    broken = state.to_bytes().replace(state.to_bytes()[state.to_bytes().index(b'"frontier":["') + 13:][:4], b"AAAA", 1)
    with pytest.raises(FormatError):
        ClientState.from_bytes(broken)


def test_state_v1_is_migrated() -> None:
    w = World()
    ks = w.keyset(1, [fleet("a", "revoked"), fleet("b")])
    v1 = ClientState(ks, 3, bytes(32), 9).to_bytes().decode()
    import json

    obj = json.loads(v1)
    for k in ("bundle", "frontier", "revoked"):
        del obj[k]
    obj["format"] = "fleetkeys/client-state/v1"
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    state = ClientState.from_bytes(data)
    assert (state.frontier, state.bundle, state.checkpoint_size) == ((), None, 3)
    assert state.revoked == revocation_marks(parse_keyset(ks))
    assert b'"format":"fleetkeys/client-state/v2"' in state.to_bytes()


def test_random_frontier_splits_match() -> None:
    rng = random.Random(7)
    leaves = [leaf_hash(rng.randbytes(8)) for _ in range(700)]
    f, size = (), 0
    while size < len(leaves):
        step = rng.randint(1, 60)
        f = frontier_append(size, f, leaves[size:size + step])
        size = min(len(leaves), size + step)
        assert frontier_root(f) == root(leaves[:size])
