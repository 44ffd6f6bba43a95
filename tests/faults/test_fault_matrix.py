"""The fault matrix: every file system call one publish (and one signature) makes, failed with EIO and
killed there, one at a time; afterwards the service starts, ``fleetkeys fsck`` finds the log (journal)
consistent, every acknowledged entry is there, and re-posting the same request is safe.

How it works (tests/faults/strace_faults.py): a real ``fleetkeys serve`` (SQLite, static export on,
one worker, one request thread) publishes epoch 1 into an empty log with ``strace`` attached to the
worker; every file-related call it makes is named (kind, file, thread, ordinal). Then for each sampled
invocation — every kind, at most ``FLEETKEYS_FAULT_SAMPLE`` (default 2) invocations of each: first,
last, evenly between — the same publish runs again from a copy of the same starting state, once with
that call failing with EIO and once with the worker SIGKILLed on it. The service is killed and
restarted, the bundle re-posted, the log checked. The signer's journal gets the same for one
sign-keyset request; PostgreSQL gets its backend terminated while idle and in the middle of the
publish's transaction (and the worker killed there). The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.distributor import conftest as distributor_fixtures
from tests.distributor.conftest import PG_URL
from tests.distributor.helpers import TOKEN, ServeProcess, world_data_dir
from tests.distributor.test_storage_faults import _Blocker
from tests.factory import World, seed
from tests.faults.strace_faults import (
    FILE_CALLS,
    Call,
    Tracer,
    parse_trace,
    sample,
    strace_usable,
    targets,
    threads_of,
    worker_pids,
)
from tests.service_process import REPO, wait_for
from tests.signer.conftest import NS
from tests.signer.keysets import chain as keyset_chain
from tests.signer.process import SignerProcess, prepare_data_dir

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PER_KIND = int(os.environ.get("FLEETKEYS_FAULT_SAMPLE", "2"))
PARALLEL = 2  # fault runs at a time (each is mostly waiting on its processes)
MODES = ("error=EIO", "signal=KILL")
pg_db = distributor_fixtures.pg_db  # a fresh PostgreSQL schema per test


@pytest.fixture(scope="module", autouse=True)
def _needs_strace():
    reason = strace_usable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the fault matrix must run in CI: {reason}")
        pytest.skip(reason)


def fsck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetkeys", "fsck", *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


@dataclass
class Outcome:
    """What one injected fault did and what was found after the restart."""

    call: Call
    mode: str
    injected: int = 0
    answer: str = ""
    acknowledged: bool = False
    body: dict = field(default_factory=dict)  # the acknowledgement's JSON
    lost: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def survived(self) -> bool:
        return self.injected > 0 and not self.problems


class Matrix:
    """A service under test: how to start it from a copy of the starting state, the request, the checks."""

    name = ""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, per_kind: int) -> list[Outcome]:
        started = time.monotonic()
        calls, pool = self.trace()
        chosen = sample(calls, per_kind)
        absent = [k for k in FILE_CALLS if k not in chosen]
        print(f"\n[{self.name}] one request traced: {len(calls)} file calls of {len(chosen)} kinds "
              f"({', '.join(f'{k} {sum(c.kind == k for c in calls)}' for k in chosen)}); never made: "
              f"{', '.join(absent)}")
        print(f"[{self.name}] sampling: every kind, at most {per_kind} invocations each (first, last, evenly "
              f"between) x {len(MODES)} modes = {sum(map(len, chosen.values())) * len(MODES)} faults")
        jobs = [(c, m) for cs in chosen.values() for c in cs for m in MODES]
        counter = iter(range(len(jobs)))
        lock = threading.Lock()

        def one(job):
            with lock:
                n = next(counter)
            return self.fault(self.root / f"run{n}", pool, *job)

        with ThreadPoolExecutor(PARALLEL) as ex:
            outcomes = list(ex.map(one, jobs))
        report(self.name, outcomes, time.monotonic() - started)
        return outcomes

    def trace(self) -> tuple[list[Call], set[int]]:
        work = self.copy(self.root / "trace")
        with self.start(work) as proc:
            [worker] = worker_pids(proc.proc.pid)
            tids = threads_of(worker)
            tracer = Tracer(tids, work.parent / "trace.out", FILE_CALLS)
            self.request(proc)
            self.settle(work, lambda: False)
            text = tracer.stop()
        # The request's own files only (not /dev/urandom, Python's modules or sockets), named relative to
        # the copy so that the rerun's copy is hit.
        calls = [c for c in parse_trace(text, tids) if c.path.startswith(str(work) + "/")]
        calls = [Call(c.kind, c.path[len(str(work)) + 1:], c.thread, c.ordinal, c.pool) for c in calls]
        return calls, {c.thread for c in calls if c.pool}

    def fault(self, run: Path, pool: set[int], call: Call, mode: str) -> Outcome:
        out = Outcome(call, mode)
        work = self.copy(run)
        proc = self.start(work)
        try:
            [worker] = worker_pids(proc.proc.pid)
            tids = threads_of(worker)
            tracer = Tracer(targets(call, tids, pool), run / "inject.out", (call.kind,), paths=(str(work / call.path),),
                            inject=f"{call.kind}:{mode}:when={call.ordinal}")
            try:
                resp = self.request(proc)
                out.answer = str(resp.status_code)
                out.acknowledged = resp.status_code in self.acks
                if out.acknowledged:
                    out.body = resp.json()
                self.settle(work, lambda: not _alive(worker))  # a kill may come in the export, after the answer
                # The export's last calls (its directory's fsync, closing its lock) come after the checkpoint
                # that settle() waits for: give them a moment to be made (and failed, or killed there).
                _wait_until(lambda: not _alive(worker) or "(INJECTED)" in tracer.out.read_text(errors="replace"), 2)
            except requests.RequestException as exc:
                out.answer = type(exc).__name__
            finally:
                text = tracer.stop()
            # An error is one "(INJECTED)" line. A kill shows as the call without a result ("= ?"), and
            # "+++ killed by SIGKILL" when strace saw the thread go; the worker must be gone either way.
            if mode == "error=EIO":
                out.injected = text.count("(INJECTED)")
            else:
                unfinished = any(f" {call.kind}(" in line and line.endswith("= ?") for line in text.splitlines())
                out.injected = int(not _alive(worker) and ("+++ killed by SIGKILL" in text or unfinished))
            if out.answer == "500":
                out.problems.append(f"answered 500: {proc.log()[-2000:]}")
        finally:
            proc.kill()
        try:
            self.check(work, run, out)
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its fault
            out.problems.append(f"{type(exc).__name__}: {exc}")
        if out.survived:
            shutil.rmtree(run, ignore_errors=True)
        return out

    acks: tuple[int, ...] = ()

    def copy(self, run: Path) -> Path:
        run.mkdir(parents=True)
        return Path(shutil.copytree(self.base, run / "data"))


def _wait_until(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting for gunicorn to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def report(name: str, outcomes: list[Outcome], seconds: float) -> None:
    injected = sum(o.injected > 0 for o in outcomes)
    survived = sum(o.survived for o in outcomes)
    lost = sum(o.lost for o in outcomes)
    answers = Counter(f"{o.mode.split('=')[1]}->{o.answer}" for o in outcomes)
    print(f"[{name}] faults injected {injected}/{len(outcomes)}, survived {survived}, acknowledged entries lost "
          f"{lost}, answers {dict(sorted(answers.items()))}, {seconds:.0f} s")
    for o in outcomes:
        if not o.survived:
            print(f"[{name}] FAILED {o.mode} {o.call.label} (thread {o.call.thread}): answer {o.answer}, "
                  f"injected {o.injected}: {'; '.join(o.problems)[:3000]}")


# -- the distributor on SQLite, static export on ------------------------------------------------------
class DistributorMatrix(Matrix):
    name = "distributor/sqlite"
    acks = (200, 201)

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.world = World()
        self.bundle = self.world.chain(1)[0]
        self.base = world_data_dir(root / "base", self.world)
        with self.start(self.base):
            pass  # the first start creates log.db and static/: the traced publish is the first entry

    def args(self, data: Path) -> list[str]:
        return ["--data", str(data), "--origin", self.world.origin, "--trust-root", str(data / "trust-root.json"),
                "--workers", "1", "--threads", "1", "--freshness-interval", "3600"]

    def start(self, data: Path) -> ServeProcess:
        return ServeProcess(self.args(data), data.parent / "serve.log")

    def request(self, proc) -> requests.Response:
        return requests.post(proc.url + "/api/v1/bundles", data=self.bundle, headers=AUTH, timeout=15)

    def settle(self, data: Path, killed: Callable[[], bool]) -> None:
        """Wait for the static export of the publish (it runs after the response), or the worker's death."""
        cp = data / "static" / "checkpoint"
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not killed():
            if cp.exists() and cp.read_bytes().split(b"\n")[1:2] == [b"1"]:
                return
            time.sleep(0.02)

    def check(self, data: Path, run: Path, out: Outcome) -> None:
        with ServeProcess(self.args(data), run / "restart.log") as proc:
            got = requests.get(proc.url + "/api/v1/bundles/1", timeout=10)
            if out.acknowledged and (got.status_code != 200 or base64.b64decode(got.json()["bundle"]) != self.bundle):
                out.lost = True
                out.problems.append(f"acknowledged entry missing after restart: {got.status_code}")
            again = requests.post(proc.url + "/api/v1/bundles", data=self.bundle, headers=AUTH, timeout=15)
            if again.status_code not in (200, 201) or (out.acknowledged and again.status_code != 200):
                out.problems.append(f"re-post answered {again.status_code} {again.text[:200]}")
            size = requests.get(proc.url + "/api/v1/info", timeout=10).json()["size"]
            if size != 1:
                out.problems.append(f"log size {size} after one bundle posted (duplicate or lost)")
            wait_for(lambda: (data / "static" / "checkpoint").read_bytes().split(b"\n")[1] == b"1", 10,
                     "the static export after the restart")
        result = fsck("--data", str(data), "--static", str(data / "static"))
        if result.returncode != 0:
            out.problems.append(f"fsck exit {result.returncode}: {(result.stdout + result.stderr)[-1500:]}")


# -- the anchor signer's journal ----------------------------------------------------------------------
class SignerMatrix(Matrix):
    name = "signer/journal"
    acks = (200,)

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.base = root / "base" / "signer"
        self.tokens = prepare_data_dir(self.base, (NS,), key_seed=seed("anchor"))
        self.keyset = keyset_chain(NS, 1)[0]

    def start(self, data: Path) -> SignerProcess:
        return SignerProcess(data, log_path=data.parent / "signer.log")

    def request(self, proc) -> requests.Response:
        return self.sign(proc)

    def sign(self, proc) -> requests.Response:
        return requests.post(proc.url + "/api/v1/sign-keyset", data=self.keyset, timeout=15, headers={
            "Authorization": f"Bearer {self.tokens['write']}", "Content-Type": "application/json"})

    def settle(self, data: Path, killed: Callable[[], bool]) -> None:
        pass  # the signature is stored before it is answered: nothing runs after the response

    def copy(self, run: Path) -> Path:
        run.mkdir(parents=True)
        return Path(shutil.copytree(self.base, run / "signer"))

    def check(self, data: Path, run: Path, out: Outcome) -> None:
        proc = SignerProcess(data, log_path=run / "restart.log")
        with proc:
            got = requests.get(f"{proc.url}/namespaces/{NS}/audits/1", timeout=10)
            if out.acknowledged and (got.status_code != 200 or got.json()["signature"] != out.body["signature"]):
                out.lost = True
                out.problems.append(f"acknowledged signature missing or changed after restart: {got.status_code}")
            resigned = self.sign(proc)
            if resigned.status_code != 200:
                out.problems.append(f"re-sign answered {resigned.status_code}")
            elif got.status_code == 200 and resigned.json()["signature"] != got.json()["signature"]:
                out.problems.append("re-sign made a second, different signature for epoch 1")
            again = requests.get(f"{proc.url}/namespaces/{NS}/audits/1", timeout=10)
            if again.status_code != 200 or (resigned.status_code == 200
                                            and again.json()["signature"] != resigned.json()["signature"]):
                out.problems.append(f"audit of epoch 1 after the re-sign: {again.status_code}")
        result = fsck("--journal", str(data / "journal.sqlite"))
        if result.returncode != 0:
            out.problems.append(f"fsck exit {result.returncode}: {(result.stdout + result.stderr)[-1500:]}")


def test_every_file_call_of_a_publish_failed_or_killed_loses_nothing(tmp_path):
    outcomes = DistributorMatrix(tmp_path).run(PER_KIND)
    assert sum(o.lost for o in outcomes) == 0
    assert all(o.survived for o in outcomes), [f"{o.mode} {o.call.label}" for o in outcomes if not o.survived]


def test_every_file_call_of_a_signature_failed_or_killed_loses_nothing(tmp_path):
    outcomes = SignerMatrix(tmp_path).run(PER_KIND)
    assert sum(o.lost for o in outcomes) == 0
    assert all(o.survived for o in outcomes), [f"{o.mode} {o.call.label}" for o in outcomes if not o.survived]


# -- PostgreSQL: the backend terminated while idle and mid-transaction, the worker killed mid-transaction --
def _backends_of(worker: int) -> list[int]:
    """The PostgreSQL backends serving ``worker`` (matched by the client ports of its sockets)."""
    out = subprocess.run(["ss", "-tnpH", "dst", "127.0.0.1:5432"], capture_output=True, text=True).stdout
    ports = [int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={worker}," in line]
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)",
                                           (ports,)).fetchall()]


def _terminate(pids: list[int]) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_postgres_backend_terminated_or_worker_killed_loses_nothing(tmp_path, pg_db):
    from distributor.storage_postgres import _LOCK_CLASS

    world = World()
    chain = world.chain(5)
    data = world_data_dir(tmp_path / "data", world)
    args = ["--data", str(data), "--database", pg_db.url, "--schema", pg_db.schema, "--origin", world.origin,
            "--trust-root", str(data / "trust-root.json"), "--workers", "1", "--threads", "2", "--no-static"]
    acked: dict[int, int] = {}
    answers: dict[str, str] = {}

    def post(url: str, epoch: int) -> int:
        resp = requests.post(url + "/api/v1/bundles", data=chain[epoch - 1], headers=AUTH, timeout=30)
        if resp.status_code in (200, 201):
            acked[epoch] = resp.json()["index"]
        return resp.status_code

    def mid_transaction(proc: ServeProcess, epoch: int, kills: int, kill_worker: bool) -> str:
        blocker = _Blocker(pg_db.schema, f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, hashtext(current_schema()))")
        result: dict[str, object] = {}

        def run() -> None:
            try:
                result["status"] = post(proc.url, epoch)
            except requests.RequestException as exc:
                result["status"] = type(exc).__name__

        thread = threading.Thread(target=run)
        thread.start()
        try:
            done: list[int] = []
            for _ in range(kills):
                wait_for(lambda: [p for p in blocker.blocked() if p not in done], 20, "the publish inside its transaction")
                if kill_worker:
                    [worker] = worker_pids(proc.proc.pid)
                    os.kill(worker, 9)
                    break
                pid = next(p for p in blocker.blocked() if p not in done)
                _terminate([pid])
                done.append(pid)
        finally:
            blocker.release()  # before waiting for the answer: the retry waits for this lock too
        thread.join(30)
        return str(result["status"])

    with ServeProcess(args, tmp_path / "serve1.log") as proc:
        assert post(proc.url, 1) == 201
        [worker] = worker_pids(proc.proc.pid)
        idle = _backends_of(worker)
        assert idle, "no backend of the worker found"
        _terminate(idle)
        time.sleep(0.2)
        answers["terminated while idle, then publish"] = str(post(proc.url, 2))
        answers["terminated once mid-transaction"] = mid_transaction(proc, 3, 1, False)
        answers["terminated twice mid-transaction"] = mid_transaction(proc, 4, 2, False)
        answers["worker SIGKILLed mid-transaction"] = mid_transaction(proc, 5, 1, True)
        wait_for(lambda: len(worker_pids(proc.proc.pid)) == 1, 20, "gunicorn's new worker")
        proc.kill()
    before_restart = dict(acked)  # post() below adds the re-posts' acknowledgements
    problems = []
    with ServeProcess(args, tmp_path / "serve2.log") as proc:
        for epoch in range(1, 6):
            got = requests.get(f"{proc.url}/api/v1/bundles/{epoch}", timeout=10)
            if epoch in before_restart and (got.status_code != 200 or got.json()["index"] != before_restart[epoch]):
                problems.append(f"acknowledged epoch {epoch} lost")
            status = post(proc.url, epoch)
            if status not in (200, 201) or (got.status_code == 200 and status != 200):
                problems.append(f"re-post of epoch {epoch} answered {status}")
        size = requests.get(proc.url + "/api/v1/info", timeout=10).json()["size"]
    result = fsck("--database", pg_db.url, "--schema", pg_db.schema)
    print(f"\n[distributor/postgres] faults injected 4, survived {4 - len(problems) - (result.returncode != 0)}, "
          f"answers {answers}, acknowledged before the restart {sorted(before_restart)}, size after re-posting {size}")
    assert not problems, problems
    assert size == 5
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(a in ("200", "201", "503", "ConnectionError") for a in answers.values()), answers
