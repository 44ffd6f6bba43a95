"""Witness benchmark: cosignatures/s of one ``fleetkeys witness serve`` over HTTP against the raw cost of what
each request needs, both measured in the same run.

Witness: a real ``python -m witness serve`` process (gunicorn ``gthread``, ``--workers`` × ``--threads``),
driven by ``--clients`` client processes, each on one keep-alive connection. Every client is the log of its
own origin (the witness is configured with all of them), so every request is valid and answered 200: it
either advances that log (``old`` = the last cosigned size, a consistency proof, a checkpoint a few entries
larger) or re-cosigns the same size (freshness renewal), alternately. The requests, checkpoints and log
signatures are all made before the clock starts.

Baseline, one core, the same requests: one Ed25519 verify of the log's signature (``verifier.ed25519``,
libsodium) + the RFC 9162 consistency proof check (``verifier.merkle.verify_consistency``) + one Ed25519
sign with the same key backend the witness loads (``keys.load_signer``). The durable state write the witness
also does per request (SQLite WAL, ``synchronous=FULL``: one upsert committed) is measured on its own and
reported separately, as is the baseline including it.

Each figure is the median of ``--runs`` runs (default 3); the ratio is witness / baseline.

    python bench/witness_bench.py [--clients 4] [--requests 400] [--workers 2] [--threads 4] [--runs 3]
        [--publishes 100] [--dist-workers 2 1] [--poll 0.002] [--only throughput|publish]

Second half (issue 11, item 7): the time from a publish to a served checkpoint carrying K = 2 of N = 3
witness cosignatures, p50/p99/max, against one add-checkpoint round trip to one witness in the same run:
see :func:`bench_publish_to_k_cosignatures`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keys import generate_key_file, load_signer  # noqa: E402
from tests.distributor.helpers import ServeProcess, world_data_dir  # noqa: E402
from tests.factory import World  # noqa: E402
from tests.witnesses import WorldWitness, start_witnesses  # noqa: E402
from verifier import ed25519  # noqa: E402
from verifier.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint  # noqa: E402
from verifier.cosignature import cosigned_message, verify_cosignatures  # noqa: E402
from verifier.http import HttpClient  # noqa: E402
from verifier.merkle import consistency_proof, leaf_hash, leaves_reader, root, verify_consistency  # noqa: E402
from verifier.note import NoteSigner, NoteVerifier, parse_note  # noqa: E402
from verifier.tlogwitness import encode_add_checkpoint  # noqa: E402

WITNESS_NAME = "bench.fleetkeys.local/witness"
STEP = 3  # entries added by each advancing request


@dataclass(frozen=True)
class Request:
    """One add-checkpoint request and what its checks are made of (for the baseline)."""

    body: bytes
    old_size: int
    old_root: bytes
    size: int
    root: bytes
    proof: tuple[bytes, ...]
    text: bytes
    signature: bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_log(workdir: Path, index: int, count: int) -> tuple[str, list[Request]]:
    """Client ``index``'s log and its ``count`` requests: advance by STEP entries, then re-cosign, alternately."""
    origin = f"bench.fleetkeys.local/log{index}"
    key_path = workdir / f"log{index}.key"
    generate_key_file(key_path)
    signer = NoteSigner.from_signer(origin, load_signer(f"file:{key_path}"))
    leaves = [leaf_hash(b"bench entry %d %d" % (index, i)) for i in range(STEP * (count // 2 + 2))]
    node = leaves_reader(leaves)
    requests: list[Request] = []
    old, old_root, size = 0, root([]), 0
    for n in range(count):
        if n % 2 == 0:
            size = old + STEP
        new_root = root(leaves[:size])
        proof = tuple(consistency_proof(old, size, node)) if 0 < old < size else ()
        note = sign_checkpoint(Checkpoint(origin, size, new_root), signer)
        text, (sig,) = parse_note(note)
        requests.append(Request(encode_add_checkpoint(old, list(proof), note), old, old_root, size, new_root, proof,
                                text, sig.sig))
        old, old_root = size, new_root
    return f"{origin}={signer.verifier.vkey}", requests


# --- the witness over HTTP -----------------------------------------------------------------------------------------

def _client(port: int, bodies: list[bytes], barrier, results) -> None:
    """One log on one keep-alive connection: post its requests in order, each must be answered 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    barrier.wait()
    error = None
    for body in bodies:
        conn.request("POST", "/add-checkpoint", body=body)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            error = f"HTTP {resp.status}: {data[:200]!r}"
            break
    conn.close()
    results.put(error)


def witness_rate(workdir: Path, key_ref: str, logs: list[str], bodies: list[list[bytes]], workers: int,
                 threads: int, run: int) -> float:
    """Cosignatures/s of a fresh witness (new state) answering every client's requests."""
    data = workdir / f"witness-{run}"
    port = free_port()
    cmd = [sys.executable, "-m", "witness", "serve", "--name", WITNESS_NAME, "--key", key_ref, "--data", str(data),
           "--port", str(port), "--workers", str(workers), "--threads", str(threads)]
    for option in logs:
        cmd += ["--log", option]
    with open(workdir / f"witness-{run}.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_ready(port, proc)
        ctx = multiprocessing.get_context("fork")
        barrier, results = ctx.Barrier(len(bodies) + 1, timeout=60), ctx.Queue()
        clients = [ctx.Process(target=_client, args=(port, b, barrier, results)) for b in bodies]
        for c in clients:
            c.start()
        barrier.wait()
        start = time.perf_counter()
        errors = [results.get(timeout=600) for _ in clients]
        elapsed = time.perf_counter() - start
        for c in clients:
            c.join()
        if any(errors):
            raise RuntimeError(f"a client got a refusal: {next(e for e in errors if e)}")
    finally:
        proc.terminate()
        proc.wait(15)
    return sum(len(b) for b in bodies) / elapsed


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the witness exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the witness did not come up")


# --- the raw baseline ----------------------------------------------------------------------------------------------

def baseline_rate(requests: list[Request], log_keys: list[bytes], key_ref: str) -> float:
    """Per request: verify the log signature, check the consistency proof, sign the cosigned message."""
    signer = load_signer(key_ref)
    timestamp = int(time.time())
    start = time.perf_counter()
    for r, log_key in zip(requests, log_keys, strict=True):
        ed25519.verify(log_key, r.text, r.signature)
        if 0 < r.old_size < r.size:
            verify_consistency(r.old_size, r.size, r.proof, r.old_root, r.root)
        signer.sign(cosigned_message(r.text, timestamp))
    return len(requests) / (time.perf_counter() - start)


def state_write_rate(path: Path, requests: list[Request]) -> float:
    """The durable state write alone: one upsert per request, each committed (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE logs (origin TEXT PRIMARY KEY, size INTEGER, root BLOB, timestamp INTEGER, "
                 "checkpoint BLOB, cosignature BLOB, updated_at INTEGER)")
    start = time.perf_counter()
    for r in requests:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT size, root FROM logs WHERE origin = 'o'").fetchone()
        conn.execute("INSERT INTO logs VALUES ('o', ?, ?, 1, ?, ?, 1) ON CONFLICT(origin) DO UPDATE SET "
                     "size = excluded.size, root = excluded.root, checkpoint = excluded.checkpoint",
                     (r.size, r.root, r.text, r.signature))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(requests) / elapsed


# --- item 7, second half -------------------------------------------------------------------------------------------

PUBLISH_TOKEN = "test-publish-token-0123456789"  # what tests.distributor.helpers.world_data_dir writes
K_OF_N = (2, 3)


def _publish(port: int, bundle: bytes) -> float:
    """POST one bundle on a new connection (so gunicorn's accept decides the worker); the time of its 201."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/v1/bundles", body=bundle,
                 headers={"Authorization": f"Bearer {PUBLISH_TOKEN}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    answered = time.perf_counter()
    conn.close()
    if resp.status != 201:
        raise RuntimeError(f"publish: HTTP {resp.status}: {data[:200]!r}")
    return answered


def _witnessed_at(conn: http.client.HTTPConnection, size: int, log_key: NoteVerifier,
                  witnesses: list[NoteVerifier], poll: float, timeout: float = 30.0) -> float:
    """Poll ``GET /checkpoint`` every ``poll`` s until it serves ``size``; the time that answer arrived.
    The checkpoint must carry K verified witness cosignatures (raises otherwise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn.request("GET", "/checkpoint")
        resp = conn.getresponse()
        body = resp.read()
        arrived = time.perf_counter()
        if resp.status == 200:
            served = open_checkpoint(body, log_key).checkpoint.size
            if served == size:
                verify_cosignatures(body, witnesses, K_OF_N[0], what="witness")
                return arrived
            if served > size:
                raise RuntimeError(f"the distributor serves size {served}, past the {size} just published")
        time.sleep(poll)
    raise RuntimeError(f"size {size} was not served with {K_OF_N[0]} witness cosignatures within {timeout} s")


def _startup_round_done(conn: http.client.HTTPConnection, count: int, timeout: float = 30.0) -> None:
    """Wait until every witness cosigned the empty tree (the loop's first round, at start-up): a publish
    made while that exchange is in flight is asked for only at the loop's next tick (``period``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn.request("GET", "/api/v1/info")
        resp = conn.getresponse()
        info = json.loads(resp.read())
        if resp.status == 200 and sum(w["size"] == 0 for w in info["witnesses"]) == count:
            return
        time.sleep(0.01)
    raise RuntimeError("the witnesses did not all cosign the empty tree at start-up")


def publish_latencies(world: World, chain: list[bytes], base: Path, workers: int, poll: float,
                      jitter: float) -> list[float]:
    """One run: 3 fresh witness processes, one fresh distributor (SQLite, ``workers``); per publish, seconds
    from its 201 to the first ``/checkpoint`` of its size carrying K verified witness cosignatures. With
    ``jitter``, a uniform 0..``jitter`` s pause before each publish (publishes at random times, not in step
    with the witness loop's ticks)."""
    pause = random.Random(workers)
    witnesses = start_witnesses(world, base / "witnesses")
    try:
        data = world_data_dir(base / "dist", world)
        args = ["--data", str(data), "--origin", world.origin, "--trust-root", str(data / "trust-root.json"),
                "--workers", str(workers), "--witness-timeout", "2"]
        for w in witnesses:
            args += ["--witness", w.option]
        keys = [c.verifier for c in world.witness_cosigners]
        with ServeProcess(args, base / "dist.log") as dist:
            conn = http.client.HTTPConnection("127.0.0.1", dist.port, timeout=30)
            _startup_round_done(conn, len(witnesses))
            out = []
            for size, bundle in enumerate(chain, 1):
                if jitter:
                    time.sleep(pause.uniform(0, jitter))
                answered = _publish(dist.port, bundle)
                out.append(_witnessed_at(conn, size, world.log_note.verifier, keys, poll) - answered)
            conn.close()
        return out
    finally:
        for w in witnesses:
            w.stop()


def witness_round_trips(world: World, chain: list[bytes], base: Path) -> list[float]:
    """The baseline: seconds of one add-checkpoint exchange with one fresh witness process, made as the
    distributor makes it (``verifier.http.HttpClient``, a new connection each), advancing one entry a time."""
    leaves = [leaf_hash(e) for e in chain]
    node = leaves_reader(leaves)
    bodies = [encode_add_checkpoint(n - 1, consistency_proof(n - 1, n, node) if n > 1 else [],
                                    world.checkpoint(chain[:n], freshness=False)) for n in range(1, len(chain) + 1)]
    client = HttpClient(timeout=5, retries=0, user_agent="fleetkeys-bench")
    witness = WorldWitness(world, 0, base / "baseline-witness")
    try:
        out = []
        for body in bodies:
            start = time.perf_counter()
            resp = client.request("POST", witness.url + "/add-checkpoint", limit=8192, retry=False, body=body)
            out.append(time.perf_counter() - start)
            if resp.status != 200:
                raise RuntimeError(f"baseline witness: HTTP {resp.status}")
        return out
    finally:
        witness.stop()


#: A latency under this (seconds) means the append woke the witness loop itself (the lease holder's worker).
FAST = 0.05


@dataclass(frozen=True)
class Spread:
    """p50/p99/max of one run's latencies (seconds); p99 by linear interpolation (``statistics.quantiles``)."""

    p50: float
    p99: float
    max: float
    fast: int  # how many were under FAST
    fast_p50: float  # the median of those (nan if none), and of the others
    slow_p50: float

    @classmethod
    def of(cls, xs: list[float]) -> Spread:
        cuts = statistics.quantiles(xs, n=100, method="inclusive")
        fast, slow = [x for x in xs if x < FAST], [x for x in xs if x >= FAST]
        return cls(statistics.median(xs), cuts[98], max(xs), len(fast),
                   statistics.median(fast) if fast else math.nan, statistics.median(slow) if slow else math.nan)


def _median(values) -> float:
    """The median of the values that are not nan (a run may have no publish in one group); nan if none."""
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.1f}" for v in values)


def bench_publish_to_k_cosignatures(args: argparse.Namespace) -> None:
    """Time from a publish to a served checkpoint carrying K = 2 of N = 3 witness cosignatures (issue 11, item 7).

    Per run and per ``--dist-workers`` value: 3 real witness processes (``tests.witnesses``), one real
    distributor (SQLite, all three ``--witness``, trust root 2-of-3), ``--publishes`` bundles of one valid chain
    published one after another; for each, the time from the POST's 201 to the first ``GET /checkpoint``
    (polled every ``--poll`` s on a keep-alive connection) serving that size with 2 verified witness
    cosignatures. Baseline, same run: one add-checkpoint exchange with one witness, made as the distributor
    makes it (new connection, log-signed checkpoint, proof from the previous size). Figures: medians over runs
    of each run's p50/p99/max.

    Why ``--workers`` matters: only the process holding the database lease asks the witnesses. An append in
    that process wakes its loop at once (latency: about one witness round trip plus two database writes); an
    append in another worker is seen at the loop's next look at the head, ``period`` = 0.5 s after its last
    round. Published back to back, a publish follows the previous one's round by a few ms, so one landing in
    the other worker waits almost the whole period (about 490 ms, not a uniform 0–500 ms); with ``--jitter
    0.5`` the publishes come at random phases and that wait is spread over 0–500 ms.
    """
    world = World(witness_count=K_OF_N[1], witness_threshold=K_OF_N[0])
    chain = world.chain(args.publishes)
    base = Path(tempfile.mkdtemp(prefix="fleetkeys-publish-bench-"))
    try:
        spreads: dict[int, list[Spread]] = {w: [] for w in args.dist_workers}
        rtts: list[float] = []
        for run in range(args.runs):
            for workers in args.dist_workers:
                spreads[workers].append(Spread.of(publish_latencies(world, chain, base / f"run{run}-w{workers}",
                                                                    workers, args.poll, args.jitter)))
            rtts.append(statistics.median(witness_round_trips(world, chain, base / f"run{run}-baseline")))
        rtt = statistics.median(rtts)
        spacing = f"a random 0-{args.jitter * 1000:g} ms apart" if args.jitter else "back to back"
        print(f"publish -> /checkpoint with {K_OF_N[0]} of {K_OF_N[1]} witness cosignatures: {args.publishes} "
              f"publishes a run ({spacing}), polled every {args.poll * 1000:g} ms, median of {args.runs} runs (ms)")
        print(f"baseline: one add-checkpoint round trip to one witness, p50 {rtt * 1000:.1f}   "
              f"(runs: {_ms(rtts)})")
        for workers, runs in spreads.items():
            p50, p99 = statistics.median(s.p50 for s in runs), statistics.median(s.p99 for s in runs)
            top, fast = statistics.median(s.max for s in runs), statistics.median(s.fast for s in runs)
            print(f"distributor --workers {workers}: p50 {p50 * 1000:7.1f}  p99 {p99 * 1000:7.1f}  "
                  f"max {top * 1000:7.1f}   p50/baseline {p50 / rtt:5.1f}  p99/baseline {p99 / rtt:5.1f}   "
                  f"under {FAST * 1000:.0f} ms: {fast:g}/{args.publishes}")
            print(f"    runs p50: {_ms([s.p50 for s in runs])}   p99: {_ms([s.p99 for s in runs])}   "
                  f"max: {_ms([s.max for s in runs])}")
            print(f"    under {FAST * 1000:.0f} ms (the append woke the lease holder's loop): median "
                  f"{_ms([_median(s.fast_p50 for s in runs)])}; the others (seen at its next tick): "
                  f"median {_ms([_median(s.slow_p50 for s in runs)])}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="client processes, one log (origin) each")
    parser.add_argument("--requests", type=int, default=400, help="requests per client per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--publishes", type=int, default=100, help="publishes per run (publish -> K cosignatures)")
    parser.add_argument("--dist-workers", type=int, nargs="+", default=[2, 1],
                        help="distributor worker counts to measure publish -> K cosignatures with")
    parser.add_argument("--poll", type=float, default=0.002, help="seconds between GET /checkpoint polls")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="a random 0..JITTER s pause before each publish (default: publish back to back)")
    parser.add_argument("--only", choices=["throughput", "publish"],
                        help="run one half only: witness cosignatures/s, or publish -> K cosignatures")
    args = parser.parse_args()
    if args.only != "throughput":
        if args.publishes < 2:
            parser.error("--publishes must be at least 2 (p99 needs two samples)")
        if args.only == "publish":
            bench_publish_to_k_cosignatures(args)
            return 0

    workdir = Path(tempfile.mkdtemp(prefix="fleetkeys-witness-bench-"))
    try:
        key_path = workdir / "witness.key"
        generate_key_file(key_path)
        key_ref = f"file:{key_path}"
        made = [make_log(workdir, i, args.requests) for i in range(args.clients)]
        logs = [option for option, _ in made]
        bodies = [[r.body for r in reqs] for _, reqs in made]
        flat = [r for _, reqs in made for r in reqs]
        log_keys = [load_signer(f"file:{workdir / f'log{i}.key'}").public_key
                    for i, (_, reqs) in enumerate(made) for _ in reqs]
        print(f"{args.clients} clients x {args.requests} requests (half advancing by {STEP} entries with a proof, "
              f"half re-cosigning), witness {args.workers} workers x {args.threads} threads, {os.cpu_count()} CPUs, "
              f"median of {args.runs} runs")
        served, base, writes = [], [], []
        for run in range(args.runs):
            served.append(witness_rate(workdir, key_ref, logs, bodies, args.workers, args.threads, run))
            base.append(baseline_rate(flat, log_keys, key_ref))
            writes.append(state_write_rate(workdir / f"state-{run}.sqlite", flat))
        w, b, s = statistics.median(served), statistics.median(base), statistics.median(writes)
        with_write = 1 / (1 / b + 1 / s)
        print(f"witness over HTTP       cosignatures/s {w:>10,.0f}   (runs: {', '.join(f'{x:,.0f}' for x in served)})")
        print(f"baseline, one core      verify + proof + sign/s {b:>10,.0f}   ratio witness/baseline {w / b:.3f}")
        print(f"durable state write     commits/s {s:>10,.0f}   baseline incl. the write {with_write:>10,.0f}   "
              f"ratio {w / with_write:.3f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.only is None:
        bench_publish_to_k_cosignatures(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
