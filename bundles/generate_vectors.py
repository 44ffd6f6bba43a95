"""Generate the golden vectors in ``bundles/vectors/`` from fixed seeds (``tests.factory.World``).

Run from the repository root::

    python -m bundles.generate_vectors            # (re)write bundles/vectors/
    python -m bundles.generate_vectors --check    # compare only; exit 1 naming every differing file

Everything is derived from fixed seeds and fixed times (Ed25519 signatures are deterministic), so two
runs give identical bytes. Before anything is written, every case is run through
:func:`verifier.update.verify_update` and must give exactly its expected outcome; the states the
valid cases produce are the saved states later cases start from.

Layout (paths relative to ``bundles/vectors/``; see ``bundles/FORMAT.md`` §13)::

    trust-root.json                 the bootstrap trust root (envelope, no signatures)
    log/bundle-epoch-<N>.json       the three valid bundles of the main log (entries 0, 1, 2)
    log/checkpoint-size-<S>.txt     the main log's checkpoints, with the log's freshness cosignature
    log/proof-epoch-<N>-size-<S>.txt c2sp.org/tlog-proof@v1 for bundle N in the checkpoint of size S
    log/consistency-<A>-<B>.json    {"from","to","proof"} as served by /api/v1/proof/consistency
    state/after-epoch-<N>.json      the client state after the valid update to epoch N
    cases/<name>/...                files specific to one case
    manifest.json                   every case: files, starting state, now, expected outcome
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.factory import DAY, T0, SeedSigner, World, fleet, fleet_key
from verifier.bundle import MAX_BUNDLE_SIZE, Bundle, countersignature_message, parse_bundle
from verifier.checkpoint import Checkpoint
from verifier.cjson import dumps_canonical
from verifier.cosignature import add_cosignatures
from verifier.errors import VerificationError
from verifier.keyset import Fleet, TrustRootRef
from verifier.merkle import consistency_proof, inclusion_proof, leaf_hash, leaves_reader
from verifier.note import sign_note
from verifier.signatures import SignatureEntry
from verifier.statement import Statement
from verifier.tlogproof import TlogProof
from verifier.trustroot import load_trust_root
from verifier.update import ClientState, VerifiedUpdate, verify_update

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"
MANIFEST = "manifest.json"
OTHER_NAMESPACE = "other.example/backup-vaults/v1"
OTHER_ORIGIN = "log.other.example/v1"

#: Freshness-cosignature times of the main log's checkpoints of size 1, 2, 3, and the client clock
#: used to accept each (one minute later).
FRESH = {1: T0 + 600, 2: T0 + 1200, 3: T0 + 1800}
NOW = {size: t + 60 for size, t in FRESH.items()}


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def varint(n: int) -> bytes:
    """Protobuf base-128 varint, least significant group first (minimal unless padded by the caller)."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


@dataclass
class Log:
    """An in-memory log: entries, and signed checkpoints / proofs over prefixes of them."""

    world: World
    entries: list[bytes]

    def checkpoint(self, size: int, timestamp: int) -> bytes:
        return self.world.checkpoint(self.entries[:size], timestamp)

    def proof(self, index: int, size: int, checkpoint: bytes) -> bytes:
        reader = leaves_reader([leaf_hash(e) for e in self.entries[:size]])
        return TlogProof(index, tuple(inclusion_proof(index, size, reader)), checkpoint).encode()

    def consistency(self, size1: int, size2: int) -> bytes:
        reader = leaves_reader([leaf_hash(e) for e in self.entries[:size2]])
        hashes = consistency_proof(size1, size2, reader)
        return dumps_canonical({"from": size1, "proof": [base64.b64encode(h).decode() for h in hashes], "to": size2})


def load_consistency(data: bytes | None) -> list[bytes]:
    """The proof hashes of a ``{"from","to","proof"}`` consistency file (none for ``None``)."""
    if data is None:
        return []
    return [base64.b64decode(h, validate=True) for h in json.loads(data)["proof"]]


@dataclass
class Vectors:
    """The files being generated and the manifest cases referring to them."""

    trust_root: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)

    def add(self, path: str, data: bytes) -> str:
        if self.files.get(path, data) != data:
            raise RuntimeError(f"vector file {path} generated twice with different contents")
        self.files[path] = data
        return path

    def case(self, name: str, description: str, *, bundle: str, proof: str, checkpoint: str, now: int,
             expect: str, consistency: str | None = None, state: str | None = None,
             result_state: str | None = None, reason: str | None = None) -> None:
        """Record a case after checking that the verifier gives exactly ``expect``.

        For a failure, ``reason`` must occur in the error message, so the case fails at the check it
        was built for (a generation-time guard; messages are not part of the format). For an ``ok``
        case the expected result is recorded, and the new state written to ``result_state``.
        """
        files = {"bundle": bundle, "checkpoint": checkpoint, "proof": proof, "trust_root": "trust-root.json"}
        if consistency is not None:
            files["consistency"] = consistency
        entry: dict[str, Any] = {"name": name, "description": description, "files": files, "state": state,
                                 "now": now, "expect": expect}
        outcome, result = run_case(self.files, entry)
        if outcome != expect:
            raise RuntimeError(f"vector {name}: expected {expect}, the verifier gave {outcome}: {result}")
        if isinstance(result, VerificationError):
            if reason is None or reason not in str(result):
                raise RuntimeError(f"vector {name}: failed for another reason than {reason!r}: {result}")
        else:
            entry["result"] = {"epoch": result.epoch, "fleets": [f.fleet_id for f in result.fleets],
                               "index": result.index, "changed": result.changed}
            if result_state is not None:
                entry["result"]["state"] = self.add(result_state, result.state.to_bytes())
        self.cases.append(entry)

    def manifest(self) -> bytes:
        return (json.dumps({"format": "fleetkeys/vectors/v1", "cases": self.cases}, indent=2, ensure_ascii=False)
                + "\n").encode()


def run_case(files: dict[str, bytes] | Callable[[str], bytes],
             entry: dict[str, Any]) -> tuple[str, VerifiedUpdate | VerificationError]:
    """Run one manifest case; return ``(outcome, the VerifiedUpdate or the error raised)``.

    ``files`` maps a vector path to its bytes (a dict, or a function reading the vectors directory).
    ``outcome`` is ``"ok"`` or the exact class name of the :class:`VerificationError` raised.
    """
    read = files.__getitem__ if isinstance(files, dict) else files
    paths = entry["files"]
    state = ClientState.from_bytes(read(entry["state"])) if entry["state"] else ClientState()
    try:
        update = verify_update(read(paths["bundle"]), read(paths["proof"]), read(paths["checkpoint"]),
                               trust_root=load_trust_root(read(paths["trust_root"])), state=state, now=entry["now"],
                               consistency=load_consistency(read(paths["consistency"]) if "consistency" in paths
                                                            else None))
    except VerificationError as exc:
        return type(exc).__name__, exc
    return "ok", update


def resign(world: World, statement: bytes, keyset: bytes) -> bytes:
    """A bundle over exactly these statement and keyset bytes, signed by the world's trusted keys."""
    a_sig = world.anchor.sign(statement)
    c_sig = world.countersigner.sign(countersignature_message(statement, [a_sig]))
    return Bundle(statement, keyset, (SignatureEntry.make("anchor", world.anchor.public_key, a_sig),
                                      SignatureEntry.make("countersigner", world.countersigner.public_key,
                                                          c_sig))).encode()


def build() -> dict[str, bytes]:
    """Return every vector file (path relative to ``bundles/vectors/`` -> bytes), manifest included."""
    w = World()
    v = Vectors(w.trust_root_bytes())
    v.add("trust-root.json", v.trust_root)

    # The main log: epoch 1 (fleet-1), epoch 2 (fleet-2 added, a P-256 key), epoch 3 (fleet-1 revoked).
    ks1 = w.keyset(1, [fleet("fleet-1")])
    ks2 = w.keyset(2, [fleet("fleet-1"), fleet("fleet-2", algorithm="p256")], previous=sha256(ks1))
    ks3 = w.keyset(3, [fleet("fleet-1", status="revoked"), fleet("fleet-2", algorithm="p256")],
                   previous=sha256(ks2))
    keysets = {1: ks1, 2: ks2, 3: ks3}
    bundles = {n: w.bundle(ks, n) for n, ks in keysets.items()}
    log = Log(w, [bundles[1], bundles[2], bundles[3]])
    b = {n: v.add(f"log/bundle-epoch-{n}.json", data) for n, data in bundles.items()}
    cps = {s: log.checkpoint(s, FRESH[s]) for s in (1, 2, 3)}
    cp = {s: v.add(f"log/checkpoint-size-{s}.txt", data) for s, data in cps.items()}

    def proof(epoch: int, size: int) -> str:
        return v.add(f"log/proof-epoch-{epoch}-size-{size}.txt", log.proof(epoch - 1, size, cps[size]))

    def consistency(size1: int, size2: int) -> str:
        return v.add(f"log/consistency-{size1}-{size2}.json", log.consistency(size1, size2))

    # ---- valid updates ---------------------------------------------------------------------------
    v.case("valid-epoch-1", "First run (no saved state): epoch 1 with fleet-1 (x25519), entry 0 of a "
           "log of size 1.", bundle=b[1], proof=proof(1, 1), checkpoint=cp[1], now=NOW[1], expect="ok",
           result_state="state/after-epoch-1.json")
    v.case("valid-epoch-2", "Next epoch: fleet-2 (P-256) added; previous = SHA-256 of epoch 1's keyset; "
           "consistency proof 1 -> 2.", bundle=b[2], proof=proof(2, 2), checkpoint=cp[2],
           consistency=consistency(1, 2), state="state/after-epoch-1.json", now=NOW[2], expect="ok",
           result_state="state/after-epoch-2.json")
    v.case("valid-epoch-3", "Next epoch: fleet-1 revoked (only fleet-2 is returned as usable); "
           "consistency proof 2 -> 3.", bundle=b[3], proof=proof(3, 3), checkpoint=cp[3],
           consistency=consistency(2, 3), state="state/after-epoch-2.json", now=NOW[3], expect="ok",
           result_state="state/after-epoch-3.json")
    v.case("valid-fresh-client-latest", "A client with no saved state may start at the latest epoch "
           "(entry 2 of a log of size 3).", bundle=b[3], proof=proof(3, 3), checkpoint=cp[3], now=NOW[3],
           expect="ok")
    cs2_bundle = w.bundle(ks1, 1, ciphersuite=2)
    cs2_log = Log(w, [cs2_bundle])
    cs2_cp = cs2_log.checkpoint(1, FRESH[1])
    v.case("valid-ciphersuite-2", "Epoch 1 with a ciphersuite 2 (bincode) statement, in its own log of "
           "size 1.", bundle=v.add("cases/valid-ciphersuite-2/bundle.json", cs2_bundle),
           proof=v.add("cases/valid-ciphersuite-2/proof.txt", cs2_log.proof(0, 1, cs2_cp)),
           checkpoint=v.add("cases/valid-ciphersuite-2/checkpoint.txt", cs2_cp), now=NOW[1], expect="ok")

    # ---- invalid bundles -------------------------------------------------------------------------
    # Each bad bundle is the only entry of its own log (size 1, checkpoint and proof valid), and the
    # client has no saved state, so the bundle is the only thing wrong.
    def bad_bundle(name: str, description: str, data: bytes, expect: str, reason: str) -> None:
        single = Log(w, [data])
        single_cp = single.checkpoint(1, FRESH[1])
        v.case(name, description, bundle=v.add(f"cases/{name}/bundle.json", data),
               proof=v.add(f"cases/{name}/proof.txt", single.proof(0, 1, single_cp)),
               checkpoint=v.add(f"cases/{name}/checkpoint.txt", single_cp), now=NOW[1], expect=expect,
               reason=reason)

    good = parse_bundle(bundles[1])
    st1 = good.statement

    attacker_fleet = Fleet("fleet-1", "x25519", fleet_key("attacker"), T0 - DAY, T0 + 365 * DAY, "active")
    bad_bundle("tampered-keyset", "fleet-1's key replaced by another valid X25519 key in the keyset bytes; "
               "statement and signatures unchanged: SHA-256(keyset) != statement digest (step 6).",
               Bundle(st1, w.keyset(1, [attacker_fleet]), good.signatures).encode(), "DigestError", "keyset SHA-256")

    st_tampered = Statement(1, w.namespace, (T0 + 1) * 1000 + 1, 1, sha256(ks1)).encode()
    bad_bundle("tampered-statement", "Statement timestamp changed by 1 ms (still canonical, still the right "
               "digest); signatures unchanged: the anchor signature fails (step 3).",
               Bundle(st_tampered, ks1, good.signatures).encode(), "ThresholdError", "trusted anchor key(s) signed")

    rogue = SeedSigner("rogue anchor")
    bad_bundle("unknown-anchor-key", "Statement signed by an anchor key not in the trust root (validly "
               "countersigned over that signature): 0 of 1 trusted anchor keys signed (step 3).",
               w.bundle(ks1, 1, anchor=rogue), "ThresholdError", "trusted anchor key(s) signed")

    extra = Bundle(st1, ks1, (good.signatures[0], SignatureEntry.make("anchor", rogue.public_key, rogue.sign(st1)),
                              SignatureEntry.make("countersigner", w.countersigner.public_key,
                                                  w.countersigner.sign(countersignature_message(
                                                      st1, [good.signatures[0].sig, rogue.sign(st1)])))))
    bad_bundle("extra-untrusted-signature", "The trusted anchor's signature, plus a second anchor entry by an "
               "untrusted key, all countersigned: the threshold is met, but a bundle carries only signatures "
               "that count (one encoding per keyset and signer set; FORMAT.md §5.3).", extra.encode(),
               "SignatureError", "verify under no trusted key")

    bad_bundle("missing-countersignature", "Only the anchor signature entry: the envelope requires at least "
               "one anchor and one countersigner entry (step 1, envelope).",
               Bundle(st1, ks1, good.signatures[:1]).encode(), "FormatError", "one countersigner entry")

    a_sig = w.anchor.sign(st1)
    second = SeedSigner("second anchor").sign(st1)
    c_other = w.countersigner.sign(countersignature_message(st1, [second]))
    bad_bundle("countersignature-other-anchor-signature", "The countersignature binds another anchor "
               "signature over the same statement (by a second, untrusted anchor key) than the one the bundle "
               "carries: the countersigner threshold fails (step 4).",
               Bundle(st1, ks1, (SignatureEntry.make("anchor", w.anchor.public_key, a_sig),
                                 SignatureEntry.make("countersigner", w.countersigner.public_key, c_other))).encode(),
               "ThresholdError", "trusted countersigner key(s) signed")

    obj = json.loads(bundles[1])
    bad_bundle("non-canonical-bundle-json", "The valid epoch 1 bundle re-serialised with a space after ':' "
               "and ',' (same values, signatures valid): only the canonical encoding is accepted (step 1).",
               json.dumps(obj, sort_keys=True, separators=(", ", ": ")).encode(), "FormatError",
               "bundle: not canonical JSON")

    other_ns = World(namespace=OTHER_NAMESPACE)
    ks_other = other_ns.keyset(1, [fleet("fleet-1")])
    bad_bundle("statement-namespace-mismatch", f"Statement and keyset for namespace {OTHER_NAMESPACE!r}, "
               "validly signed by the trusted anchor and countersigner: not the trust root's namespace "
               "(step 5).", other_ns.bundle(ks_other, 1), "MismatchError", "statement namespace")

    bad_bundle("keyset-namespace-mismatch", f"Statement for the trusted namespace over a keyset for "
               f"{OTHER_NAMESPACE!r} (digest matches): keyset namespace != statement namespace (step 7).",
               resign(w, w.statement(ks_other, 1), ks_other), "MismatchError", "but the statement signs")

    bad_bundle("keyset-epoch-mismatch", "Statement signs epoch 2 over the (valid) epoch 1 keyset: keyset "
               "epoch != statement epoch (step 7).", resign(w, w.statement(ks1, 2), ks1), "MismatchError",
               "but the statement signs")

    ks_wrong_root = w.keyset(1, [fleet("fleet-1")], root=TrustRootRef(1, hashlib.sha256(b"another v1 body").digest()))
    bad_bundle("keyset-names-another-root", "Epoch 1 keyset naming trust root v1 with another body digest, "
               "validly signed: the keyset is bound to a root that is not the one verifying it (FORMAT.md "
               "§3.3).", w.bundle(ks_wrong_root, 1), "MismatchError", "names trust root v1 with body SHA-256")
    ks_newer_root = w.keyset(1, [fleet("fleet-1")], root=TrustRootRef(2, hashlib.sha256(b"a v2 body").digest()))
    bad_bundle("keyset-names-newer-root", "Epoch 1 keyset naming trust root v2 while v1 is in force, validly "
               "signed: a rotation was not shown to this client (FORMAT.md §3.3).", w.bundle(ks_newer_root, 1),
               "TrustRootError", "a rotation was not shown")

    ns = w.namespace.encode()
    epoch_msg = b"\x08\x81\x00"  # epoch 1 as a two-byte varint: not minimal
    st_varint = (b"\x08\x01\x12" + varint(len(ns)) + ns + b"\x18" + varint((T0 + 1) * 1000)
                 + b"\x22" + varint(len(epoch_msg)) + epoch_msg + b"\x2a\x20" + sha256(ks1))
    bad_bundle("non-canonical-statement-varint", "Statement with epoch 1 encoded as the varint 81 00, "
               "re-signed so both signatures verify: not the one canonical encoding (step 5, parse).",
               resign(w, st_varint, ks1), "FormatError", "non-minimal varint for epoch.inner")

    ks_short = w.keyset(1, [fleet("fleet-1")], expires_at=T0 + 300)
    bad_bundle("expired-keyset", "Keyset expires_at = T0+300 s, client clock T0+660 s (checkpoint fresh): "
               "stale keyset, freeze attack (step 9).", w.bundle(ks_short, 1), "ExpiredError", "keyset epoch 1 expired")

    padded = bundles[1] + b" " * (MAX_BUNDLE_SIZE + 1 - len(bundles[1]))
    bad_bundle("oversized-bundle", f"The valid epoch 1 bundle padded with spaces to {MAX_BUNDLE_SIZE + 1} "
               "bytes: refused on size before anything is parsed (step 1).", padded, "SizeLimitError",
               f"bundle: {MAX_BUNDLE_SIZE + 1} bytes")

    # ---- invalid checkpoints and proofs ----------------------------------------------------------
    v.case("stale-checkpoint", f"The valid epoch 1 update, but the client clock is {3600 + 1} s after the "
           "log's freshness cosignature (max_age 3600): frozen or withheld log (step 10).",
           bundle=b[1], proof=proof(1, 1), checkpoint=cp[1], now=FRESH[1] + 3601, expect="ExpiredError",
           reason="checkpoint freshness cosignature")

    other_log = Log(World(origin=OTHER_ORIGIN, log=SeedSigner("other log"), freshness=SeedSigner("other freshness")),
                    [bundles[1]])
    other_cp = other_log.checkpoint(1, FRESH[1])
    v.case("checkpoint-other-log", f"Checkpoint of another log ({OTHER_ORIGIN!r}, its own log and freshness "
           "keys) that includes the valid epoch 1 bundle: no signature by the trusted log key (step 10).",
           bundle=b[1], proof=v.add("cases/checkpoint-other-log/proof.txt", other_log.proof(0, 1, other_cp)),
           checkpoint=v.add("cases/checkpoint-other-log/checkpoint.txt", other_cp), now=NOW[1],
           expect="SignatureError", reason="no signature by a known key")

    foreign = Checkpoint(OTHER_ORIGIN, 1, leaf_hash(bundles[1]))
    foreign_cp = add_cosignatures(sign_note(foreign.body(), [w.log_note]),
                                  [w.freshness_cosigner.cosign(foreign.body(), FRESH[1])])
    v.case("checkpoint-origin-mismatch", f"Checkpoint whose origin line is {OTHER_ORIGIN!r} but which the "
           "trusted log key signed (key reuse across logs): the origin is not the trusted one (step 10).",
           bundle=b[1], proof=v.add("cases/checkpoint-origin-mismatch/proof.txt",
                                    TlogProof(0, (), foreign_cp).encode()),
           checkpoint=v.add("cases/checkpoint-origin-mismatch/checkpoint.txt", foreign_cp), now=NOW[1],
           expect="MismatchError", reason="checkpoint origin")

    v.case("inclusion-proof-other-index", "Bundle epoch 1 (entry 0) with the tlog-proof of entry 1 in the "
           "checkpoint of size 3: the computed root is not the checkpoint's (step 11).",
           bundle=b[1], proof=proof(2, 3), checkpoint=cp[3], now=NOW[3], expect="ProofError",
           reason="computed root")

    v.case("inclusion-proof-other-checkpoint", "Bundle epoch 2 with its proof relative to the size 2 "
           "checkpoint while the checkpoint given is the size 3 one (step 11).",
           bundle=b[2], proof=proof(2, 2), checkpoint=cp[3], now=NOW[3], expect="ProofError",
           reason="another tree head")

    # ---- rollback, chain, equivocation, freshness replay, fork -----------------------------------
    v.case("rollback", "Client at epoch 3; the (validly signed and logged) epoch 1 bundle is offered with the "
           "latest checkpoint: older than the accepted epoch (step 8).",
           bundle=b[1], proof=proof(1, 3), checkpoint=cp[3], state="state/after-epoch-3.json", now=NOW[3],
           expect="RollbackError", reason="older than epoch 3")

    v.case("epoch-gap", "Client at epoch 1; epoch 3 offered: epoch 2 must be verified first so the "
           "previous-hash chain is checked (step 8).", bundle=b[3], proof=proof(3, 3), checkpoint=cp[3],
           consistency=consistency(1, 3), state="state/after-epoch-1.json", now=NOW[3], expect="ChainError",
           reason="skips epochs")

    ks2_broken = w.keyset(2, [fleet("fleet-1"), fleet("fleet-2", algorithm="p256")],
                          previous=sha256(b"not epoch 1's keyset"))
    broken_log = Log(w, [bundles[1], w.bundle(ks2_broken, 2)])
    broken_cp = broken_log.checkpoint(2, FRESH[2])
    v.case("broken-chain", "Client at epoch 1; an epoch 2 keyset whose previous is not SHA-256 of epoch 1's "
           "keyset, logged after epoch 1 (step 8).",
           bundle=v.add("cases/broken-chain/bundle.json", broken_log.entries[1]),
           proof=v.add("cases/broken-chain/proof.txt", broken_log.proof(1, 2, broken_cp)),
           checkpoint=v.add("cases/broken-chain/checkpoint.txt", broken_cp),
           consistency=v.add("cases/broken-chain/consistency.json", broken_log.consistency(1, 2)),
           state="state/after-epoch-1.json", now=NOW[2], expect="ChainError", reason="(forked history)")

    ks1_other = w.keyset(1, [fleet("fleet-1"), fleet("rogue-fleet")])
    equiv_log = Log(w, [bundles[1], w.bundle(ks1_other, 1)])
    equiv_cp = equiv_log.checkpoint(2, FRESH[2])
    v.case("equivocation", "Client at epoch 1; a second, different epoch 1 keyset (validly signed, logged "
           "after the first): the same epoch with another digest (step 8).",
           bundle=v.add("cases/equivocation/bundle.json", equiv_log.entries[1]),
           proof=v.add("cases/equivocation/proof.txt", equiv_log.proof(1, 2, equiv_cp)),
           checkpoint=v.add("cases/equivocation/checkpoint.txt", equiv_cp),
           consistency=v.add("cases/equivocation/consistency.json", equiv_log.consistency(1, 2)),
           state="state/after-epoch-1.json", now=NOW[2], expect="RollbackError", reason="(equivocation)")

    replay_cp = log.checkpoint(2, FRESH[1])
    v.case("replayed-freshness", "Client at epoch 2 (freshness time T0+1200); the same size 2 tree head with "
           "an older freshness cosignature (T0+600), still within max_age: a replayed checkpoint (step 10).",
           bundle=b[2], proof=v.add("cases/replayed-freshness/proof.txt", log.proof(1, 2, replay_cp)),
           checkpoint=v.add("cases/replayed-freshness/checkpoint.txt", replay_cp),
           state="state/after-epoch-2.json", now=NOW[2], expect="RollbackError", reason="replayed checkpoint")

    fork_log = Log(w, [b"a different entry 0 shown to this client only", bundles[2]])
    fork_cp = fork_log.checkpoint(2, FRESH[2] + 60)
    v.case("forked-checkpoint", "Client at epoch 2 with the size 2 tree head; a checkpoint of the same size "
           "with another root, signed by the log key and freshly cosigned, that includes the epoch 2 bundle: "
           "a split view (step 12).",
           bundle=b[2], proof=v.add("cases/forked-checkpoint/proof.txt", fork_log.proof(1, 2, fork_cp)),
           checkpoint=v.add("cases/forked-checkpoint/checkpoint.txt", fork_cp),
           state="state/after-epoch-2.json", now=NOW[2] + 60, expect="ConsistencyError",
           reason="the log forked")

    v.add(MANIFEST, v.manifest())
    return dict(sorted(v.files.items()))


def read_tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative POSIX path -> bytes)."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def differences(expected: dict[str, bytes], directory: Path) -> list[str]:
    """Human-readable differences between ``expected`` files and the files under ``directory``."""
    actual = read_tree(directory) if directory.is_dir() else {}
    out = []
    for path in sorted(expected.keys() | actual.keys()):
        if path not in actual:
            out.append(f"missing: {path}")
        elif path not in expected:
            out.append(f"unexpected: {path}")
        elif actual[path] != expected[path]:
            out.append(f"differs: {path}")
    return out


def write(directory: Path, files: dict[str, bytes]) -> None:
    """Make ``directory`` hold exactly ``files`` (stale files removed)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in read_tree(directory).keys() - files.keys():
        (directory / path).unlink()
    for path, data in files.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
    for d in sorted((p for p in directory.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with bundles/vectors/ instead of writing")
    parser.add_argument("--out", type=Path, default=VECTORS_DIR, help="vectors directory (default: %(default)s)")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        diffs = differences(files, args.out)
        for line in diffs:
            print(line, file=sys.stderr)
        if diffs:
            print(f"{len(diffs)} difference(s); run: python -m bundles.generate_vectors", file=sys.stderr)
            return 1
        print(f"{len(files)} vector files match {args.out}")
        return 0
    write(args.out, files)
    print(f"wrote {len(files)} vector files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
