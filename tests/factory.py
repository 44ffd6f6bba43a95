"""Deterministic test material: fixed-seed keys, trust roots, keysets and bundles.

Everything here is derived from fixed seeds so golden vectors (``bundles/vectors``) are reproducible
byte for byte. Only tests, vectors and benchmarks use it; it signs with in-memory seeds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from verifier import ed25519
from verifier.bundle import Bundle, countersignature_message
from verifier.checkpoint import Checkpoint, sign_checkpoint
from verifier.cosignature import CosignatureSigner, add_cosignatures
from verifier.keyset import GENESIS_PREVIOUS, Fleet, TrustRootRef, encode_keyset, parse_time
from verifier.merkle import leaf_hash, root
from verifier.note import NoteSigner, NoteVerifier
from verifier.signatures import KeyGroup, SignatureEntry
from verifier.statement import Statement
from verifier.trustroot import LogConfig, encode_envelope, encode_trust_root_body, load_trust_root, parse_trust_root_body

NAMESPACE = "example.messenger/backup-vaults/v1"
ORIGIN = "log.fleetkeys.example/v1"
T0 = parse_time("2026-11-25T10:00:00Z", "t0")
DAY = 86400
#: Test material stays valid for decades so suites that run servers on the real clock do not expire.
YEAR = 365 * DAY


def seed(label: str) -> bytes:
    return hashlib.sha256(b"fleetkeys test seed\n" + label.encode()).digest()


class SeedSigner:
    """An in-memory :class:`keys.Signer` from a label-derived seed."""

    def __init__(self, label: str) -> None:
        self._seed = seed(label)
        self.public_key = ed25519.public_key_from_seed(self._seed)

    def sign(self, message: bytes) -> bytes:
        return ed25519.sign_with_seed(self._seed, message)


def fleet_key(label: str, algorithm: str = "x25519") -> bytes:
    s = seed("fleet " + label)
    if algorithm == "ed25519":
        return ed25519.public_key_from_seed(s)
    if algorithm == "x25519":
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return X25519PrivateKey.from_private_bytes(s).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k = ec.derive_private_key(int.from_bytes(s, "big") % (2**255), ec.SECP256R1())
    return k.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def fleet(fleet_id: str, status: str = "active", algorithm: str = "x25519") -> Fleet:
    return Fleet(fleet_id, algorithm, fleet_key(fleet_id, algorithm), T0 - DAY, T0 + 20 * YEAR, status)


@dataclass
class World:
    """A complete fixed-seed deployment: keys, trust root, and helpers to make signed artifacts."""

    anchor: SeedSigner = field(default_factory=lambda: SeedSigner("anchor"))
    countersigner: SeedSigner = field(default_factory=lambda: SeedSigner("countersigner"))
    log: SeedSigner = field(default_factory=lambda: SeedSigner("log"))
    freshness: SeedSigner = field(default_factory=lambda: SeedSigner("freshness"))
    witness: SeedSigner = field(default_factory=lambda: SeedSigner("witness"))
    namespace: str = NAMESPACE
    origin: str = ORIGIN
    witness_threshold: int = 0
    #: How many witness keys the trust root lists: ``witness.example/w1`` (the ``witness`` key), then
    #: ``witness.example/w2`` … from the seeds ``"witness 2"`` …
    witness_count: int = 1

    def __post_init__(self) -> None:
        self.log_note = NoteSigner.from_signer(self.origin, self.log)
        self.freshness_cosigner = CosignatureSigner(self.origin + "/freshness", self.freshness)
        signers = [self.witness, *(SeedSigner(f"witness {i}") for i in range(2, self.witness_count + 1))]
        self.witness_cosigners = [CosignatureSigner(f"witness.example/w{i}", w) for i, w in enumerate(signers, 1)]
        self.witness_cosigner = self.witness_cosigners[0]

    def witness_group(self, threshold: int | None = None) -> KeyGroup:
        """The trust root's ``witnesses``: every witness key, ``threshold`` (default the world's)."""
        return KeyGroup(tuple(c.verifier for c in self.witness_cosigners),
                        self.witness_threshold if threshold is None else threshold)

    def trust_root_body(self, version: int = 1, anchors=None, countersigners=None, *,
                        witness_threshold: int | None = None) -> bytes:
        anchors = anchors or [self.anchor]
        countersigners = countersigners or [self.countersigner]
        return encode_trust_root_body(
            version=version,
            namespace=self.namespace,
            anchors=KeyGroup(tuple(NoteVerifier.from_public_key(f"anchor{i}.example", a.public_key)
                                   for i, a in enumerate(anchors)), 1),
            countersigners=KeyGroup(tuple(NoteVerifier.from_public_key(f"operator{i}.example", c.public_key)
                                          for i, c in enumerate(countersigners)), 1),
            log=LogConfig(self.origin, self.log_note.verifier, self.freshness_cosigner.verifier, 3600),
            witnesses=self.witness_group(witness_threshold),
            expires_at=T0 + 25 * YEAR,
        )

    def trust_root_bytes(self) -> bytes:
        return encode_envelope(self.trust_root_body())

    def trust_root(self):
        return load_trust_root(self.trust_root_bytes())

    def root_ref(self, body: bytes | None = None) -> TrustRootRef:
        """The name of a trust root (default: this world's v1 root) as a keyset carries it."""
        body = body if body is not None else self.trust_root_body()
        return TrustRootRef(parse_trust_root_body(body).version, hashlib.sha256(body).digest())

    def keyset(self, epoch: int, fleets, previous: bytes | None = None, issued_at: int = T0,
               expires_at: int | None = None, root: TrustRootRef | None | bool = True) -> bytes:
        """A canonical keyset naming ``root`` (``True``: the world's v1 root; ``None``: no name, as
        keysets logged before the field existed)."""
        return encode_keyset(epoch=epoch, namespace=self.namespace, issued_at=issued_at + epoch,
                             expires_at=expires_at if expires_at is not None else T0 + 20 * YEAR,
                             previous=previous if previous is not None else GENESIS_PREVIOUS,
                             fleets=fleets, trust_root=self.root_ref() if root is True else root or None)

    def statement(self, keyset: bytes, epoch: int, ciphersuite: int = 1) -> bytes:
        return Statement(ciphersuite, self.namespace, (T0 + epoch) * 1000, epoch,
                         hashlib.sha256(keyset).digest()).encode()

    def bundle(self, keyset: bytes, epoch: int, *, anchor=None, countersigner=None, ciphersuite: int = 1) -> bytes:
        anchor = anchor or self.anchor
        countersigner = countersigner or self.countersigner
        st = self.statement(keyset, epoch, ciphersuite)
        a_sig = anchor.sign(st)
        c_sig = countersigner.sign(countersignature_message(st, [a_sig]))
        return Bundle(st, keyset, (SignatureEntry.make("anchor", anchor.public_key, a_sig),
                                   SignatureEntry.make("countersigner", countersigner.public_key, c_sig))).encode()

    def chain(self, n: int) -> list[bytes]:
        """Bundles for epochs 1..n with a correct ``previous`` chain."""
        out, prev = [], None
        for epoch in range(1, n + 1):
            ks = self.keyset(epoch, [fleet(f"fleet-{i}") for i in range(1, epoch + 1)], previous=prev)
            prev = hashlib.sha256(ks).digest()
            out.append(self.bundle(ks, epoch))
        return out

    def checkpoint(self, entries: list[bytes], timestamp: int = T0, *, witness: bool = False,
                   witness_times: dict[int, int] | None = None, freshness: bool = True) -> bytes:
        """The signed checkpoint of ``entries``: the log's freshness cosignature at ``timestamp`` (unless
        ``freshness`` is false), witness 1's at ``timestamp`` if ``witness``, and witness ``i``'s (index
        into :attr:`witness_cosigners`) at ``witness_times[i]``."""
        cp = Checkpoint(self.origin, len(entries), root([leaf_hash(e) for e in entries]))
        signed = sign_checkpoint(cp, self.log_note)
        cosigs = [self.freshness_cosigner.cosign(cp.body(), timestamp)] if freshness else []
        times = dict(witness_times or {})
        if witness:
            times.setdefault(0, timestamp)
        cosigs += [self.witness_cosigners[i].cosign(cp.body(), t) for i, t in sorted(times.items())]
        return add_cosignatures(signed, cosigs) if cosigs else signed
