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

The second half of issue 11's item 7 (time from a publish to a checkpoint carrying K witness cosignatures,
p50/p99) needs the distributor's witness client: see :func:`bench_publish_to_k_cosignatures`.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
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
from verifier import ed25519  # noqa: E402
from verifier.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from verifier.cosignature import cosigned_message  # noqa: E402
from verifier.merkle import consistency_proof, leaf_hash, leaves_reader, root, verify_consistency  # noqa: E402
from verifier.note import NoteSigner, parse_note  # noqa: E402
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

def bench_publish_to_k_cosignatures(args: argparse.Namespace) -> None:
    """Time from a publish to a served checkpoint carrying K witness cosignatures, p50/p99 (issue 11, item 7).

    Not measured yet: it needs the distributor's witness client (issue 11, item 2), which is being built.
    The place for it: start a distributor configured with N witnesses (this file's witness process, N times),
    publish, poll ``/checkpoint`` until it carries K verified witness cosignatures, and report p50/p99 over
    many publishes.
    """
    print("publish -> checkpoint with K witness cosignatures (p50/p99): not measured yet (needs the "
          "distributor's witness client, issue 11 item 2)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="client processes, one log (origin) each")
    parser.add_argument("--requests", type=int, default=400, help="requests per client per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

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
        bench_publish_to_k_cosignatures(args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
