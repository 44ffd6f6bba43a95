"""Malformed and non-canonical encodings (docs/DESIGN.md §4: one valid encoding per value).

A second encoding of the same value is how parser-differential attacks start (two implementations
reading different things from one signed blob, or a log holding two leaves for one bundle). Each
variant below is logged by the distributor, and several are even re-signed by the anchor and the
operator, so only the encoding rule stops them.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from tests.attacks.helpers import assert_next_epoch_refused, client_refuses, replace_bundle
from tests.attacks.simulator import SimResponse, Simulator
from tests.factory import World, fleet
from verifier.bundle import Bundle, countersignature_message, parse_bundle
from verifier.errors import ConsistencyError, FormatError
from verifier.signatures import SignatureEntry

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def noncanonical_b64(data: bytes) -> str:
    """Base64 of ``data`` with the unused trailing bits set: decodes to the same bytes."""
    text = base64.b64encode(data).decode()
    assert text.endswith("="), "needs padding to have unused bits"
    i = len(text.rstrip("=")) - 1
    text = text[:i] + _B64[_B64.index(text[i]) | 1] + text[i + 1 :]
    assert base64.b64decode(text) == data
    return text


def resigned(world: World, statement: bytes, keyset: bytes) -> bytes:
    """A bundle whose (possibly malformed) statement the anchor signed and the operator countersigned."""
    a_sig = world.anchor.sign(statement)
    c_sig = world.countersigner.sign(countersignature_message(statement, [a_sig]))
    return Bundle(statement, keyset, (SignatureEntry.make("anchor", world.anchor.public_key, a_sig),
                                      SignatureEntry.make("countersigner", world.countersigner.public_key,
                                                          c_sig))).encode()


def _space(sim: Simulator, bundle: bytes) -> bytes:
    assert bundle.startswith(b'{"format":')
    return b'{ "format":' + bundle[len(b'{"format":'):]


def _duplicate_key(sim: Simulator, bundle: bytes) -> bytes:
    return b'{"format":"fleetkeys/bundle/v1",' + bundle[1:]


def _float(sim: Simulator, bundle: bytes) -> bytes:
    return re.sub(rb'"key_id":(\d+)', rb'"key_id":\1.0', bundle, count=1)


def _exponent(sim: Simulator, bundle: bytes) -> bytes:
    return re.sub(rb'"key_id":(\d+)', rb'"key_id":\1e0', bundle, count=1)


def _escaped_key(sim: Simulator, bundle: bytes) -> bytes:
    return bundle.replace(b'"format"', b'"\\u0066ormat"', 1)


def _unsorted_keys(sim: Simulator, bundle: bytes) -> bytes:
    obj = json.loads(bundle)
    return json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":")).encode()


def _noncanonical_b64_signature(sim: Simulator, bundle: bytes) -> bytes:
    sig = parse_bundle(bundle).signatures[0].sig
    canonical = base64.b64encode(sig)
    assert canonical in bundle
    return bundle.replace(canonical, noncanonical_b64(sig).encode())


def _nonminimal_varint(sim: Simulator, bundle: bytes) -> bytes:
    # "08 01" (ciphersuite 1) re-encoded as "08 81 00": the same value, one byte longer. Re-signed.
    b = parse_bundle(bundle)
    assert b.statement.startswith(b"\x08\x01\x12")
    return resigned(sim.world, b"\x08\x81\x00" + b.statement[2:], b.keyset)


def _nonminimal_epoch_varint(sim: Simulator, bundle: bytes) -> bytes:
    b = parse_bundle(bundle)
    epoch_msg = b"\x22\x02\x08\x02"
    assert epoch_msg in b.statement
    return resigned(sim.world, b.statement.replace(epoch_msg, b"\x22\x03\x08\x82\x00"), b.keyset)


def _statement_trailing_byte(sim: Simulator, bundle: bytes) -> bytes:
    b = parse_bundle(bundle)
    return resigned(sim.world, b.statement + b"\x00", b.keyset)


def _noncanonical_keyset(sim: Simulator, bundle: bytes) -> bytes:
    # The anchor signs the digest of a keyset with a space in it: signed, but not the one encoding.
    keyset = parse_bundle(bundle).keyset.replace(b'{"epoch"', b'{ "epoch"', 1)
    return resigned(sim.world, sim.world.statement(keyset, 2), keyset)


#: An entry that does not start with the canonical ``{"format":"fleetkeys/bundle/v1"`` is not even read
#: as a bundle by the client (it dispatches on that prefix): refused as a log entry of no known kind.
NOT_A_BUNDLE = "log entry is neither a fleetkeys bundle nor a trust-root rotation"

MANGLES = [
    (_space, "bundle: not canonical JSON", NOT_A_BUNDLE),
    (_unsorted_keys, "bundle: not canonical JSON", NOT_A_BUNDLE),
    (_escaped_key, "bundle: not canonical JSON", NOT_A_BUNDLE),
    (_duplicate_key, "bundle: JSON: duplicate object key 'format'", None),
    (_float, "bundle: JSON: non-integer number", None),
    (_exponent, "bundle: JSON: non-integer number", None),
    (_noncanonical_b64_signature, "bundle.signatures[0].sig: non-canonical base64", None),
    (_nonminimal_varint, "statement: non-minimal varint for ciphersuite", None),
    (_nonminimal_epoch_varint, "statement: non-minimal varint for epoch.inner", None),
    (_statement_trailing_byte, "statement: 1 bytes of trailing data", None),
    (_noncanonical_keyset, "keyset: not canonical JSON", None),
]


@pytest.mark.parametrize(("mangle", "fragment", "client_fragment"), MANGLES,
                         ids=[m.__name__.strip("_").replace("_", "-") for m, _, _ in MANGLES])
def test_noncanonical_bundle_is_refused(sim: Simulator, state_dir: Path, mangle, fragment: str,
                                        client_fragment: str | None) -> None:
    sim.add_epoch()
    honest = sim.world.bundle(sim.make_keyset(), 2)
    assert_next_epoch_refused(sim, state_dir, mangle(sim, honest), FormatError, fragment,
                              client_fragment=client_fragment)


def test_other_encoding_of_a_logged_bundle_is_refused(sim: Simulator, state_dir: Path) -> None:
    """The log holds one encoding of epoch 2; a CDN serves another one in its place (the same values: a
    signature in base64 with its unused bits set; or the bundle as base64 text with such bits, as the old
    JSON API carried it). The client hashes the bytes it was served, so a second encoding of a logged value
    is not the logged leaf and is refused before it is parsed."""
    sim.add_epoch()
    client = sim.client(state_dir)
    client.refresh()
    # An epoch-2 bundle whose length leaves unused bits in its base64 (fixed seeds: deterministic).
    bundle = next(b for n in range(1, 4)
                  if len(b := sim.world.bundle(sim.make_keyset(2, [fleet(f"fleet-{i}") for i in range(n)]), 2)) % 3)
    sim.publish_bundle(bundle)
    for other in (_noncanonical_b64_signature(sim, bundle), noncanonical_b64(bundle).encode()):
        assert other != bundle
        sim.override("/entry/001", SimResponse(200, other))
        with client_refuses(client, ConsistencyError, "the entries are not the log's"):
            client.refresh()
    sim.override("/entry/001", SimResponse(200, bundle))
    assert client.refresh().epoch == 2  # the logged encoding itself verifies


@pytest.mark.parametrize(("smuggled", "client_fragment"), [
    (lambda honest: b'{"comment":"ignore me",' + honest[1:], NOT_A_BUNDLE),     # sorts first, as canonical JSON puts it
    (lambda honest: honest[:-1] + b',"zzz":"ignore me"}', None),                 # sorts last: read as a bundle
], ids=["field-first", "field-last"])
def test_bundle_with_unknown_field_is_refused(sim: Simulator, state_dir: Path, smuggled,
                                              client_fragment: str | None) -> None:
    sim.add_epoch()
    honest = sim.world.bundle(sim.make_keyset(), 2)
    forged = smuggled(honest)
    name = "comment" if b'"comment"' in forged else "zzz"
    assert_next_epoch_refused(sim, state_dir, forged, FormatError, f"bundle: unknown field(s) [{name!r}]",
                              client_fragment=client_fragment)


def test_bundle_with_countersigner_before_anchor_is_refused(sim: Simulator, state_dir: Path) -> None:
    sim.add_epoch()
    honest = sim.world.bundle(sim.make_keyset(), 2)
    reordered = replace_bundle(honest, signatures=tuple(reversed(parse_bundle(honest).signatures)))
    assert_next_epoch_refused(sim, state_dir, reordered, FormatError,
                              "anchor entries must come before countersigner entries")
