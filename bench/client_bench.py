"""Benchmark: one client update (``verifier.update.verify_update``) at log size 10**6, import time, memory.

Run from the repository root (not a test)::

    python bench/client_bench.py [--rounds N]

1. ``verify_update`` of epoch 2 over a client state at epoch 1: two bundle signatures, the log's
   checkpoint signature, the log's freshness cosignature, the keyset chain, an inclusion proof in a
   tree of 10**6 leaves and a consistency proof from 999,000 to 10**6 leaves. The proofs come from a
   synthetic, consistent node reader (``verify_bench.synthetic_reader``) that holds the two real
   bundles at indexes 998,999 and 999,999; the checkpoint for its root is signed with the World log
   key. Baselines, measured in the same run and interleaved round by round: three raw PyNaCl Ed25519
   verifies (anchor, countersigner, log: the figure the issue asks for) and four (plus the freshness
   cosignature, which ``verify_update`` also has to check). Target: <= 1.25x.
2. ``import verifier`` time in fresh interpreters: ``python -X importtime`` (cumulative for the
   ``verifier`` package) and wall time of ``python -c 'import verifier'`` minus ``python -c pass``.
3. Memory in a fresh interpreter: tracemalloc (current after ``import verifier``, peak over the import
   plus one ``verify_update``) and the RSS growth over the same, measured without tracemalloc.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.factory when run as a script

from nacl.signing import VerifyKey  # noqa: E402
from verify_bench import calibrate, compare, line, per_op_us, print_profile, synthetic_reader  # noqa: E402

from tests.factory import T0, World, fleet  # noqa: E402
from verifier.bundle import countersignature_message, parse_bundle, verify_bundle  # noqa: E402
from verifier.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from verifier.cosignature import add_cosignatures, cosigned_message  # noqa: E402
from verifier.merkle import consistency_proof, inclusion_proof, leaf_hash, tree_root  # noqa: E402
from verifier.tlogproof import TlogProof, parse_tlog_proof  # noqa: E402
from verifier.update import ClientState, _check_epoch, _verify_inclusion, verify_checkpoint, verify_update  # noqa: E402

TARGET_UPDATE = 1.25
SIZE = 10**6
OLD_SIZE = SIZE - 1000
FRESH_TIME = T0 + 1000
NOW = FRESH_TIME + 60
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Inputs:
    world: World
    bundle: bytes
    proof: bytes
    checkpoint: bytes
    consistency: list[bytes]
    state: ClientState
    body: bytes


def make_inputs() -> Inputs:
    world = World()
    ks1 = world.keyset(1, [fleet("fleet-1")])
    ks2 = world.keyset(2, [fleet("fleet-1"), fleet("fleet-2")], previous=hashlib.sha256(ks1).digest())
    b1, b2 = world.bundle(ks1, 1), world.bundle(ks2, 2)
    node = synthetic_reader({OLD_SIZE - 1: leaf_hash(b1), SIZE - 1: leaf_hash(b2)})
    old_root, new_root = tree_root(OLD_SIZE, node), tree_root(SIZE, node)
    cp = Checkpoint(world.origin, SIZE, new_root)
    checkpoint = add_cosignatures(sign_checkpoint(cp, world.log_note),
                                  [world.freshness_cosigner.cosign(cp.body(), FRESH_TIME)])
    proof = TlogProof(SIZE - 1, tuple(inclusion_proof(SIZE - 1, SIZE, node)), checkpoint).encode()
    state = ClientState(keyset=ks1, checkpoint_size=OLD_SIZE, checkpoint_root=old_root, freshness_time=T0 + 500)
    return Inputs(world, b2, proof, checkpoint, consistency_proof(OLD_SIZE, SIZE, node), state, cp.body())


def bench_update(inp: Inputs, rounds: int) -> None:
    trust_root = inp.world.trust_root()

    def update():
        return verify_update(inp.bundle, inp.proof, inp.checkpoint, trust_root=trust_root, state=inp.state, now=NOW,
                             consistency=inp.consistency)

    result = update()  # must verify before it is timed
    assert result.epoch == 2 and result.index == SIZE - 1 and result.state.checkpoint_size == SIZE

    bundle = parse_bundle(inp.bundle)
    anchor_sig, counter_sig = bundle.signatures[0].sig, bundle.signatures[1].sig
    counter_msg = countersignature_message(bundle.statement, [anchor_sig])
    log_sig = base64.b64decode(inp.checkpoint.split(b"\n\n")[1].split(b"\n")[0].split(b" ")[-1])[4:]
    fresh_raw = base64.b64decode(inp.checkpoint.split(b"\n\n")[1].split(b"\n")[1].split(b" ")[-1])[4:]
    fresh_msg = cosigned_message(inp.body, int.from_bytes(fresh_raw[:8], "big"))
    w = inp.world
    keys = [VerifyKey(k.public_key) for k in (w.anchor, w.countersigner, w.log, w.freshness)]
    checks = [(keys[0], bundle.statement, anchor_sig), (keys[1], counter_msg, counter_sig),
              (keys[2], inp.body, log_sig), (keys[3], fresh_msg, fresh_raw[8:])]

    def raw(n: int):
        todo = checks[:n]

        def run() -> None:
            for key, msg, sig in todo:
                key.verify(msg, sig)

        return run

    raw(4)()  # the baseline messages and signatures are the real ones
    n_inclusion = len(parse_tlog_proof(inp.proof).hashes)
    print(f"1. verify_update: epoch 1 -> 2, log size {OLD_SIZE:,} -> {SIZE:,}, inclusion proof "
          f"{n_inclusion} hashes, consistency proof {len(inp.consistency)} hashes")
    t, b3 = compare(update, raw(3), rounds)
    _, b4 = compare(update, raw(4), rounds)
    print(line("verify_update", t))
    print(line("baseline: 3 raw PyNaCl Ed25519 verifies", b3))
    print(line("baseline: 4 raw PyNaCl Ed25519 verifies", b4))
    above = False
    for n, b in ((3, b3), (4, b4)):
        ratio = min(t) / min(b)
        above = above or ratio > TARGET_UPDATE
        verdict = "OK" if ratio <= TARGET_UPDATE else "ABOVE TARGET"
        print(f"  ratio vs {n} verifies: best {ratio:.2f}x, median {statistics.median(t) / statistics.median(b):.2f}x "
              f"(target <= {TARGET_UPDATE}x): {verdict}")
    print("  note: verify_update checks 4 Ed25519 signatures (anchor, countersigner, log checkpoint signature and the\n"
          "  log's freshness cosignature, which stops the freeze attack); the issue's '3 verifies' predates the\n"
          "  freshness key, so the 4-verify ratio is the like-for-like one. Each required witness adds one more.")

    print("  breakdown (best of rounds, each step alone):")
    verified = verify_bundle(inp.bundle, trust_root)
    vcp = verify_checkpoint(inp.checkpoint, trust_root=trust_root, state=inp.state, now=NOW,
                            consistency=inp.consistency)
    steps = [
        ("steps 3-7 verify_bundle", lambda: verify_bundle(inp.bundle, trust_root)),
        ("steps 8-9 _check_epoch (parses saved keyset twice)", lambda: _check_epoch(verified.keyset, inp.state, NOW)),
        ("steps 10+12 verify_checkpoint (+ consistency)", lambda: verify_checkpoint(
            inp.checkpoint, trust_root=trust_root, state=inp.state, now=NOW, consistency=inp.consistency)),
        ("step 11 _verify_inclusion", lambda: _verify_inclusion(inp.bundle, inp.proof, vcp.checkpoint)),
        ("ClientState.from_bytes(saved state)", lambda: ClientState.from_bytes(state_bytes)),
        ("new state .to_bytes()", lambda: result.state.to_bytes()),
    ]
    state_bytes = inp.state.to_bytes()
    for label, fn in steps:
        n = calibrate(fn, 0.02)
        print(line(label, [per_op_us(fn, n) for _ in range(max(3, rounds // 2))]))
    if above:
        print_profile("verify_update", update, 2000, top=18)


_CHILD = r"""
import base64, json, os, sys, tracemalloc
d, mode = sys.argv[1], sys.argv[2]
inp = {n: open(os.path.join(d, n), "rb").read() for n in ("bundle", "proof", "checkpoint", "trust_root", "state")}
consistency = [base64.b64decode(h) for h in json.loads(open(os.path.join(d, "consistency"), "rb").read())]
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) * 1024
rss0 = rss()
if mode == "tracemalloc":
    tracemalloc.start()
import verifier
from verifier.trustroot import load_trust_root
from verifier.update import ClientState, verify_update
out = {"rss_after_import": rss() - rss0}
if mode == "tracemalloc":
    out["traced_after_import"] = tracemalloc.get_traced_memory()[0]
r = verify_update(inp["bundle"], inp["proof"], inp["checkpoint"], trust_root=load_trust_root(inp["trust_root"]),
                  state=ClientState.from_bytes(inp["state"]), now=int(sys.argv[3]), consistency=consistency)
assert r.epoch == 2
out["rss_after_update"] = rss() - rss0
if mode == "tracemalloc":
    out["traced_peak"] = tracemalloc.get_traced_memory()[1]
print(json.dumps(out))
"""


def run_python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
                          env=env)


def import_figures(runs: int, env: dict[str, str] | None) -> None:
    cumulative: list[int] = []
    below: dict[str, list[int]] = {}
    for _ in range(runs):
        err = run_python("-X", "importtime", "-c", "import verifier", env=env).stderr
        rows = [(int(c), len(indent), name) for _, c, indent, name in
                re.findall(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", err)]
        top = next(i for i, (_, depth, name) in enumerate(rows) if name == "verifier" and depth == 1)
        cumulative.append(rows[top][0])
        first = max((i for i, (_, depth, _) in enumerate(rows[:top]) if depth == 1), default=-1) + 1
        for c, _, name in rows[first:top]:  # post-order: everything imported on behalf of verifier
            if not name.startswith("verifier"):
                below.setdefault(name, []).append(c)
    print(f"  -X importtime, cumulative for 'verifier': best {min(cumulative) / 1000:.1f} ms, "
          f"median {statistics.median(cumulative) / 1000:.1f} ms")
    heavy = sorted(below.items(), key=lambda kv: -statistics.median(kv[1]))[:6]
    print("  heaviest dependencies (cumulative, median): "
          + ", ".join(f"{name} {statistics.median(v) / 1000:.1f} ms" for name, v in heavy))
    with_import, bare = [], []
    for _ in range(runs):
        for args, out in ((("-c", "import verifier"), with_import), (("-c", "pass"), bare)):
            start = time.perf_counter()
            run_python(*args, env=env)
            out.append(time.perf_counter() - start)
    med_import, med_bare = statistics.median(with_import) * 1000, statistics.median(bare) * 1000
    print(f"  wall: python -c 'import verifier' {med_import:.1f} ms - python -c pass {med_bare:.1f} ms = "
          f"{med_import - med_bare:.1f} ms (medians of {runs}; best-of difference "
          f"{(min(with_import) - min(bare)) * 1000:.1f} ms)")


def bench_import(runs: int) -> None:
    print("\n2. import verifier (fresh interpreters)")
    print(f"  a) this environment (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}: "
          "modules without a .pyc are compiled on every import)")
    import_figures(runs, None)
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        run_python("-c", "import verifier", env=env)  # writes the .pyc files into the temporary cache
        print("  b) with bytecode cached (as an installed package; PYTHONPYCACHEPREFIX in a temporary directory)")
        import_figures(runs, env)


def bench_memory(inp: Inputs) -> None:
    print("\n3. memory: import verifier + one verify_update (fresh interpreter; inputs read before measuring)")
    with tempfile.TemporaryDirectory() as d:
        files = {"bundle": inp.bundle, "proof": inp.proof, "checkpoint": inp.checkpoint,
                 "trust_root": inp.world.trust_root_bytes(), "state": inp.state.to_bytes(),
                 "consistency": json.dumps([base64.b64encode(h).decode() for h in inp.consistency]).encode()}
        for name, data in files.items():
            Path(d, name).write_bytes(data)
        traced = json.loads(run_python("-c", _CHILD, d, "tracemalloc", str(NOW)).stdout)
        plain = json.loads(run_python("-c", _CHILD, d, "rss", str(NOW)).stdout)
    mib = 1024 * 1024
    print(f"  tracemalloc: {traced['traced_after_import'] / mib:.2f} MiB allocated by the import, "
          f"peak {traced['traced_peak'] / mib:.2f} MiB over import + verify_update")
    print(f"  RSS growth (no tracemalloc): {plain['rss_after_import'] / mib:.2f} MiB after import, "
          f"{plain['rss_after_update'] / mib:.2f} MiB after verify_update")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="measurement rounds per figure (default 9)")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds per figure\n")
    inp = make_inputs()
    bench_update(inp, args.rounds)
    bench_import(args.rounds)
    bench_memory(inp)


if __name__ == "__main__":
    main()
