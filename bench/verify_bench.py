"""Benchmark: bundle verification against raw Ed25519, and Merkle inclusion proofs in a 2**32 tree.

Run from the repository root (not a test)::

    python bench/verify_bench.py [--rounds N]

1. ``verifier.bundle.verify_bundle`` on a fixed-seed World bundle (two signatures, digest, strict
   parses) against the floor it cannot beat: two raw PyNaCl Ed25519 verifies of the same two messages
   (the statement and the countersignature message), measured in the same run, interleaved round by
   round. Target: ratio <= 1.3. Prints a per-step breakdown, and a cProfile of where the time goes
   when the ratio is above target.
2. ``verifier.merkle.verify_inclusion`` for a leaf of a tree of 2**32 leaves (32 hashes), with a
   proof and root made by ``verifier.merkle.inclusion_proof`` / ``tree_root`` over a synthetic,
   consistent node reader (no 2**32 leaves needed), against 32 raw SHA-256 node hashes.

Timings use ``time.perf_counter``; each figure is the best and the median of several rounds.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.factory when run as a script

from nacl.signing import VerifyKey  # noqa: E402

from tests.factory import World  # noqa: E402
from verifier import keyset as keyset_mod  # noqa: E402
from verifier.bundle import countersignature_message, parse_bundle, verify_bundle  # noqa: E402
from verifier.cjson import loads_canonical  # noqa: E402
from verifier.merkle import inclusion_proof, leaf_hash, node_hash, tree_root, verify_inclusion  # noqa: E402
from verifier.signatures import verify_threshold  # noqa: E402
from verifier.statement import parse_statement  # noqa: E402

TARGET_BUNDLE = 1.3


def per_op_us(fn: Callable[[], object], number: int) -> float:
    """Microseconds per call of ``fn`` over ``number`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number * 1e6


def calibrate(fn: Callable[[], object], seconds: float = 0.05) -> int:
    """A call count that takes about ``seconds``."""
    number = 1
    while per_op_us(fn, number) * number < seconds * 1e6:
        number *= 2
    return number


def compare(target: Callable[[], object], baseline: Callable[[], object], rounds: int) -> tuple[list[float], list[float]]:
    """Interleave rounds of ``target`` and ``baseline``; return their per-op µs lists."""
    n_t, n_b = calibrate(target), calibrate(baseline)
    t, b = [], []
    for _ in range(rounds):
        t.append(per_op_us(target, n_t))
        b.append(per_op_us(baseline, n_b))
    return t, b


def line(label: str, values: list[float]) -> str:
    return f"  {label:<46} best {min(values):9.2f} µs   median {statistics.median(values):9.2f} µs"


def bench_bundle(rounds: int) -> None:
    world = World()
    trust_root = world.trust_root()
    data = world.chain(1)[0]
    verify_bundle(data, trust_root)  # must verify before it is timed
    bundle = parse_bundle(data)
    anchor_sig, counter_sig = bundle.signatures[0].sig, bundle.signatures[1].sig
    counter_msg = countersignature_message(bundle.statement, [anchor_sig])
    anchor_key, counter_key = VerifyKey(world.anchor.public_key), VerifyKey(world.countersigner.public_key)

    def raw_two() -> None:
        anchor_key.verify(bundle.statement, anchor_sig)
        counter_key.verify(counter_msg, counter_sig)

    print(f"1. verify_bundle: World bundle, epoch 1, one x25519 fleet, {len(data)} bytes")
    t, b = compare(lambda: verify_bundle(data, trust_root), raw_two, rounds)
    print(line("verify_bundle (2 signatures, digest, parses)", t))
    print(line("baseline: 2 raw PyNaCl Ed25519 verifies", b))
    ratio_best = min(t) / min(b)
    ratio_median = statistics.median(t) / statistics.median(b)
    verdict = "OK" if ratio_best <= TARGET_BUNDLE else "ABOVE TARGET"
    print(f"  ratio: best {ratio_best:.2f}x, median {ratio_median:.2f}x (target <= {TARGET_BUNDLE}x): {verdict}")
    print(f"  non-crypto time: {min(t) - min(b):.1f} µs per bundle; the target allows "
          f"{(TARGET_BUNDLE - 1) * min(b):.1f} µs")

    print("  breakdown (best of rounds, each step alone):")
    statement = parse_statement(bundle.statement)
    keyset_obj = loads_canonical(bundle.keyset, "keyset", keyset_mod.MAX_KEYSET_SIZE)
    fleet_key = keyset_mod.parse_keyset(bundle.keyset).fleets[0].public_key
    steps: list[tuple[str, Callable[[], object]]] = [
        ("parse_bundle (canonical JSON, base64, entries)", lambda: parse_bundle(data)),
        ("verify_threshold anchor", lambda: verify_threshold(bundle.statement, bundle.signatures,
                                                             trust_root.anchors, "anchor", "bundle")),
        ("countersignature_message + verify_threshold", lambda: verify_threshold(
            countersignature_message(bundle.statement, bundle.anchor_signatures), bundle.signatures,
            trust_root.countersigners, "countersigner", "bundle")),
        ("parse_statement", lambda: parse_statement(bundle.statement)),
        ("SHA-256(keyset)", lambda: hashlib.sha256(bundle.keyset).digest()),
        ("parse_keyset (total)", lambda: keyset_mod.parse_keyset(bundle.keyset)),
        ("  of which loads_canonical(keyset)", lambda: loads_canonical(bundle.keyset, "keyset",
                                                                      keyset_mod.MAX_KEYSET_SIZE)),
        ("  of which 4 x parse_time (strptime)", lambda: [keyset_mod.parse_time(keyset_obj[k], k) for k in
                                                          ("issued_at", "expires_at", "issued_at", "expires_at")]),
        ("  of which check_fleet_key x25519", lambda: keyset_mod.check_fleet_key("x25519", fleet_key, "k")),
        ("raw Ed25519 verify (one)", lambda: anchor_key.verify(bundle.statement, anchor_sig)),
    ]
    for label, fn in steps:
        n = calibrate(fn, 0.02)
        print(line(label, [per_op_us(fn, n) for _ in range(max(3, rounds // 2))]))
    assert statement.epoch == 1

    if ratio_best > TARGET_BUNDLE:
        print_profile("verify_bundle", lambda: verify_bundle(data, trust_root), 3000)


def print_profile(label: str, fn: Callable[[], object], calls: int, top: int = 14) -> None:
    """Print where ``calls`` calls of ``fn`` spend their time (cProfile, sorted by own time)."""
    print(f"  cProfile of {calls} {label} calls (top {top} by own time; profiling inflates Python-level costs):")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    body = out.getvalue()
    print("\n".join("    " + s for s in body[body.index("ncalls"):].rstrip().splitlines()))


def synthetic_reader(special: dict[int, bytes]):
    """A consistent :data:`~verifier.merkle.NodeReader` for a huge tree without its leaves.

    A subtree holding a leaf of ``special`` (index -> leaf hash) is hashed from its children; any other
    complete subtree gets a fixed pseudo-random hash. Every node any proof or root computation splits is
    therefore the hash of its two children, so proofs and roots are mutually consistent.
    """

    @cache
    def node(level: int, index: int) -> bytes:
        lo, hi = index << level, (index + 1) << level
        if any(lo <= i < hi for i in special):
            if level == 0:
                return special[index]
            return node_hash(node(level - 1, 2 * index), node(level - 1, 2 * index + 1))
        return hashlib.sha256(b"synthetic node %d %d" % (level, index)).digest()

    return node


def bench_merkle(rounds: int) -> None:
    size = 1 << 32
    index = (1 << 31) + 123_456_789
    leaf = leaf_hash(b"fleetkeys benchmark entry")
    node = synthetic_reader({index: leaf})
    proof = inclusion_proof(index, size, node)
    root = tree_root(size, node)
    verify_inclusion(index, size, leaf, proof, root)  # must verify before it is timed
    pairs = [(p, leaf) for p in proof]

    def raw_hashes() -> None:
        for p, r in pairs:
            hashlib.sha256(b"\x01" + p + r).digest()

    print(f"\n2. verify_inclusion: leaf {index} of a tree of 2**32 leaves, {len(proof)}-hash proof")
    t, b = compare(lambda: verify_inclusion(index, size, leaf, proof, root), raw_hashes, rounds)
    print(line("verify_inclusion", t))
    print(line(f"baseline: {len(proof)} raw SHA-256 node hashes", b))
    print(f"  {min(t):.2f} µs per proof ({1e6 / min(t):,.0f} proofs/s); "
          f"ratio to raw hashing: best {min(t) / min(b):.2f}x, median {statistics.median(t) / statistics.median(b):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="measurement rounds per figure (default 9)")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds per figure\n")
    bench_bundle(args.rounds)
    bench_merkle(args.rounds)


if __name__ == "__main__":
    main()
