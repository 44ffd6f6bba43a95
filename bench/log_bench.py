"""Distributor log benchmark: sustained appends/s and tile reads/s, each against a baseline from the same run.

Appends: ``--entries`` entries of about ``--entry-size`` bytes in batches of ``--batch`` through
``Log.append_entries`` (one transaction per batch holding entries, tiles and the newly signed
checkpoint; the static export writing tiles, entry bundles and checkpoint files is on and is waited
for at the end), on SQLite and on PostgreSQL. Baseline: raw SHA-256 leaf hashing plus plain batched
inserts of the same rows (one committed transaction per batch) into the same kind of database with the
same durability settings.

Reads: tile requests per second through ``fleetkeys serve`` (gunicorn, reading tiles from the
database) and through nginx serving the exported static directory with the README configuration,
with ``wrk`` if installed (else a multi-process keep-alive Python client).

    python bench/log_bench.py [--entries 100000] [--batch 256] [--no-postgres] [--read-seconds 5]

Targets on the 2-core reference machine: SQLite >= 50,000 appends/s and >= 0.7x its baseline;
PostgreSQL >= 0.5x its baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import multiprocessing
import os
import random
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distributor.export import BackgroundWriter, StaticWriter, nginx_server_block  # noqa: E402
from distributor.log import Log  # noqa: E402
from distributor.storage import open_storage  # noqa: E402
from keys import generate_key_file, load_signer  # noqa: E402
from verifier.note import NoteSigner  # noqa: E402

ORIGIN = "bench.fleetkeys.local/log"
PG_URL = os.environ.get("FLEETKEYS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def make_entries(n: int, size: int) -> list[bytes]:
    rng = random.Random(20261125)
    return [b"entry %08d " % i + rng.randbytes(size - 15) for i in range(n)]


def batches(entries: list[bytes], batch: int):
    for i in range(0, len(entries), batch):
        yield i, entries[i:i + batch]


# -- baselines ------------------------------------------------------------------------------------------
def baseline_sqlite(path: str, entries: list[bytes], batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    sha = hashlib.sha256
    start = time.perf_counter()
    for first, rows in batches(entries, batch):
        hashes = [sha(b"\x00" + e).digest() for e in rows]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO entries (idx, data) VALUES (?, ?)", list(enumerate(rows, first)))
        conn.execute("COMMIT")
        del hashes
    elapsed = time.perf_counter() - start
    conn.close()
    return len(entries) / elapsed


def baseline_postgres(url: str, schema: str, entries: list[bytes], batch: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute("CREATE TABLE baseline (idx BIGINT PRIMARY KEY, data BYTEA NOT NULL)")
        sha = hashlib.sha256
        cur = conn.cursor()
        start = time.perf_counter()
        for first, rows in batches(entries, batch):
            hashes = [sha(b"\x00" + e).digest() for e in rows]
            with conn.transaction():
                cur.executemany("INSERT INTO baseline (idx, data) VALUES (%s, %s)", list(enumerate(rows, first)))
            del hashes
        return len(entries) / (time.perf_counter() - start)


# -- fleetkeys appends --------------------------------------------------------------------------------------
def fleetkeys_appends(database: str, schema: str | None, data: Path, entries: list[bytes], batch: int) -> float:
    log_signer = load_signer(str(data / "log.key"))
    freshness_signer = load_signer(str(data / "freshness.key"))
    storage = open_storage(database, schema=schema)
    from distributor.freshness import Freshness

    writer = StaticWriter(str(data / "static"), log_key=NoteSigner.from_signer(ORIGIN, log_signer).verifier,
                          freshness=Freshness(ORIGIN, freshness_signer))
    static = BackgroundWriter(writer, storage)
    log = Log(storage, origin=ORIGIN, log_signer=log_signer, freshness_signer=freshness_signer, static=static)
    start = time.perf_counter()
    for _, rows in batches(entries, batch):
        log.append_entries(rows)
    static.flush()  # sustained: the static files are part of the work
    elapsed = time.perf_counter() - start
    assert writer.exported_size() == len(entries)
    static.close()
    storage.close()
    return len(entries) / elapsed


def new_data_dir(root: Path, name: str) -> Path:
    data = root / name
    data.mkdir(mode=0o700)
    generate_key_file(data / "log.key")
    generate_key_file(data / "freshness.key")
    return data


# -- reads ----------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback server
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def tile_paths(size: int) -> list[str]:
    from verifier.tiles import TILE_WIDTH, tile_path

    return [tile_path(0, n) for n in range(size // TILE_WIDTH)]


def _client_worker(args: tuple[int, list[str], float, int]) -> int:
    port, paths, seconds, seed = args
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.request("GET", "/" + rng.choice(paths))
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        done += 1
    conn.close()
    return done


def read_rate(port: int, paths: list[str], seconds: float, connections: int, workdir: Path) -> tuple[float, str]:
    wrk = shutil.which("wrk")
    if wrk:
        script = workdir / f"paths-{port}.lua"
        lua_paths = ",".join(f'"/{p}"' for p in paths)
        script.write_text(f"local paths = {{{lua_paths}}}\nlocal i = 0\n"
                          "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
        out = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script),
                              f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "wrk"
    with multiprocessing.get_context("spawn").Pool(connections) as pool:
        counts = pool.map(_client_worker, [(port, paths, seconds, i) for i in range(connections)])
    return sum(counts) / seconds, "python keep-alive client"


def nginx_conf(workdir: Path, static_dir: Path, port: int) -> Path:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {k}_temp_path {workdir}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = workdir / "nginx.conf"
    conf.write_text(f"{user}worker_processes 2;\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log;\n"
                    f"events {{ worker_connections 1024; }}\nhttp {{\n    access_log off;\n{temp}\n"
                    f"{nginx_server_block(str(static_dir), f'127.0.0.1:{port}')}}}\n")
    return conf


def bench_reads(data: Path, size: int, seconds: float, connections: int, workdir: Path) -> dict[str, float]:
    paths = tile_paths(size)
    results: dict[str, float] = {}
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "distributor", "serve", "--data", str(data), "--origin", ORIGIN,
                              "--port", str(port), "--workers", "2", "--no-static"], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/checkpoint")
        results["serve"], tool = read_rate(port, paths, seconds, connections, workdir)
    finally:
        serve.terminate()
        serve.wait(30)
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx_bin):
        print("nginx not installed: skipping the static read baseline")
        return results
    port = free_port()
    nginx = subprocess.Popen([nginx_bin, "-c", str(nginx_conf(workdir, data / "static", port)), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/checkpoint")
        results["nginx"], tool = read_rate(port, paths, seconds, connections, workdir)
    finally:
        nginx.terminate()
        nginx.wait(30)
    results["tool"] = tool  # type: ignore[assignment]
    return results


# -- main ----------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--entry-size", type=int, default=1024)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--read-seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    entries = make_entries(args.entries, args.entry_size)
    root = Path(tempfile.mkdtemp(prefix="fleetkeys-bench-"))
    ok = True
    try:
        print(f"{args.entries} entries of {args.entry_size} bytes, batches of {args.batch}, "
              f"{os.cpu_count()} CPUs")
        base = baseline_sqlite(str(root / "baseline.db"), entries, args.batch)
        data = new_data_dir(root, "sqlite")
        rate = fleetkeys_appends(f"sqlite:///{data / 'log.db'}", None, data, entries, args.batch)
        ratio = rate / base
        ok &= rate >= 50_000 and ratio >= 0.7
        print(f"SQLite      appends/s {rate:>10,.0f}   baseline (hash + insert) {base:>10,.0f}   "
              f"ratio {ratio:.2f}   target >= 50,000 and >= 0.70: {'PASS' if rate >= 50_000 and ratio >= 0.7 else 'FAIL'}")
        if not args.no_postgres:
            import psycopg

            schema = "bench_" + secrets.token_hex(4)
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            try:
                pg_base = baseline_postgres(PG_URL, schema, entries, args.batch)
                pg_data = new_data_dir(root, "postgres")
                pg_rate = fleetkeys_appends(PG_URL, schema, pg_data, entries, args.batch)
            finally:
                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
            pg_ratio = pg_rate / pg_base
            ok &= pg_ratio >= 0.5
            print(f"PostgreSQL  appends/s {pg_rate:>10,.0f}   baseline (hash + insert) {pg_base:>10,.0f}   "
                  f"ratio {pg_ratio:.2f}   target >= 0.50: {'PASS' if pg_ratio >= 0.5 else 'FAIL'}")
        reads = bench_reads(data, args.entries, args.read_seconds, args.connections, root)
        line = f"tile reads/s  fleetkeys serve {reads['serve']:>10,.0f}"
        if "nginx" in reads:
            line += f"   nginx (static dir) {reads['nginx']:>10,.0f}   ratio {reads['serve'] / reads['nginx']:.2f}"
        print(line + f"   ({reads.get('tool', '')}, {args.connections} connections, {args.read_seconds:g} s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
