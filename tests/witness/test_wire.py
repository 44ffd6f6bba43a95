"""The add-checkpoint body parser: exactly the spec's syntax, bounded, and only MalformedRequest (400) on refusal."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.witness.helpers import TestLog, make_client
from witness.errors import MalformedRequest, RequestTooLarge
from witness.wire import MAX_BODY, MAX_PROOF_LINES, AddCheckpoint, encode_add_checkpoint, parse_add_checkpoint

LOG = TestLog().grow(40)
NOTE = LOG.note(20)
H = base64.b64encode(bytes(range(32)))


def test_a_valid_body_parses_to_its_parts():
    proof = LOG.proof(13, 20)
    req = parse_add_checkpoint(encode_add_checkpoint(13, proof, NOTE))
    assert req == AddCheckpoint(13, tuple(proof), NOTE, LOG.checkpoint(20))


def test_the_spec_example_shape_parses():
    body = (b"old 20852014\n" + b"\n".join([H] * 4) + b"\n\n" + NOTE)
    req = parse_add_checkpoint(body)
    assert req.old_size == 20852014 and req.proof == (bytes(range(32)),) * 4 and req.note == NOTE


def test_old_zero_and_no_proof():
    req = parse_add_checkpoint(b"old 0\n\n" + NOTE)
    assert req.old_size == 0 and req.proof == ()


def test_63_proof_lines_parse_64_do_not():
    assert len(parse_add_checkpoint(b"old 1\n" + (H + b"\n") * MAX_PROOF_LINES + b"\n" + NOTE).proof) == 63
    with pytest.raises(MalformedRequest, match="more than 63"):
        parse_add_checkpoint(b"old 1\n" + (H + b"\n") * 64 + b"\n" + NOTE)


def test_largest_old_size_and_one_more():
    assert parse_add_checkpoint(b"old 9223372036854775807\n\n" + NOTE).old_size == (1 << 63) - 1
    with pytest.raises(MalformedRequest, match="exceeds"):
        parse_add_checkpoint(b"old 9223372036854775808\n\n" + NOTE)


@pytest.mark.parametrize("body", [
    b"",
    b"\n",
    b"old 5",                                    # no newline at all
    b"old 5\n",                                  # no empty line
    b"old 5\n" + NOTE,                           # the checkpoint's first line taken as a proof line
    b"old 5\n\n",                                # no checkpoint
    b"old\n\n" + NOTE,
    b"old \n\n" + NOTE,
    b"old  5\n\n" + NOTE,                        # two spaces
    b"old 5 \n\n" + NOTE,                        # trailing space
    b"old 05\n\n" + NOTE,                        # leading zero
    b"old 00\n\n" + NOTE,
    b"old +5\n\n" + NOTE,
    b"old -1\n\n" + NOTE,
    b"old 0x10\n\n" + NOTE,
    b"old 5\r\n\r\n" + NOTE,                     # CRLF
    b"Old 5\n\n" + NOTE,
    b"OLD 5\n\n" + NOTE,
    b"old\t5\n\n" + NOTE,
    b"old \xd9\xa5\n\n" + NOTE,                  # ARABIC-INDIC DIGIT FIVE
    b"old 5\nold 5\n\n" + NOTE,
    b"old 5\n" + H[:-1] + b"\n\n" + NOTE,        # padding missing
    b"old 5\n" + H + b"=\n\n" + NOTE,            # too long
    b"old 5\n" + H.replace(b"A", b"-") + b"\n\n" + NOTE,  # URL-safe alphabet
    b"old 5\n" + base64.b64encode(bytes(31)) + b"\n\n" + NOTE,
    b"old 5\n" + base64.b64encode(bytes(33)) + b"\n\n" + NOTE,
    b"old 5\n" + H[:-2] + b"B=\n\n" + NOTE,      # non-canonical trailing bits
    b"old 5\n " + H + b"\n\n" + NOTE,
    b"old 5\n" + H + b"\r\n\n" + NOTE,
    b"old 5\n\n" + NOTE.replace(b"\n\n", b"\n"),  # note without its blank line
    b"old 5\n\n" + NOTE[:-1],                    # signature line not newline-terminated
    b"old 5\n\n" + NOTE.replace(b"\xe2\x80\x94 ", b"- "),
    b"old 5\n\n" + NOTE.replace(b"\n20\n", b"\n020\n"),   # checkpoint size with a leading zero
    b"old 5\n\n" + NOTE.replace(b"\n20\n", b"\n\n20\n"),  # empty line inside the checkpoint text
    b"old 5\n\n" + b"only text\n\n" + NOTE.split(b"\n\n")[1],  # a note whose text is not a checkpoint
    b"old 5\n\n" + NOTE.replace(b"log", b"l\x00g", 1),  # control character
    b"old 5\n\n" + NOTE.replace(b"log", b"l\xffg", 1),  # not UTF-8
    b"old 5\n\n\n" + NOTE,                       # one empty line too many
])
def test_malformed_bodies_are_refused(body):
    with pytest.raises(MalformedRequest):
        parse_add_checkpoint(body)


def test_size_cap_is_checked_before_anything_else():
    with pytest.raises(RequestTooLarge):
        parse_add_checkpoint(b"x" * (MAX_BODY + 1))
    with pytest.raises(RequestTooLarge):
        parse_add_checkpoint(b"old 1\n\n" + NOTE, max_body=len(NOTE))


def test_long_lines_are_refused_without_scanning_for_their_end():
    with pytest.raises(MalformedRequest, match="longer than"):
        parse_add_checkpoint(b"old " + b"1" * 5000 + b"\n\n" + NOTE)
    with pytest.raises(MalformedRequest, match="longer than"):
        parse_add_checkpoint(b"old 1\n" + b"A" * 5000 + b"\n\n" + NOTE)


# --- property tests: whatever the bytes, the parser answers AddCheckpoint or MalformedRequest --------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = [encode_add_checkpoint(13, LOG.proof(13, 20), NOTE), encode_add_checkpoint(0, [], LOG.note(0)),
         encode_add_checkpoint(20, [], LOG.note(20, ("ext one", "ext two")))]


def _parse_or_refuse(body: bytes) -> AddCheckpoint | None:
    try:
        return parse_add_checkpoint(body)
    except MalformedRequest:
        return None


@st.composite
def mutated(draw) -> bytes:
    body = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(0, len(body) - 1)))
        if op == "flip" and body:
            body[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            body[i:i] = draw(st.sampled_from([b"\n", b" ", b"=", b"0", b"\r", b"\x00", b"\xe2\x80\x94 ", b"A"]))
        elif op == "delete" and body:
            del body[i]
        elif op == "truncate":
            del body[i:]
    return bytes(body)


@st.composite
def structured(draw) -> bytes:
    """Bodies shaped like requests: old-ish first lines, hash-ish lines, then a real or broken note."""
    old = draw(st.one_of(st.integers(0, 2**64).map(lambda n: b"old %d" % n),
                         st.binary(max_size=30).map(lambda b: b"old " + b),
                         st.text(max_size=12).map(lambda s: s.encode())))
    lines = draw(st.lists(st.one_of(st.binary(min_size=0, max_size=40).map(base64.b64encode),
                                    st.binary(max_size=50)), max_size=66))
    note = draw(st.one_of(st.sampled_from([NOTE, LOG.note(0), b""]), st.binary(max_size=200)))
    return old + b"\n" + b"".join(line + b"\n" for line in lines) + b"\n" + note


@FUZZ
@given(body=st.binary(max_size=600))
def test_arbitrary_bytes_never_crash_the_parser(body):
    _parse_or_refuse(body)


@FUZZ
@given(body=mutated())
def test_mutated_requests_never_crash_the_parser(body):
    req = _parse_or_refuse(body)
    if req is not None:  # whatever survived is still a request of the spec's shape
        assert encode_add_checkpoint(req.old_size, req.proof, req.note) == body


@FUZZ
@given(body=structured())
def test_structured_garbage_never_crashes_the_parser(body):
    _parse_or_refuse(body)


@given(old=st.integers(0, (1 << 63) - 1), proof=st.lists(st.binary(min_size=32, max_size=32), max_size=63))
@settings(max_examples=100, deadline=None)
def test_encode_then_parse_round_trips(old, proof):
    req = parse_add_checkpoint(encode_add_checkpoint(old, proof, NOTE))
    assert (req.old_size, list(req.proof), req.note) == (old, proof, NOTE)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return make_client(tmp_path_factory.mktemp("fuzz") / "w", [LOG])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=st.binary(max_size=600))
def test_arbitrary_bytes_over_http_are_only_400(client, body):
    resp = client.post("/add-checkpoint", data=body)
    assert resp.status_code == 400, resp.data
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8" and resp.data.endswith(b"\n")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=st.one_of(mutated(), structured()))
def test_fuzzed_requests_over_http_never_500(client, body):
    resp = client.post("/add-checkpoint", data=body)
    assert resp.status_code in {200, 400, 403, 404, 409, 413, 422}, resp.data
