"""``verifier.update.ClientState`` on its own: defaults, serialisation, strict loading, the root in force.

The state is what a client trusts between runs, so loading it is as strict as loading anything from
the network: one canonical encoding, every field checked, a corrupt keyset refused at load. Tests are
named after what they stop (a state that loses a field on the way to disk, a checkpoint size without
its root, a saved root of another namespace put in force, a keyset re-parsed on every access...).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

import verifier.update as update
from tests.factory import World, fleet
from verifier.cjson import dumps_canonical
from verifier.errors import FormatError, RollbackError, SizeLimitError
from verifier.merkle import frontier_append, frontier_root, leaf_hash
from verifier.trustroot import encode_envelope, load_trust_root
from verifier.update import MAX_ROTATIONS, MAX_STATE_SIZE, STATE_FORMAT, ClientState

VECTOR_STATES = sorted((Path(__file__).resolve().parents[2] / "bundles" / "vectors" / "state").glob("*.json"))

EMPTY_STATE = (b'{"bundle":"","checkpoint_root":"","checkpoint_size":0,"format":"fleetkeys/client-state/v2",'
               b'"freshness_time":0,"frontier":[],"keyset":"","revoked":[],"rotation_indexes":[],"trust_root":""}')
SEVEN_LEAVES = [leaf_hash(b"entry %d" % i) for i in range(7)]
SEVEN_FRONTIER = frontier_append(0, (), SEVEN_LEAVES)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def keyset(world) -> bytes:
    return world.keyset(1, [fleet("fleet-1"), fleet("fleet-2")])


def root_envelope(world: World, version: int) -> bytes:
    """An (unsigned) trust-root envelope of ``world`` at ``version``, as a followed rotation is saved."""
    return encode_envelope(world.trust_root_body(version=version))


@pytest.fixture(scope="module")
def full_state(world, keyset) -> ClientState:
    """Every field set to a non-default value."""
    return ClientState(keyset=keyset, checkpoint_size=7, checkpoint_root=frontier_root(SEVEN_FRONTIER),
                       freshness_time=1_795_600_000, trust_root=root_envelope(world, 2), rotation_indexes=(3, 5),
                       frontier=SEVEN_FRONTIER, bundle=b"the bundle entry", revoked=frozenset({"id:x", "key:x25519:AA=="}))


def state_obj(state: ClientState) -> dict:
    return json.loads(state.to_bytes())


def with_fields(state: ClientState, **fields) -> bytes:
    """Canonical bytes of ``state`` with fields replaced (``...`` deletes one)."""
    obj = state_obj(state)
    for name, value in fields.items():
        if value is ...:
            del obj[name]
        else:
            obj[name] = value
    return dumps_canonical(obj)


# --- construction ---------------------------------------------------------------------------------


def test_defaults_are_a_first_run_state():
    state = ClientState()
    assert (state.keyset, state.checkpoint_size, state.checkpoint_root, state.freshness_time, state.trust_root,
            state.rotation_indexes) == (None, 0, None, 0, None, ())
    assert state.saved_keyset is None and state.saved_trust_root is None
    assert state.epoch == 0
    assert state == ClientState()


def test_state_is_immutable(full_state):
    for name in ("keyset", "checkpoint_size", "checkpoint_root", "freshness_time", "trust_root", "rotation_indexes"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(full_state, name, None)


def test_epoch_is_the_saved_keyset_epoch(world):
    assert ClientState(keyset=world.keyset(4, [fleet("a")], previous=bytes(range(32)))).epoch == 4


# --- to_bytes / from_bytes ------------------------------------------------------------------------


def test_empty_state_serialises_to_exact_canonical_bytes():
    assert ClientState().to_bytes() == EMPTY_STATE
    assert ClientState.from_bytes(EMPTY_STATE) == ClientState()


def test_full_state_round_trips_every_field(full_state):
    data = full_state.to_bytes()
    assert data == dumps_canonical(json.loads(data))  # canonical JSON, keys sorted
    obj = json.loads(data)
    assert obj == {
        "bundle": base64.b64encode(b"the bundle entry").decode(),
        "checkpoint_root": base64.b64encode(full_state.checkpoint_root).decode(),
        "checkpoint_size": 7,
        "format": STATE_FORMAT,
        "freshness_time": 1_795_600_000,
        "frontier": [base64.b64encode(h).decode() for h in SEVEN_FRONTIER],
        "keyset": base64.b64encode(full_state.keyset).decode(),
        "revoked": ["id:x", "key:x25519:AA=="],
        "rotation_indexes": [3, 5],
        "trust_root": base64.b64encode(full_state.trust_root).decode(),
    }
    loaded = ClientState.from_bytes(data)
    assert loaded == full_state
    for field in dataclasses.fields(ClientState):
        assert getattr(loaded, field.name) == getattr(full_state, field.name), field.name
    assert loaded.rotation_indexes == (3, 5) and isinstance(loaded.rotation_indexes, tuple)
    assert loaded.to_bytes() == data


@pytest.mark.parametrize("path", VECTOR_STATES, ids=lambda p: p.name)
def test_golden_vector_states_round_trip_byte_for_byte(path):
    data = path.read_bytes()
    state = ClientState.from_bytes(data)
    assert state.to_bytes() == data
    assert state.epoch == int(path.stem.rsplit("-", 1)[1])  # after-epoch-N.json


def test_vector_states_exist():
    assert [p.name for p in VECTOR_STATES] == ["after-epoch-1.json", "after-epoch-2.json", "after-epoch-3.json"]


def test_from_bytes_accepts_the_most_rotations_allowed(full_state):
    data = with_fields(full_state, checkpoint_size=MAX_ROTATIONS, rotation_indexes=list(range(MAX_ROTATIONS)),
                       frontier=[])  # no frontier: a state whose frontier is rebuilt at the next refresh
    assert len(ClientState.from_bytes(data).rotation_indexes) == MAX_ROTATIONS


# --- strict from_bytes ----------------------------------------------------------------------------

ROOT_B64 = base64.b64encode(hashlib.sha256(b"root").digest()).decode()


@pytest.mark.parametrize(("desc", "fields"), [
    ("format v3", {"format": "fleetkeys/client-state/v3"}),
    ("frontier not folding to the root", {"frontier": [base64.b64encode(bytes(32)).decode()] * 3}),
    ("frontier of the wrong length", {"frontier": [base64.b64encode(h).decode() for h in SEVEN_FRONTIER[:2]]}),
    ("revoked unsorted", {"revoked": ["key:x25519:AA==", "id:x"]}),
    ("revoked not strings", {"revoked": [1]}),
    ("format of a bundle", {"format": "fleetkeys/bundle/v1"}),
    ("format missing", {"format": ...}),
    ("format not a string", {"format": 1}),
    ("unknown field", {"epoch": 1}),
    ("keyset missing", {"keyset": ...}),
    ("trust_root missing", {"trust_root": ...}),
    ("rotation_indexes missing", {"rotation_indexes": ...}),
    # checkpoint size and root must agree: both empty, or a size > 0 with a 32-byte root
    ("size without root", {"checkpoint_root": ""}),
    ("root without size", {"checkpoint_size": 0, "rotation_indexes": []}),
    ("root of 31 bytes", {"checkpoint_root": base64.b64encode(bytes(31)).decode()}),
    ("root of 33 bytes", {"checkpoint_root": base64.b64encode(bytes(33)).decode()}),
    ("size negative", {"checkpoint_size": -1}),
    ("size 2**63", {"checkpoint_size": 1 << 63}),
    ("size as a string", {"checkpoint_size": "7"}),
    ("size as a boolean", {"checkpoint_size": True}),
    ("freshness_time negative", {"freshness_time": -1}),
    ("freshness_time above 2**62", {"freshness_time": (1 << 62) + 1}),
    ("freshness_time null", {"freshness_time": None}),
    # base64: standard alphabet, padded, canonical, and a string
    ("root not base64", {"checkpoint_root": "!!!!"}),
    ("root base64 missing padding", {"checkpoint_root": ROOT_B64.rstrip("=")}),
    ("root url-safe base64", {"checkpoint_root": ROOT_B64.replace("+", "-").replace("/", "_")}),
    ("root base64 with non-zero trailing bits", {"checkpoint_root": ROOT_B64[:-2] + "1="}),
    ("root base64 with a newline", {"checkpoint_root": ROOT_B64[:20] + "\n" + ROOT_B64[20:]}),
    ("root not a string", {"checkpoint_root": None}),
    ("keyset not base64", {"keyset": "not base64!"}),
    ("keyset not a string", {"keyset": 5}),
    ("keyset as an object", {"keyset": {}}),
    ("trust_root not base64", {"trust_root": "*"}),
    ("trust_root not a string", {"trust_root": []}),
    # rotation indexes: a list of at most MAX_ROTATIONS integers within the tree
    ("too many rotation indexes", {"checkpoint_size": 5000, "rotation_indexes": list(range(MAX_ROTATIONS + 1))}),
    ("rotation indexes not a list", {"rotation_indexes": {}}),
    ("rotation indexes a number", {"rotation_indexes": 3}),
    ("rotation index beyond the tree", {"rotation_indexes": [8]}),
    ("rotation index negative", {"rotation_indexes": [-1]}),
    ("rotation index a string", {"rotation_indexes": ["3"]}),
])
def test_from_bytes_refuses(full_state, desc, fields):
    with pytest.raises(FormatError):
        ClientState.from_bytes(with_fields(full_state, **fields))


def test_too_many_rotation_indexes_is_refused_by_its_own_check(full_state):
    data = with_fields(full_state, checkpoint_size=5000, rotation_indexes=list(range(MAX_ROTATIONS + 1)))
    with pytest.raises(FormatError, match="at most 1024 indexes"):
        ClientState.from_bytes(data)


def test_size_and_root_disagreement_is_named(full_state):
    for fields in ({"checkpoint_root": ""}, {"checkpoint_size": 0, "rotation_indexes": []}):
        with pytest.raises(FormatError, match="checkpoint size and root disagree"):
            ClientState.from_bytes(with_fields(full_state, **fields))


@pytest.mark.parametrize("desc", ["pretty-printed", "trailing newline", "leading space", "unsorted keys",
                                  "duplicate key", "escaped letter", "float", "UTF-8 BOM"])
def test_from_bytes_refuses_non_canonical_json(full_state, desc):
    data = full_state.to_bytes()
    obj = json.loads(data)
    variant = {
        "pretty-printed": json.dumps(obj, indent=1, sort_keys=True).encode(),
        "trailing newline": data + b"\n",
        "leading space": b" " + data,
        "unsorted keys": json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":")).encode(),
        "duplicate key": data.replace(b'"checkpoint_size":7', b'"checkpoint_size":7,"checkpoint_size":7'),
        "escaped letter": data.replace(b'"format":"fleetkeys', b'"format":"\\u0066leetkeys'),
        "float": data.replace(b'"checkpoint_size":7', b'"checkpoint_size":7.0'),
        "UTF-8 BOM": b"\xef\xbb\xbf" + data,
    }[desc]
    assert variant != data and json.loads(variant.decode("utf-8-sig")) == obj  # the same state, spelled otherwise
    with pytest.raises(FormatError):
        ClientState.from_bytes(variant)


@pytest.mark.parametrize("data", [b"", b"null", b"[]", b'"state"', b"{}"])
def test_from_bytes_refuses_what_is_not_a_state_object(data):
    with pytest.raises(FormatError):
        ClientState.from_bytes(data)


def test_from_bytes_refuses_text_and_oversized_input():
    with pytest.raises(FormatError):
        ClientState.from_bytes(EMPTY_STATE.decode())
    with pytest.raises(SizeLimitError):
        ClientState.from_bytes(EMPTY_STATE + b" " * (MAX_STATE_SIZE + 1 - len(EMPTY_STATE)))


@pytest.mark.parametrize("bad_keyset", [b"not json", b'{"epoch":1}', b"{}"])
def test_a_corrupt_saved_keyset_fails_at_load_not_at_first_use(full_state, bad_keyset):
    with pytest.raises(FormatError):
        ClientState.from_bytes(with_fields(full_state, keyset=base64.b64encode(bad_keyset).decode()))


# --- trust_root_in_force --------------------------------------------------------------------------


def test_without_a_saved_root_the_bootstrap_root_is_in_force(world):
    bootstrap = world.trust_root()
    assert ClientState().trust_root_in_force(bootstrap) is bootstrap


def test_a_saved_newer_root_is_in_force(world):
    state = ClientState(trust_root=root_envelope(world, 2))
    in_force = state.trust_root_in_force(world.trust_root())
    assert in_force.version == 2 and in_force.envelope == root_envelope(world, 2)
    assert in_force is state.saved_trust_root


def test_a_bootstrap_root_newer_than_the_saved_one_wins(world):
    """A newer app ships a newer root: the state's older rotation must not roll it back."""
    bootstrap = load_trust_root(root_envelope(world, 3))
    assert ClientState(trust_root=root_envelope(world, 2)).trust_root_in_force(bootstrap) is bootstrap


def test_a_saved_root_of_the_bootstrap_version_leaves_the_bootstrap_in_force(world):
    bootstrap = load_trust_root(root_envelope(world, 2))
    assert ClientState(trust_root=root_envelope(world, 2)).trust_root_in_force(bootstrap) is bootstrap


def test_a_saved_root_of_another_namespace_is_refused(world):
    other = World(namespace="other.example/vaults")
    state = ClientState(trust_root=root_envelope(other, 2))
    with pytest.raises(RollbackError, match="other.example/vaults"):
        state.trust_root_in_force(world.trust_root())
    newer_bootstrap = load_trust_root(root_envelope(world, 5))  # refused whatever the versions
    with pytest.raises(RollbackError):
        state.trust_root_in_force(newer_bootstrap)


def test_trust_root_in_force_after_a_round_trip(world):
    state = ClientState.from_bytes(ClientState(trust_root=root_envelope(world, 2)).to_bytes())
    assert state.trust_root_in_force(world.trust_root()).version == 2


# --- parsed-once caches ---------------------------------------------------------------------------


def counting(monkeypatch, name: str) -> list[bytes]:
    """Count the calls of ``verifier.update.<name>`` (still calling the real function)."""
    calls: list[bytes] = []
    real = getattr(update, name)

    def wrapper(data):
        calls.append(data)
        return real(data)

    monkeypatch.setattr(update, name, wrapper)
    return calls


def test_saved_keyset_is_parsed_once_per_state(monkeypatch, keyset):
    calls = counting(monkeypatch, "parse_keyset")
    state = ClientState(keyset=keyset)
    first = state.saved_keyset
    assert first.raw == keyset and first.epoch == 1
    assert state.saved_keyset is first and state.epoch == 1 and state.saved_keyset is first
    assert calls == [keyset]


def test_from_bytes_parses_the_keyset_once_and_caches_it(monkeypatch, full_state):
    data = full_state.to_bytes()
    calls = counting(monkeypatch, "parse_keyset")
    state = ClientState.from_bytes(data)
    assert len(calls) == 1  # at load: a corrupt keyset fails there
    assert state.saved_keyset.raw == full_state.keyset and state.epoch == 1
    assert len(calls) == 1  # not again on use


def test_cache_is_per_state_object(monkeypatch, world, keyset):
    calls = counting(monkeypatch, "parse_keyset")
    one, other = ClientState(keyset=keyset), ClientState(keyset=world.keyset(2, [fleet("b")], previous=bytes(range(32))))
    assert one.saved_keyset.epoch == 1 and other.saved_keyset.epoch == 2
    assert dataclasses.replace(one).saved_keyset.epoch == 1
    assert len(calls) == 3
    assert one == dataclasses.replace(one)  # the cache takes no part in equality


def test_saved_trust_root_is_parsed_once_per_state(monkeypatch, world):
    calls = counting(monkeypatch, "load_trust_root")
    state = ClientState(trust_root=root_envelope(world, 2))
    bootstrap = world.trust_root()
    first = state.trust_root_in_force(bootstrap)
    for _ in range(3):
        assert state.trust_root_in_force(bootstrap) is first
    assert state.saved_trust_root is first
    assert calls == [root_envelope(world, 2)]
