"""Anchor-signer throughput: signatures/s through the HTTP service vs raw Ed25519 signs, same run.

    python bench/signer_bench.py [--requests 600] [--threads 4]

Measures, in this order and on this machine:

1. raw Ed25519 signs/s of a statement (83 bytes): PyNaCl (libsodium, what the signer uses) and pyca
   ``cryptography`` (OpenSSL), the baselines;
2. the journal alone (``signer.journal.Journal.sign`` in process: rule check, sign, verify, insert,
   fsync'd COMMIT), with its own time split;
3. the real service: ``python -m signer serve`` (gunicorn, gthread workers) over HTTP with one
   keep-alive session sequentially, then with ``--threads`` client threads (one namespace each,
   since epochs of one namespace are sequential by design) against 1 and then 2 workers.

It prints signatures/s, the ratio to raw PyNaCl signs, and where a request's time goes, from the
``Server-Timing`` header the signer sets (lock wait, sign+verify, insert+COMMIT) and the client-side
latency around it (HTTP, WSGI, JSON, auth).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keys import load_signer  # noqa: E402
from signer.config import init_data_dir  # noqa: E402
from signer.journal import Journal  # noqa: E402
from signer.rules import STATUS_ONLINE, SignRequest  # noqa: E402
from verifier.statement import Statement  # noqa: E402

MESSAGE = Statement(1, "example.messenger/backup-vaults/v1", 1_795_000_000_000, 7, bytes(32)).encode()


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def raw_signs(n: int) -> tuple[float, float]:
    nacl_key = SigningKey(os.urandom(32))
    ossl_key = Ed25519PrivateKey.generate()
    return rate(lambda: nacl_key.sign(MESSAGE), n), rate(lambda: ossl_key.sign(MESSAGE), n)


def digest(ns: str, epoch: int) -> bytes:
    return hashlib.sha256(f"{ns}/{epoch}".encode()).digest()


def journal_only(data: Path, n: int) -> tuple[float, dict[str, float]]:
    signer = load_signer(f"file:{data / 'anchor.key'}")
    journal = Journal(data / "bench-journal.sqlite")
    journal.create_namespace("j", ciphersuite=1, status=STATUS_ONLINE, log_directory=None, now_ms=1, client="bench",
                             mode="digest")
    split = {"lock": 0.0, "sign": 0.0, "commit": 0.0}
    start = time.perf_counter()
    for epoch in range(1, n + 1):
        _, _, t = journal.sign(SignRequest("j", epoch, digest("j", epoch)), signer.sign, signer.public_key,
                               now_ms=int(time.time() * 1000), client="bench", clock=time.perf_counter)
        split["lock"] += t.lock
        split["sign"] += t.sign
        split["commit"] += t.commit
    elapsed = time.perf_counter() - start
    journal.close()
    return n / elapsed, {k: v / n * 1e6 for k, v in split.items()} | {"total": elapsed / n * 1e6}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        out[name] = float(dur) * 1000  # ms -> us
    return out


@contextlib.contextmanager
def serve(data: Path, *, workers: int, threads: int):
    """``python -m signer serve`` on a free port (its own process group, stopped on exit); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "signer", "serve", "--data", str(data), "--port", str(port),
                             "--workers", str(workers), "--threads", str(threads)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    try:
        for _ in range(200):
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/info", timeout=1).ok:
                    break
            time.sleep(0.05)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


def http_run(url: str, token: str, namespaces: list[str], per_thread: int) -> tuple[float, dict[str, float]]:
    """Sign ``per_thread`` epochs in each namespace, one client thread (keep-alive session) each."""
    totals = {"lock": 0.0, "sign": 0.0, "commit": 0.0, "latency": 0.0}
    lock = threading.Lock()
    errors: list[str] = []

    def worker(ns: str) -> None:
        local = dict.fromkeys(totals, 0.0)
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {token}"
            for epoch in range(1, per_thread + 1):
                t0 = time.perf_counter()
                resp = s.post(f"{url}/namespaces/{ns}/audits", json={"epoch": epoch, "digest": digest(ns, epoch).hex()},
                              timeout=30)
                local["latency"] += (time.perf_counter() - t0) * 1e6
                if resp.status_code != 200:
                    errors.append(f"{resp.status_code} {resp.text[:200]}")
                    return
                for k, v in server_timing(resp.headers["Server-Timing"]).items():
                    local[k] += v
        with lock:
            for k, v in local.items():
                totals[k] += v

    threads = [threading.Thread(target=worker, args=(ns,)) for ns in namespaces]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"signer error: {errors[0]}")
    n = per_thread * len(namespaces)
    return n / elapsed, {k: v / n for k, v in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=600, help="HTTP signatures per run (default 600)")
    ap.add_argument("--threads", type=int, default=4, help="client threads in the concurrent run (default 4)")
    args = ap.parse_args()

    nacl_rate, ossl_rate = raw_signs(20000)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "signer"
        init_data_dir(data)
        journal_rate, journal_split = journal_only(data, args.requests)

        namespaces = ["seq"] + [f"t{i}" for i in range(args.threads)]
        journal = Journal(data / "journal.sqlite")
        for ns in namespaces:
            journal.create_namespace(ns, ciphersuite=1, status=STATUS_ONLINE, log_directory=None, now_ms=1, mode="digest",
                                     client="bench")
        journal.close()
        token = (data / "tokens" / "write.token").read_text().strip()
        with serve(data, workers=1, threads=max(4, args.threads)) as url:
            seq_rate, seq_split = http_run(url, token, ["seq"], args.requests)
            par_rate, par_split = http_run(url, token, namespaces[1:], max(1, args.requests // args.threads))
        more = [f"w{i}" for i in range(args.threads)]
        journal = Journal(data / "journal.sqlite")
        for ns in more:
            journal.create_namespace(ns, ciphersuite=1, status=STATUS_ONLINE, log_directory=None, now_ms=1, mode="digest",
                                     client="bench")
        journal.close()
        with serve(data, workers=2, threads=max(4, args.threads)) as url:
            two_rate, two_split = http_run(url, token, more, max(1, args.requests // args.threads))

    print(f"signer benchmark ({os.cpu_count()} CPUs; statement {len(MESSAGE)} bytes; journal fsync'd, WAL, "
          "synchronous=FULL)")
    print(f"  raw Ed25519 sign, PyNaCl (libsodium)    {nacl_rate:9,.0f} /s   baseline")
    print(f"  raw Ed25519 sign, cryptography (OpenSSL){ossl_rate:9,.0f} /s   {ossl_rate / nacl_rate:6.2f}x")
    print(f"  journal.sign in process (no HTTP)       {journal_rate:9,.0f} /s   {journal_rate / nacl_rate:6.3f}x")
    print(f"  HTTP, 1 keep-alive client, sequential   {seq_rate:9,.0f} /s   {seq_rate / nacl_rate:6.3f}x")
    print(f"  HTTP, {args.threads} clients, 1 worker (gthread)     {par_rate:9,.0f} /s   {par_rate / nacl_rate:6.3f}x")
    print(f"  HTTP, {args.threads} clients, 2 workers               {two_rate:9,.0f} /s   {two_rate / nacl_rate:6.3f}x")
    print()
    print("where one signature's time goes (microseconds, mean):")
    print(f"  journal in process: lock wait {journal_split['lock']:7.1f}  rules+sign+verify {journal_split['sign']:7.1f}"
          f"  insert+COMMIT(fsync) {journal_split['commit']:7.1f}  total {journal_split['total']:7.1f}")
    for name, split in (("HTTP sequential", seq_split), (f"HTTP {args.threads} cl, 1 worker", par_split),
                        (f"HTTP {args.threads} cl, 2 workers", two_split)):
        server = split["lock"] + split["sign"] + split["commit"]
        print(f"  {name:18}: lock wait {split['lock']:7.1f}  rules+sign+verify {split['sign']:7.1f}  "
              f"insert+COMMIT(fsync) {split['commit']:7.1f}  HTTP/WSGI/JSON/auth {split['latency'] - server:7.1f}  "
              f"client latency {split['latency']:7.1f}")


if __name__ == "__main__":
    main()
