"""Benchmark: ``fleetkeys audit verify`` over a large log (not a test). Ratios against baselines measured
in the same run.

Run from the repository root::

    python bench/audit_bench.py [--entries 100000] [--small 10000] [--rounds 3]

The log is real: ``--entries`` bundles (two signatures each, about 1.4 KiB) appended with
``distributor.log.Log.append_entries`` to SQLite in a temporary directory and exported by the
distributor's own :class:`~distributor.export.StaticWriter` (no per-entry objects). Each figure is the
median of ``--rounds`` runs of the real command (``python -m fleetkeys audit verify --from-static``,
its history written to ``/dev/null``), each in a fresh process:

(a) **Throughput**: entries/s with ``--jobs 1`` and with ``--jobs 2``, against the same run's raw
    single-core cost of the hashing and signature checks the audit must do (per entry two strict
    libsodium verifies, the keyset's SHA-256, the leaf hash and about one node hash for the tree and
    the tiles). Stretch targets: >= 0.8x on one core, > 1x with both.
(b) **Peak RSS** of the command (the main process's ``VmHWM``; the largest worker's ``ru_maxrss``, an
    upper bound: a forked worker starts from the main process's figure) at ``--small`` and
    ``--entries`` entries. Target: equal within 20 %.
(c) **Breakdown** of where one core's time goes (cProfile over ``replay_log`` with ``jobs=1`` on the
    small log, grouped: signatures, parsing and checks, hashing, reading, the walk and output).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nacl.bindings import crypto_sign_open  # noqa: E402

from distributor.export import StaticWriter  # noqa: E402
from distributor.freshness import Freshness  # noqa: E402
from distributor.log import Log  # noqa: E402
from distributor.storage import open_storage  # noqa: E402
from tests.factory import World, fleet  # noqa: E402
from verifier.bundle import countersignature_message, parse_bundle  # noqa: E402
from verifier.merkle import leaf_hash, node_hash  # noqa: E402

#: The child runs the real command and reports its own and its workers' peak RSS (KiB) on stderr.
_CHILD = """
import resource, sys
sys.argv = ["fleetkeys", *sys.argv[1:]]
from fleetkeys.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
# VmHWM, not ru_maxrss: a forked child inherits its parent's ru_maxrss across exec (here the bench's own).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("RSS", hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "EXIT", code, file=sys.stderr)
"""


def build_bundles(world: World, n: int) -> list[bytes]:
    """``n`` chained epochs of a two-fleet keyset (every 50th epoch revokes one fleet and adds another)."""
    out, prev = [], None
    for epoch in range(1, n + 1):
        fleets = [fleet(f"fleet-{epoch // 50}"), fleet(f"fleet-{epoch // 50 + 1}")]
        if epoch % 50 == 0 and epoch > 50:
            fleets = [fleet(f"fleet-{epoch // 50 - 1}", "revoked"), *fleets]
        ks = world.keyset(epoch, fleets, previous=prev)
        prev = hashlib.sha256(ks).digest()
        out.append(world.bundle(ks, epoch))
    return out


def build_log(directory: Path, world: World, bundles: list[bytes]) -> Path:
    storage = open_storage(f"sqlite:///{directory / 'log.db'}")
    log = Log(storage, origin=world.origin, log_signer=world.log, freshness_signer=world.freshness)
    static = directory / "static"
    writer = StaticWriter(str(static), log_key=log.log_key, freshness=Freshness(world.origin, world.freshness),
                          entry_objects=False)
    for start in range(0, len(bundles), 256):
        log.append_entries(bundles[start:start + 256])
    writer.sync(storage)
    storage.close()
    return static


def raw_cost(bundles: list[bytes]) -> float:
    """Seconds, one core, for the work the audit cannot avoid: per entry the anchor's and the
    countersigner's libsodium verifies, SHA-256 of the keyset, the leaf hash and one node hash."""
    world = World()
    work = []
    for raw in bundles:
        p = parse_bundle(raw)
        a, c = p.signatures[0], p.signatures[1]
        work.append((a.sig + p.statement, c.sig + countersignature_message(p.statement, [a.sig]), p.keyset, raw))
    a_key, c_key = world.anchor.public_key, world.countersigner.public_key
    h = bytes(32)
    t = time.perf_counter()
    for signed_a, signed_c, keyset, raw in work:
        crypto_sign_open(signed_a, a_key)
        crypto_sign_open(signed_c, c_key)
        hashlib.sha256(keyset).digest()
        node_hash(leaf_hash(raw), h)
    return time.perf_counter() - t


def run_audit(root: Path, static: Path, jobs: int) -> tuple[float, int, int]:
    """Wall seconds, main peak RSS (KiB), largest worker peak RSS (KiB) of one ``audit verify``."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, "audit", "verify", "--trust-root", str(root), "--from-static",
                           str(static), "--jobs", str(jobs), "--no-progress"], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - t
    line = proc.stderr.strip().splitlines()[-1].split()
    assert line[0] == "RSS" and line[4] == "0", proc.stderr[-2000:]
    return elapsed, int(line[1]), int(line[2])


def breakdown(root_bytes: bytes, static: Path) -> None:
    from fleetkeys.audit_cli import _entry_lines
    from verifier.audit import replay_log
    from verifier.fetch import DirectoryFetcher
    from verifier.trustroot import load_trust_root

    sink = io.StringIO()
    prof = cProfile.Profile()
    prof.enable()
    replay_log(DirectoryFetcher(static), trust_root=load_trust_root(root_bytes), now=int(time.time()), jobs=1,
               on_entry=lambda e: sink.write("\n".join(_entry_lines(e))))
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    groups: dict[str, float] = {}
    for (file, _line, name), (_cc, _nc, tt, _ct, _callers) in stats.items():
        base = Path(file).name
        if "crypto_sign_open" in name:
            group = "Ed25519 verify (libsodium)"
        elif "sha256" in name or base == "merkle.py":
            group = "SHA-256 and Merkle"
        elif base in ("cjson.py", "keyset.py", "bundle.py", "statement.py", "signatures.py", "note.py") or \
                base in ("decoder.py", "encoder.py", "__init__.py") and "json" in file:
            group = "parsing and format checks (canonical JSON, keyset, bundle, statement, base64)"
        elif base in ("fetch.py", "client.py", "tiles.py") or name in ("read", "open", "<built-in method posix.open>"):
            group = "reading tiles and entry bundles"
        elif base == "audit_cli.py" or "format_time" in name or "write" in name:
            group = "output (history lines)"
        elif base in ("audit.py", "update.py"):
            group = "the walk (chain, revocations, changes, tiles check)"
        else:
            group = "other (interpreter, dataclasses, ...)"
        groups[group] = groups.get(group, 0.0) + tt
    print("(c) where one core's time goes (cProfile, own time; profiling inflates Python-heavy parts):")
    for group, tt in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"     {tt / total:6.1%}  {group}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    world = World()
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        t = time.perf_counter()
        bundles = build_bundles(world, args.entries)
        root = tmp / "root.json"
        root.write_bytes(world.trust_root_bytes())
        (tmp / "big").mkdir()
        (tmp / "small").mkdir()
        big = build_log(tmp / "big", world, bundles)
        small = build_log(tmp / "small", world, bundles[:args.small])
        print(f"built logs of {args.entries} and {args.small} entries in {time.perf_counter() - t:.1f} s "
              f"(bundle {len(bundles[0])} bytes); {os.cpu_count()} CPUs")

        raws = [raw_cost(bundles) for _ in range(args.rounds)]
        raw = statistics.median(raws)
        raw_rate = args.entries / raw
        print(f"raw single-core cost: {raw:.2f} s for {args.entries} entries = {raw_rate:,.0f} entries/s "
              f"(median of {args.rounds}: {', '.join(f'{r:.2f}' for r in raws)})")
        figures = {}
        for jobs in (1, 2):
            runs = [run_audit(root, big, jobs) for _ in range(args.rounds)]
            wall = statistics.median(r[0] for r in runs)
            rate = args.entries / wall
            figures[f"jobs{jobs}"] = {"seconds": wall, "rate": rate, "ratio": rate / raw_rate,
                                      "rss_main_kib": statistics.median(r[1] for r in runs),
                                      "rss_worker_kib": statistics.median(r[2] for r in runs)}
            print(f"(a) audit verify --jobs {jobs}: {wall:.2f} s = {rate:,.0f} entries/s, {rate / raw_rate:.2f}x the raw "
                  f"single-core rate (target {'>= 0.8x' if jobs == 1 else '> 1x'}; runs: "
                  f"{', '.join(f'{r[0]:.2f}' for r in runs)} s, process start included)")
        for label, static, n in (("small", small, args.small), ("big", big, args.entries)):
            runs = [run_audit(root, static, 2) for _ in range(args.rounds)]
            main_rss = statistics.median(r[1] for r in runs)
            worker_rss = statistics.median(r[2] for r in runs)
            figures[f"rss_{label}"] = {"entries": n, "main_kib": main_rss, "worker_kib": worker_rss}
            print(f"(b) peak RSS at {n:>7} entries (--jobs 2): main {main_rss / 1024:.1f} MiB, largest worker "
                  f"{worker_rss / 1024:.1f} MiB")
        ratio = figures["rss_big"]["main_kib"] / figures["rss_small"]["main_kib"]
        print(f"(b) main RSS {args.entries} / {args.small} entries: {ratio:.2f} (target within 1.20)")
        breakdown(root.read_bytes(), small)
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
