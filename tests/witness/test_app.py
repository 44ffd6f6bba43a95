"""The add-checkpoint status matrix of c2sp.org/tlog-witness@v1.0.0, exact statuses, bodies and content
types, through the Flask app (in-process); the state's rules; the info endpoint; the configuration."""

from __future__ import annotations

import base64
import sqlite3

import pytest

from tests.factory import SeedSigner
from tests.witness.helpers import (
    ORIGIN,
    WITNESS_KEY,
    WITNESS_NAME,
    WITNESS_VKEY,
    Clock,
    TestLog,
    cosigned,
    make_client,
    make_config,
)
from verifier.checkpoint import Checkpoint, sign_checkpoint
from verifier.cosignature import CosignatureSigner, add_cosignatures
from verifier.note import NoteSigner, Signature, parse_note
from witness.app import STATUS_OF, create_app, status_of
from witness.config import WitnessConfig, parse_log_options
from witness.errors import (
    InconsistentCheckpoint,
    MalformedRequest,
    OldSizeTooLarge,
    RequestTooLarge,
    RootConflict,
    SizeConflict,
    UnknownOrigin,
    UntrustedCheckpoint,
    WitnessConfigError,
    WitnessError,
    WitnessUnavailable,
)
from witness.state import WitnessState
from witness.wire import MAX_BODY, encode_add_checkpoint

TEXT = "text/plain; charset=utf-8"


@pytest.fixture
def log():
    return TestLog().grow(40)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "witness"


@pytest.fixture
def client(data_dir, log, clock):
    return make_client(data_dir, [log], clock=clock)


def post(client, body: bytes):
    return client.post("/add-checkpoint", data=body)


def state(data_dir):
    s = WitnessState(data_dir / "witness.sqlite")
    try:
        return s.get(ORIGIN)
    finally:
        s.close()


def assert_200(resp, note: bytes, timestamp: int):
    assert resp.status_code == 200, resp.data
    assert resp.headers["Content-Type"] == TEXT
    assert cosigned(note, resp.data).timestamp == timestamp


def assert_409(resp, known: int):
    assert resp.status_code == 409, resp.data
    assert resp.headers["Content-Type"] == "text/x.tlog.size"  # exactly: no charset parameter
    assert resp.data == f"{known}\n".encode()


def assert_text(resp, status: int, contains: str = ""):
    assert resp.status_code == status, resp.data
    assert resp.headers["Content-Type"] == TEXT
    assert resp.data.endswith(b"\n") and resp.data.count(b"\n") == 1 and contains in resp.data.decode()


# --- 200 -----------------------------------------------------------------------------------------------------------


def test_200_first_checkpoint_with_old_size_zero_and_its_cosignature(client, log, clock, data_dir):
    resp = post(client, log.request(0, 10))
    assert_200(resp, log.note(10), clock.now)
    # One line: "— <witness name> base64(key id || timestamp || signature)".
    (line,) = resp.data.splitlines(keepends=True)
    assert line.startswith(f"\u2014 {WITNESS_NAME} ".encode())
    raw = base64.b64decode(line.split(b" ")[-1])
    assert len(raw) == 4 + 8 + 64 and int.from_bytes(raw[:4], "big") == WITNESS_VKEY.key_id
    assert int.from_bytes(raw[4:12], "big") == clock.now
    # The client may concatenate the body to the checkpoint and verify it as a note (the spec's way).
    _, sigs = parse_note(log.note(10) + resp.data)
    assert [s.name for s in sigs] == [ORIGIN, WITNESS_NAME]
    st = state(data_dir)
    assert (st.size, st.root, st.timestamp) == (10, log.root(10), clock.now)


def test_200_with_a_consistency_proof_and_the_request_time(client, log, clock):
    assert post(client, log.request(0, 10)).status_code == 200
    clock.now += 60
    assert_200(post(client, log.request(10, 17)), log.note(17), clock.now)
    clock.now += 1
    assert_200(post(client, log.request(17, 32)), log.note(32), clock.now)


def test_200_unchanged_checkpoint_re_cosigned_with_a_new_timestamp(client, log, clock, data_dir):
    """Freshness renewal: the same checkpoint again (old size = its size, no proof) gets a new timestamp."""
    first = post(client, log.request(0, 10))
    assert_200(first, log.note(10), clock.now)
    clock.now += 300
    again = post(client, log.request(10, 10))
    assert_200(again, log.note(10), clock.now)
    assert again.data != first.data
    st = state(data_dir)
    assert (st.size, st.root, st.timestamp) == (10, log.root(10), clock.now)


def test_200_timestamps_never_go_back_with_the_clock(client, log, clock):
    assert_200(post(client, log.request(0, 10)), log.note(10), clock.now)
    last = clock.now
    clock.now -= 3600  # the clock stepped back an hour
    assert_200(post(client, log.request(10, 12)), log.note(12), last)


def test_200_empty_tree_then_growth(client, log, clock):
    assert_200(post(client, log.request(0, 0)), log.note(0), clock.now)
    assert_200(post(client, log.request(0, 0)), log.note(0), clock.now)  # size 0 again: old size 0 is right
    assert_200(post(client, log.request(0, 5)), log.note(5), clock.now)  # the empty tree needs no proof


def test_200_extension_lines_are_cosigned_as_sent(client, log, clock):
    note = log.note(10, ("extension one", "extension two"))
    assert_200(post(client, encode_add_checkpoint(0, [], note)), note, clock.now)


def test_200_ignores_signatures_by_unknown_keys_and_other_cosignatures(client, log, clock):
    other = CosignatureSigner("witness.example/other", SeedSigner("another witness"))
    note = add_cosignatures(log.note(10), [other.cosign(log.checkpoint(10).body(), 5)])
    stranger = NoteSigner.from_signer("stranger.example", SeedSigner("stranger"))
    note += stranger.signature_line(parse_note(note)[0])
    # A line under this witness's own name and key id, with garbage: not a log key, so ignored too.
    note += Signature(WITNESS_NAME, WITNESS_VKEY.key_id, bytes(72)).line
    resp = post(client, encode_add_checkpoint(0, [], note))
    assert_200(resp, log.note(10), clock.now)  # a cosignature of the same text


def test_200_with_any_trusted_key_of_the_origin(data_dir, log, clock):
    rotated = TestLog(key_label="rotated log key").grow(40)  # same origin and entries, another key
    client = make_client(data_dir, [log, rotated], clock=clock)
    assert_200(post(client, rotated.request(0, 10)), rotated.note(10), clock.now)
    assert_200(post(client, log.request(10, 12)), log.note(12), clock.now)


# --- 409 -----------------------------------------------------------------------------------------------------------


def test_409_old_size_not_the_known_size(client, log, data_dir):
    assert post(client, log.request(0, 10)).status_code == 200
    assert_409(post(client, log.request(7, 12)), 10)      # behind
    assert_409(post(client, log.request(11, 12)), 10)     # ahead
    assert_409(post(client, log.request(0, 12)), 10)      # a client learning the size with old 0
    assert state(data_dir).size == 10


def test_409_never_cosigned_means_size_zero(client, log):
    assert_409(post(client, log.request(5, 10)), 0)


def test_409_same_size_different_root(client, log, data_dir):
    """v1.0.0: "If the old size matches the checkpoint size, the witness MUST check that the root hashes
    are also identical. If they don't match, the witness MUST respond with a 409 Conflict"."""
    assert post(client, log.request(0, 10)).status_code == 200
    fork = log.fork(6, "fork")
    assert_409(post(client, fork.request(10, 10)), 10)
    st = state(data_dir)
    assert (st.size, st.root) == (10, log.root(10))


def test_409_comes_before_the_proof_is_looked_at(client, log):
    assert post(client, log.request(0, 10)).status_code == 200
    assert_409(post(client, log.request(3, 12, proof=[bytes(32)] * 9)), 10)


# --- 400 -----------------------------------------------------------------------------------------------------------


def test_400_old_size_larger_than_the_checkpoints(client, log):
    assert post(client, log.request(0, 10)).status_code == 200
    assert_text(post(client, log.request(12, 11, proof=[])), 400, "larger than the checkpoint")
    # Checked before the 409: old 11 > 10 with a known size of 10 is still 400.
    assert_text(post(client, log.request(11, 10, proof=[])), 400, "larger than the checkpoint")


@pytest.mark.parametrize("body", [b"", b"old 1\n", b"old 01\n\n", b"old 1\nAAAA\n\n", b"hello\n\n"])
def test_400_malformed(client, log, body):
    assert_text(post(client, body + (log.note(3) if body.endswith(b"\n\n") else b"")), 400)


def test_400_malformed_checkpoint_note(client, log):
    note = log.note(10).replace(b"\n10\n", b"\n+10\n")
    assert_text(post(client, encode_add_checkpoint(0, [], note)), 400, "checkpoint")


def test_413_body_too_large(client, log):
    big = log.request(0, 10) + b"x" * MAX_BODY
    assert_text(post(client, big), 413, "exceeds")


# --- 422 -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def at10(client, log):
    assert post(client, log.request(0, 10)).status_code == 200
    return client


def test_422_consistency_proof_does_not_verify(at10, log, data_dir):
    proof = log.proof(10, 17)
    proof[1] = bytes(32)
    assert_text(post(at10, log.request(10, 17, proof=proof)), 422, "consistency proof")
    assert_text(post(at10, log.request(10, 17, proof=proof[:-1])), 422, "expected")   # too short
    assert_text(post(at10, log.request(10, 17, proof=[*log.proof(10, 17), bytes(32)])), 422)  # too long
    assert_text(post(at10, log.request(10, 17, proof=log.proof(10, 16))), 422)
    assert state(data_dir).size == 10


def test_422_a_fork_beyond_the_known_size(at10, log, data_dir):
    fork = log.fork(8, "fork")
    assert_text(post(at10, fork.request(10, 20)), 422)  # the fork's own proof, against the fork's 10
    assert_text(post(at10, fork.request(10, 20, proof=log.proof(10, 20))), 422)  # the honest proof
    st = state(data_dir)
    assert (st.size, st.root) == (10, log.root(10))


def test_422_proof_with_old_size_zero(client, log, data_dir):
    assert_text(post(client, log.request(0, 10, proof=[bytes(32)])), 422, "old size 0")
    assert state(data_dir) is None


def test_422_proof_between_equal_sizes(at10, log):
    assert_text(post(at10, log.request(10, 10, proof=[log.root(5)])), 422)


def test_422_size_zero_checkpoint_without_the_empty_root(client, log):
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), log.note_signer)
    assert_text(post(client, encode_add_checkpoint(0, [], note)), 422, "empty tree")


# --- 404 / 403 -----------------------------------------------------------------------------------------------------


def test_404_unknown_origin(client):
    other = TestLog(origin="other.example/log", key_label="other log").grow(5)
    assert_text(post(client, other.request(0, 5)), 404, "other.example/log")
    # Before the old-size rule: old size 9 > 5 is still 404 for an unknown origin.
    assert_text(post(client, other.request(9, 5, proof=[])), 404)


def test_403_no_trusted_signature(client, log, data_dir):
    impostor = TestLog(key_label="impostor").grow(40)  # right origin, untrusted key
    assert_text(post(client, impostor.request(0, 10)), 403)
    assert state(data_dir) is None


def test_403_a_trusted_keys_signature_fails(client, log, data_dir):
    text, sigs = parse_note(log.note(10))
    other = log.note(11)  # the log's valid signature over another text
    _, other_sigs = parse_note(other)
    assert_text(post(client, encode_add_checkpoint(0, [], text + b"\n" + other_sigs[0].line)), 403)
    # A failing line by a trusted key refuses the note even with a valid one after it (signed-note:
    # reject the whole note; a repeated line by the same key after the first is ignored, as Go's note.Open).
    bad = Signature(sigs[0].name, sigs[0].key_id, bytes(64)).line
    assert_text(post(client, encode_add_checkpoint(0, [], text + b"\n" + bad + sigs[0].line)), 403)
    assert state(data_dir) is None


def test_403_one_trusted_key_fails_while_another_verifies(data_dir, log, clock):
    rotated = TestLog(key_label="rotated log key").grow(40)
    client = make_client(data_dir, [log, rotated], clock=clock)
    text, sigs = parse_note(log.note(10))
    bad = Signature(rotated.origin, rotated.note_signer.key_id, bytes(64)).line
    assert_text(post(client, encode_add_checkpoint(0, [], text + b"\n" + sigs[0].line + bad)), 403)
    assert state(data_dir) is None


def test_403_before_the_409(at10, log):
    impostor = TestLog(key_label="impostor").grow(40)
    assert_text(post(at10, impostor.request(3, 12, proof=[])), 403)


# --- HTTP around the spec ------------------------------------------------------------------------------------------


def test_405_add_checkpoint_is_post_only(client):
    resp = client.get("/add-checkpoint")
    assert_text(resp, 405)
    assert "POST" in resp.headers["Allow"]


def test_info_endpoint_gives_the_witness_vkey(client, log):
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    assert resp.get_json() == {"name": WITNESS_NAME, "vkey": WITNESS_VKEY.vkey, "submission": "/add-checkpoint",
                               "logs": [{"origin": ORIGIN, "keys": [log.vkey]}]}
    name, key_id, key = WITNESS_VKEY.vkey.split("+", 2)
    assert name == WITNESS_NAME and base64.b64decode(key)[0] == 0x04 and int(key_id, 16) == WITNESS_VKEY.key_id


def test_other_paths_answer_json_errors(client):
    resp = client.get("/nope")
    assert resp.status_code == 404 and resp.get_json()["code"] == "not-found"
    resp = client.post("/")
    assert resp.status_code == 405 and resp.get_json()["status"] == 405


def test_503_when_the_key_fails_and_nothing_changes(data_dir, log, clock):
    class Broken:
        public_key = WITNESS_KEY.public_key

        def sign(self, message: bytes) -> bytes:
            return bytes(64)  # a signature that does not verify: never released

    client = make_client(data_dir, [log], clock=clock, signer=Broken())
    assert_text(post(client, log.request(0, 10)), 503, "witness key")
    assert state(data_dir) is None


def test_status_table_covers_every_error():
    for cls, status in [(MalformedRequest, 400), (OldSizeTooLarge, 400), (UntrustedCheckpoint, 403),
                        (UnknownOrigin, 404), (SizeConflict, 409), (RootConflict, 409), (RequestTooLarge, 413),
                        (InconsistentCheckpoint, 422), (WitnessUnavailable, 503)]:
        assert STATUS_OF[cls] == status
        exc = cls(3, "x") if issubclass(cls, SizeConflict) else cls("x")
        assert status_of(exc) == status and isinstance(exc, WitnessError)
    assert status_of(WitnessConfigError("x")) == 500
    assert not any(hasattr(cls, "status") for cls in STATUS_OF)


# --- the state: durable, never backwards, never to a fork ----------------------------------------------------------


def test_state_is_kept_across_a_restart(data_dir, log, clock):
    assert post(make_client(data_dir, [log], clock=clock), log.request(0, 10)).status_code == 200
    restarted = make_client(data_dir, [log], clock=clock)
    assert_409(post(restarted, log.request(0, 10)), 10)
    assert_409(post(restarted, log.fork(4, "fork").request(10, 10)), 10)
    clock.now += 5
    assert_200(post(restarted, log.request(10, 11)), log.note(11), clock.now)


def test_the_state_never_moves_backwards_or_to_a_fork(client, log, data_dir):
    fork = log.fork(12, "fork")
    history = []
    for old, new in [(0, 10), (10, 20), (20, 30)]:
        assert post(client, log.request(old, new)).status_code == 200
        history.append(new)
    attempts = [log.request(30, 20, proof=[]), log.request(20, 25), log.request(0, 5), fork.request(30, 30),
                fork.request(30, 35), fork.request(30, 35, proof=log.proof(30, 35)), fork.request(20, 25)]
    for body in attempts:
        assert post(client, body).status_code in (400, 409, 422)
        st = state(data_dir)
        assert (st.size, st.root) == (30, log.root(30))


def test_the_database_refuses_moving_a_row_backwards(data_dir, client, log):
    assert post(client, log.request(0, 10)).status_code == 200
    conn = sqlite3.connect(data_dir / "witness.sqlite")
    for statement in ["UPDATE logs SET size = 9", "UPDATE logs SET root = zeroblob(32)",
                      "UPDATE logs SET timestamp = timestamp - 1", "DELETE FROM logs",
                      "UPDATE logs SET origin = 'x'"]:
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(statement)
    conn.close()


# --- configuration -------------------------------------------------------------------------------------------------


def test_log_options_parse_and_refuse(log):
    assert parse_log_options([log.log_option]) == {ORIGIN: (log.note_signer.verifier,)}
    other = TestLog(key_label="second").note_signer.verifier
    both = parse_log_options([log.log_option, f"{ORIGIN}={other.vkey}"])
    assert both[ORIGIN] == (log.note_signer.verifier, other)
    assert parse_log_options([f"a=b/log={log.vkey}"]) == {"a=b/log": (log.note_signer.verifier,)}
    for bad in [[], [log.vkey], [f"={log.vkey}"], [f"{ORIGIN}="], [f"{ORIGIN}=nonsense"],
                [log.log_option, log.log_option], [f" {ORIGIN}={log.vkey}"],
                [f"{ORIGIN}={WITNESS_VKEY.vkey}"]]:  # a type 0x04 key is no log key
        with pytest.raises(WitnessConfigError):
            parse_log_options(bad)


def test_config_refuses_a_bad_name_and_a_shared_key(data_dir, log):
    trusted = {ORIGIN: (log.note_signer.verifier,)}
    for name in ["bad name", "", "a+b"]:
        with pytest.raises(WitnessConfigError, match="witness name"):
            WitnessConfig(name=name, data_dir=data_dir, logs=trusted, signer=WITNESS_KEY)
    with pytest.raises(WitnessConfigError, match="needs a key"):
        WitnessConfig(name=WITNESS_NAME, data_dir=data_dir, logs=trusted)
    data_dir.mkdir()
    with pytest.raises(WitnessConfigError, match="also a configured log key"):
        create_app(make_config(data_dir, [log], signer=log.key))
