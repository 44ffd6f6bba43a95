"""Benchmark: the client's static read path (not a test). Ratios against baselines measured in the same run.

Run from the repository root::

    python bench/read_bench.py [--seconds 5] [--rounds 3]

(a) **Server throughput of a no-change refresh.** The trace of a no-change refresh is asserted to be
    exactly one request (``GET /checkpoint``); nginx serving the static export answers that trace,
    against nginx serving ``/checkpoint`` alone — the same load generator (``wrk`` when installed,
    else a Python keep-alive client), the same nginx, the same file. Also shown: the old read path's
    dynamic API request (``GET /api/v1/bundles/latest`` on ``fleetkeys serve``, 2 workers) for scale.
(b) **Catch-up** for 1, 100, 1,000 and 5,000 epochs behind, on a real static export (the distributor's
    own exporter) read through :class:`verifier.fetch.DirectoryFetcher`: requests (target
    ``<= ceil(k/256) + 6``), bytes read, and time against the same run's raw single-core cost of the
    signature checks and hashes the catch-up must do (per epoch two strict Ed25519 verifies, the
    keyset's SHA-256 and the entry's leaf hash; per refresh the checkpoint's two verifies). Target
    ``<= 1.5x``. Each figure is the median of ``--rounds`` runs.
(c) **One-epoch refresh CPU** against its raw verifies and hashes (four verifies: anchor,
    countersigner, log, freshness; keyset SHA-256, leaf hash, frontier hashes). Target ``<= 1.5x``.
Where a target is missed the breakdown (cProfile, top functions by own time) is printed.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import math
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from log_bench import free_port, nginx_conf, read_rate, wait_http  # noqa: E402
from nacl.bindings import crypto_sign_open  # noqa: E402

from distributor.export import StaticWriter  # noqa: E402
from distributor.freshness import Freshness  # noqa: E402
from distributor.log import Log  # noqa: E402
from distributor.storage import open_storage  # noqa: E402
from tests.factory import World, fleet  # noqa: E402
from verifier.bundle import countersignature_message, parse_bundle  # noqa: E402
from verifier.client import Client  # noqa: E402
from verifier.fetch import DirectoryFetcher  # noqa: E402
from verifier.follow import apply_entry, extend_tree, finish, open_checkpoint_for, with_tree_head  # noqa: E402
from verifier.merkle import leaf_hash  # noqa: E402

BEHIND = (1, 100, 1000, 5000)


class CountingFetcher(DirectoryFetcher):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.requests: list[str] = []
        self.bytes = 0

    def fetch(self, path: str, limit: int) -> bytes | None:
        data = super().fetch(path, limit)
        self.requests.append(path)
        self.bytes += len(data or b"") if path != "checkpoint" else 0
        return data


def build_bundles(world: World, n: int) -> list[bytes]:
    """``n`` epochs of one small keyset each (a realistic bundle of about 1.2 KiB)."""
    out, prev = [], None
    for epoch in range(1, n + 1):
        ks = world.keyset(epoch, [fleet("fleet-1"), fleet(f"fleet-{epoch % 7 + 2}")], previous=prev)
        prev = hashlib.sha256(ks).digest()
        out.append(world.bundle(ks, epoch))
    return out


class Export:
    """A real log (SQLite) and its static export, grown on demand."""

    def __init__(self, workdir: Path, world: World) -> None:
        self.world = world
        self.storage = open_storage(f"sqlite:///{workdir / 'log.db'}")
        self.log = Log(self.storage, origin=world.origin, log_signer=world.log, freshness_signer=world.freshness)
        self.dir = workdir / "static"
        self.writer = StaticWriter(str(self.dir), log_key=self.log.log_key,
                                   freshness=Freshness(world.origin, world.freshness))

    def grow_to(self, bundles: list[bytes], size: int) -> None:
        have = self.log.head().size
        for start in range(have, size, 256):
            self.log.append_entries(bundles[start:min(size, start + 256)])
        self.writer.sync(self.storage)


def raw_cost(bundles: list[bytes], rounds: int = 1) -> float:
    """Seconds for what verifying these bundles must do at least (best of ``rounds``): per bundle the
    anchor's and the countersigner's raw libsodium verifies, SHA-256 of the keyset and the leaf hash;
    per refresh two more verifies (the checkpoint's log signature and freshness cosignature)."""
    world = World()
    work = []
    for raw in bundles:
        p = parse_bundle(raw)
        anchor, counter = p.signatures[0], p.signatures[1]
        work.append((anchor.sig + p.statement, counter.sig + countersignature_message(p.statement, [anchor.sig]),
                     p.keyset, raw))
    a_key, c_key = world.anchor.public_key, world.countersigner.public_key
    best = math.inf
    for _ in range(rounds):
        t = time.perf_counter()
        for signed_a, signed_c, keyset, raw in work:
            crypto_sign_open(signed_a, a_key)
            crypto_sign_open(signed_c, c_key)
            hashlib.sha256(keyset).digest()
            leaf_hash(raw)
        for _ in range(2):
            crypto_sign_open(work[-1][0], a_key)
        best = min(best, time.perf_counter() - t)
    return best


def client_at(export: Export, directory: Path, now: int) -> Client:
    return Client(None, export.world.trust_root_bytes(), directory, fetcher=CountingFetcher(export.dir),
                  clock=lambda: now)


def bench_catch_up(rounds: int, tmp: Path) -> dict[int, dict[str, float]]:
    world = World()
    total = max(BEHIND) + 1
    bundles = build_bundles(world, total)
    now = int(time.time())
    results: dict[int, dict[str, float]] = {}
    for k in BEHIND:
        times, raws, reqs, nbytes = [], [], [], []
        for r in range(rounds):
            work = tmp / f"catch-{k}-{r}"
            work.mkdir()
            export = Export(work, world)
            export.grow_to(bundles, total - k)
            client = client_at(export, work / "state", now)
            client.refresh()
            export.grow_to(bundles, total)
            client.fetcher.requests.clear()
            client.fetcher.bytes = 0
            t = time.perf_counter()
            result = client.refresh()
            times.append(time.perf_counter() - t)
            assert result.epoch == total and len(result.epochs_verified) == k, result.message
            reqs.append(len(client.fetcher.requests))
            nbytes.append(client.fetcher.bytes)
            raws.append(raw_cost(bundles[total - k:]))
            export.storage.close()
        results[k] = {"time": statistics.median(times), "raw": statistics.median(raws),
                      "requests": statistics.median(reqs), "bytes": statistics.median(nbytes)}
        if k == 1:
            results[k]["trace"] = client.fetcher.requests  # type: ignore[assignment]
    return results


def profile_refresh(tmp: Path, k: int) -> None:
    world = World()
    bundles = build_bundles(world, k + 1)
    work = tmp / f"profile-{k}"
    work.mkdir()
    export = Export(work, world)
    export.grow_to(bundles, 1)
    client = client_at(export, work / "state", int(time.time()))
    client.refresh()
    export.grow_to(bundles, k + 1)
    prof = cProfile.Profile()
    prof.enable()
    client.refresh()
    prof.disable()
    print(f"   breakdown of a {k}-epoch catch-up (own time):")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    for (file, line, name), (_cc, _nc, tt, _ct, _callers) in rows:
        print(f"     {tt / total:6.1%}  {name} ({Path(file).name}:{line})")
    export.storage.close()


def bench_server(seconds: float, tmp: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        print("(a) nginx not installed: skipped")
        return
    world = World()
    bundles = build_bundles(world, 300)
    work = tmp / "server"
    work.mkdir()
    export = Export(work, world)
    export.grow_to(bundles, 300)
    client = client_at(export, work / "state", int(time.time()))
    client.refresh()
    client.fetcher.requests.clear()
    client.refresh()
    trace = list(client.fetcher.requests)
    assert trace == ["checkpoint"], f"a no-change refresh must be exactly one request, it was {trace}"
    port = free_port()
    proc = subprocess.Popen([nginx, "-c", str(nginx_conf(work, export.dir, port)), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/checkpoint")
        trace_rate, tool = read_rate(port, ["/" + p for p in trace], seconds, 16, work)
        alone, _ = read_rate(port, ["/checkpoint"], seconds, 16, work)
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"(a) no-change refresh trace = {trace} (1 request), {tool}, 16 connections")
    print(f"    nginx serving the export, refresh trace: {trace_rate:,.0f} refreshes/s; "
          f"nginx serving /checkpoint alone: {alone:,.0f}/s; ratio {trace_rate / alone:.2f}x")
    export.storage.close()


def bench_one_epoch(rounds: int, tmp: Path) -> tuple[float, float]:
    world = World()
    bundles = build_bundles(world, 1002)
    times, raws = [], []
    for r in range(rounds * 5):
        work = tmp / f"one-{r}"
        work.mkdir()
        export = Export(work, world)
        export.grow_to(bundles, 1001)
        client = client_at(export, work / "state", int(time.time()))
        client.refresh()
        export.grow_to(bundles, 1002)
        t = time.process_time()
        client.refresh()
        times.append(time.process_time() - t)
        raws.append(raw_cost(bundles[1001:], rounds=5) + _frontier_hashes(1002))
        export.storage.close()
    return statistics.median(times), statistics.median(raws)


def bench_one_epoch_core(rounds: int, tmp: Path) -> tuple[float, float]:
    """The pure steps of a one-epoch refresh on bytes already in memory (no fetch, no save)."""
    world = World()
    bundles = build_bundles(world, 1002)
    work = tmp / "core"
    work.mkdir()
    export = Export(work, world)
    export.grow_to(bundles, 1001)
    client = client_at(export, work / "state", int(time.time()))
    client.refresh()
    state = client.state
    export.grow_to(bundles, 1002)
    checkpoint = (export.dir / "checkpoint").read_bytes()
    entry = bundles[1001]
    now = int(time.time())
    root = world.trust_root()

    def core() -> None:
        vcp = open_checkpoint_for(checkpoint, bootstrap=root, state=state, now=now)
        size, r, frontier = extend_tree(state, [entry], vcp.checkpoint)
        applied = apply_entry(state, entry, 1001, bootstrap=root, now=now).state
        finish(with_tree_head(applied, size, r, frontier), vcp, checkpoint, bootstrap=root, before=root, now=now)

    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(200):
            core()
        times.append((time.perf_counter() - t) / 200)
    raw = statistics.median(raw_cost([entry], rounds=200) + _frontier_hashes(1002) for _ in range(rounds))
    export.storage.close()
    return statistics.median(times), raw


def _frontier_hashes(size: int) -> float:
    n = size.bit_length()
    t = time.perf_counter()
    for _ in range(n):
        hashlib.sha256(b"\x01" + bytes(64)).digest()
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load-generator duration per server figure")
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure (the median is reported)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fleetkeys-read-bench-"))
    try:
        bench_server(args.seconds, tmp)
        results = bench_catch_up(args.rounds, tmp)
        print("(b) catch-up, static export through DirectoryFetcher (median of "
              f"{args.rounds}); raw = 2 verifies + keyset SHA-256 + leaf hash per epoch, + 2 checkpoint verifies")
        missed = []
        for k, r in results.items():
            target = math.ceil(k / 256) + 6
            ratio = r["time"] / r["raw"]
            print(f"    {k:>5} behind: {r['requests']:>4.0f} requests (target <= {target}), {r['bytes']:>10,.0f} bytes, "
                  f"{r['time'] * 1000:8.1f} ms vs raw {r['raw'] * 1000:8.1f} ms = {ratio:.2f}x (target <= 1.5x)")
            if ratio > 1.5:
                missed.append(k)
        print(f"    one-epoch trace: {results[1]['trace']}")
        if missed:
            profile_refresh(tmp, max(missed))
        cpu, raw = bench_one_epoch(args.rounds, tmp)
        print(f"(c) one-epoch refresh CPU {cpu * 1e6:,.0f} us vs raw {raw * 1e6:,.0f} us = {cpu / raw:.2f}x "
              "(target <= 1.5x; raw = 4 verifies + keyset SHA-256 + leaf hash + frontier hashes)")
        core, core_raw = bench_one_epoch_core(args.rounds, tmp)
        print(f"    of which the pure verification (bytes in memory, no fetch, no state save): {core * 1e6:,.0f} us "
              f"vs raw {core_raw * 1e6:,.0f} us = {core / core_raw:.2f}x")
        if cpu / raw > 1.5:
            profile_refresh(tmp, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
