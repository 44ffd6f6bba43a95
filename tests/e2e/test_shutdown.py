"""Nothing is left running: every long-running command stops cleanly on SIGTERM, within its bound.

Each test starts the real command as a child process whose environment carries a marker unique to the
test; "no process of it remains" means no live process (zombies aside) in ``/proc`` carries that
marker, which covers the gunicorn masters, their workers, and anything else they forked. Ports are
free once a connection to them is refused. Every wait is a poll with a deadline: the command's
documented stop bound (``signer.server.STOP_BOUND``, ``distributor.server.STOP_BOUND``,
``distributor.cli.EXPORT_STOP_BOUND``, ``fleetkeys.quickstart.STOP_BOUND``).

A publish in flight when SIGTERM arrives is made deterministic by sending the request in two halves:
the test waits until the server has read the first half (its socket's receive queue in
``/proc/net/tcp`` is empty again), signals, then sends the rest (it must complete: 201) or never does
(a second signal stops the server at once: the publish must not be appended, and the log passes its
start-up self-check and verifies from scratch).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from distributor.cli import EXPORT_STOP_BOUND
from distributor.server import GRACEFUL_TIMEOUT
from distributor.server import STOP_BOUND as DISTRIBUTOR_STOP_BOUND
from distributor.storage import open_storage
from fleetkeys.quickstart import NAMESPACE, WITNESSES
from fleetkeys.quickstart import STOP_BOUND as QUICKSTART_STOP_BOUND
from signer.server import STOP_BOUND as SIGNER_STOP_BOUND
from tests.distributor.conftest import make_log
from tests.distributor.helpers import TOKEN, verify_read_path, world_data_dir
from tests.factory import World
from tests.service_process import REPO, free_port, wait_for
from tests.signer.keysets import chain as signer_chain
from tests.signer.process import prepare_data_dir

MARK = "FLEETKEYS_TEST_SHUTDOWN_MARK"
FLEETKEYS = [sys.executable, "-m", "fleetkeys"]
#: How long a command may take to come up on a loaded CI machine (not a bound under test).
START_TIMEOUT = 120.0


# -- observing processes and ports ------------------------------------------------------------------
def marked(mark: str) -> list[int]:
    """The live processes (not zombies) whose environment carries ``MARK=mark``."""
    needle = f"{MARK}={mark}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours
        if needle in env and state != b"Z":
            pids.append(int(entry))
    return pids


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


def unread(server_port: int, client_port: int) -> int | None:
    """Bytes the server has not read yet on the connection from ``client_port`` (``/proc/net/tcp``)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                return int(queues.split(":")[1], 16)
    return None


def assert_gone(proc: subprocess.Popen, mark: str, ports: list[int], bound: float, what: str) -> None:
    """Within ``bound`` seconds: ``proc`` has exited, no process carries ``mark``, every port refuses."""
    wait_for(lambda: proc.poll() is not None and not marked(mark) and all(refused(p) for p in ports),
             bound, f"{what}: every process gone and ports {ports} free")


def last_line(path: Path) -> str:
    """The last line of a log; of a JSON log line (the services' logs, ``serving/logs.py``), its message."""
    line = path.read_text(errors="replace").rstrip().splitlines()[-1]
    return json.loads(line)["message"] if line.startswith("{") else line


def spawn(args: list[str], log: Path, mark: str) -> subprocess.Popen:
    """``python -m fleetkeys ARGS`` in its own session, stdout and stderr to ``log``, marked."""
    with open(log, "ab") as out:
        return subprocess.Popen([*FLEETKEYS, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO), MARK: mark}, start_new_session=True)


def kill_marked(mark: str) -> None:
    """Clean-up after a failed test: nothing it started may outlive it."""
    for pid in marked(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def mark():
    value = uuid.uuid4().hex
    yield value
    kill_marked(value)


def wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    def ready() -> bool:
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(ready, START_TIMEOUT, url)


def wait_log(path: Path, needle: str, timeout: float = START_TIMEOUT) -> None:
    wait_for(lambda: path.exists() and needle in path.read_text(errors="replace"), timeout, repr(needle))


class SplitRequest:
    """An HTTP/1.1 POST sent in two halves: in flight (read in part by the server) until :meth:`finish`."""

    def __init__(self, port: int, path: str, body: bytes, headers: dict[str, str]) -> None:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        half = len(body) // 2
        self.rest = body[half:]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(head + body[:half])
        client_port = self.sock.getsockname()[1]
        wait_for(lambda: unread(port, client_port) == 0, 30, "the server to read the first half of the request")

    def finish(self) -> int | None:
        """Send the rest; the response status, or None if the server dropped the connection."""
        try:
            self.sock.sendall(self.rest)
        except OSError:
            return None
        return self.status()

    def status(self) -> int | None:
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
        except OSError:
            return None
        finally:
            self.sock.close()
        return int(data.split(b" ", 2)[1])


# -- the distributor: fleetkeys serve ----------------------------------------------------------------
class Distributor:
    def __init__(self, tmp_path: Path, world: World, mark: str, name: str) -> None:
        self.data = tmp_path / "dist"
        if not self.data.exists():
            world_data_dir(self.data, world)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}.log"
        self.proc = spawn(["serve", "--data", str(self.data), "--origin", world.origin, "--trust-root",
                           str(self.data / "trust-root.json"), "--workers", "2", "--port", str(self.port)],
                          self.log, mark)
        wait_ready(self.proc, self.url + "/checkpoint", self.log)

    def publish(self, bundle: bytes) -> int:
        return requests.post(self.url + "/api/v1/bundles", data=bundle, timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"}).status_code


def test_serve_stops_on_sigterm_within_its_bound(tmp_path, mark):
    world = World()
    dist = Distributor(tmp_path, world, mark, "serve")
    assert dist.publish(world.chain(1)[0]) == 201
    wait_for(lambda: len(marked(mark)) == 3, START_TIMEOUT, "the master and its two workers")
    dist.proc.send_signal(signal.SIGTERM)
    assert_gone(dist.proc, mark, [dist.port], DISTRIBUTOR_STOP_BOUND, "fleetkeys serve")
    assert dist.proc.returncode == 0
    assert re.fullmatch(r".*fleetkeys-distributor stopped on SIGTERM in [\d.]+ s: in-flight requests finished; "
                        r"no worker left", last_line(dist.log)), last_line(dist.log)


def test_a_publish_in_flight_during_sigterm_completes_and_is_appended(tmp_path, mark):
    world = World()
    bundles = world.chain(2)
    dist = Distributor(tmp_path, world, mark, "serve1")
    assert dist.publish(bundles[0]) == 201
    request = SplitRequest(dist.port, "/api/v1/bundles", bundles[1], {"Authorization": f"Bearer {TOKEN}"})
    dist.proc.send_signal(signal.SIGTERM)
    wait_log(dist.log, "SIGTERM: no new connections", DISTRIBUTOR_STOP_BOUND)
    assert request.finish() == 201  # the in-flight publish completes
    assert_gone(dist.proc, mark, [dist.port], DISTRIBUTOR_STOP_BOUND, "fleetkeys serve")
    assert dist.proc.returncode == 0
    assert "in-flight requests finished; no worker left" in last_line(dist.log)
    again = Distributor(tmp_path, world, mark, "serve2")  # its start-up self-check passes
    view = verify_read_path(again.url, world)
    assert view.epochs == (1, 2)
    again.proc.send_signal(signal.SIGTERM)
    assert_gone(again.proc, mark, [again.port], DISTRIBUTOR_STOP_BOUND, "fleetkeys serve")


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_stops_at_once_and_the_cut_publish_is_not_appended(tmp_path, mark, second):
    world = World()
    bundles = world.chain(2)
    dist = Distributor(tmp_path, world, mark, "serve1")
    assert dist.publish(bundles[0]) == 201
    request = SplitRequest(dist.port, "/api/v1/bundles", bundles[1], {"Authorization": f"Bearer {TOKEN}"})
    first = time.monotonic()
    dist.proc.send_signal(signal.SIGTERM)
    wait_log(dist.log, "SIGTERM: no new connections", DISTRIBUTOR_STOP_BOUND)
    # The same signal within half a second counts as a copy of the first (a supervisor signalling the
    # whole group, then the quick start forwarding it): a second one comes after that.
    wait_for(lambda: time.monotonic() - first > 0.6, 5, "half a second after the first signal")
    assert dist.proc.poll() is None  # still waiting for the unfinished publish
    at = time.monotonic()
    dist.proc.send_signal(second)
    # "At once": well before the graceful stop would have given up on the unfinished publish.
    assert_gone(dist.proc, mark, [dist.port], GRACEFUL_TIMEOUT - 1.5, "fleetkeys serve after a second signal")
    assert time.monotonic() - at < GRACEFUL_TIMEOUT - 1.5
    # The unfinished request is held by the worker's event loop, not by a thread in the app, so the
    # worker quits when told and nothing has to be killed (exit status 0); the last line says so.
    assert dist.proc.returncode == 0
    assert request.status() is None  # no answer: the connection was dropped
    assert re.fullmatch(r".*fleetkeys-distributor stopped on SIGTERM in [\d.]+ s: workers told to quit at once "
                        r"\(requests in flight, if any, were dropped\); no worker left", last_line(dist.log)), \
        last_line(dist.log)
    again = Distributor(tmp_path, world, mark, "serve2")  # its start-up self-check passes
    assert verify_read_path(again.url, world).epochs == (1,)  # not appended, not half
    assert again.publish(bundles[1]) == 201  # and publishing it again works
    again.proc.send_signal(signal.SIGTERM)
    assert_gone(again.proc, mark, [again.port], DISTRIBUTOR_STOP_BOUND, "fleetkeys serve")


def test_serve_stopped_during_its_start_up_check_leaves_nothing(tmp_path, mark):
    """SIGTERM before gunicorn serves (while the start-up self-check runs): it exits at once, and takes
    the forked check with it."""
    world = World()
    data = world_data_dir(tmp_path / "dist", world)
    port = free_port()
    log = tmp_path / "serve.log"
    proc = spawn(["serve", "--data", str(data), "--origin", world.origin, "--port", str(port)], log, mark)
    # Two processes: the forked start-up check is running (or, on a slow machine, already gunicorn's
    # master and a worker).
    wait_for(lambda: len(marked(mark)) >= 2, START_TIMEOUT, "serve's start-up check")
    proc.send_signal(signal.SIGTERM)
    assert_gone(proc, mark, [port], DISTRIBUTOR_STOP_BOUND, "fleetkeys serve")
    # Before serving: exit 1 with one clear line; if gunicorn was serving already: its clean stop.
    before = (proc.returncode, last_line(log)) == (1, "Error: stopped by SIGTERM before serving")
    during = proc.returncode == 0 and "fleetkeys-distributor stopped on SIGTERM" in last_line(log)
    assert before or during, (proc.returncode, log.read_text())
    again = Distributor(tmp_path, world, mark, "serve2")  # nothing half-made stops the next start
    again.proc.send_signal(signal.SIGTERM)
    assert_gone(again.proc, mark, [again.port], DISTRIBUTOR_STOP_BOUND, "fleetkeys serve")


# -- the anchor signer: fleetkeys signer serve ----------------------------------------------------------
def start_signer(data: Path, log: Path, mark: str, workers: int = 2) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = spawn(["signer", "serve", "--data", str(data), "--workers", str(workers), "--port", str(port)], log, mark)
    wait_ready(proc, f"http://127.0.0.1:{port}/info", log)
    return proc, port


def test_signer_serve_stops_on_sigterm_within_its_bound_and_finishes_a_signature_in_flight(tmp_path, mark):
    data = tmp_path / "signer"
    tokens = prepare_data_dir(data, (NAMESPACE,))
    keysets = signer_chain(NAMESPACE, 1)
    proc, port = start_signer(data, tmp_path / "signer1.log", mark)
    wait_for(lambda: len(marked(mark)) == 3, START_TIMEOUT, "the master and its two workers")
    request = SplitRequest(port, "/api/v1/sign-keyset", keysets[0],
                           {"Authorization": f"Bearer {tokens['write']}", "Content-Type": "application/json"})
    proc.send_signal(signal.SIGTERM)
    wait_log(tmp_path / "signer1.log", "SIGTERM: no new connections", SIGNER_STOP_BOUND)
    assert request.finish() == 200  # the signature in flight is returned
    assert_gone(proc, mark, [port], SIGNER_STOP_BOUND, "fleetkeys signer serve")
    assert proc.returncode == 0
    assert re.fullmatch(r".*fleetkeys-signer stopped on SIGTERM in [\d.]+ s: in-flight requests finished; "
                        r"no worker left", last_line(tmp_path / "signer1.log")), last_line(tmp_path / "signer1.log")
    # One worker: once it answers it has booted, so Ctrl-C reaches it (not only the master's copy of
    # its handlers, which a worker has for a moment after the fork: the master then kills it at 1 s).
    proc, port = start_signer(data, tmp_path / "signer2.log", mark, workers=1)
    assert requests.get(f"http://127.0.0.1:{port}/namespaces/{NAMESPACE}/audits/1", timeout=10).status_code == 200
    proc.send_signal(signal.SIGINT)  # Ctrl-C: at once
    assert_gone(proc, mark, [port], SIGNER_STOP_BOUND, "fleetkeys signer serve")
    assert proc.returncode == 0
    assert "fleetkeys-signer stopped on SIGINT" in last_line(tmp_path / "signer2.log")


# -- the static exporter: fleetkeys export --follow ----------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_export_follow_stops_on_sigterm_within_its_bound(tmp_path, mark, sig):
    world = World()
    data = world_data_dir(tmp_path / "dist", world)
    url = f"sqlite:///{data / 'log.db'}"
    storage = open_storage(url)
    log = make_log(storage, world)
    for bundle in world.chain(3):
        log.publish(bundle)
    storage.close()
    out = tmp_path / "export.log"
    proc = spawn(["export", "--database", url, "--out", str(tmp_path / "static"), "--data", str(data), "--follow",
                  "--interval", "0.1"], out, mark)
    wait_log(out, f"exported {world.origin} size 3")
    proc.send_signal(sig)
    assert_gone(proc, mark, [], EXPORT_STOP_BOUND, "fleetkeys export --follow")
    assert proc.returncode == 0
    name = signal.Signals(sig).name
    assert last_line(out) == f"export stopped on {name}: {world.origin} size 3 exported to {tmp_path / 'static'}"


# -- the quick start ---------------------------------------------------------------------------------
class Quickstart:
    def __init__(self, tmp_path: Path, mark: str, ports: tuple[int, int], name: str, *extra: str) -> None:
        self.data = tmp_path / "data"
        self.out = tmp_path / f"{name}.out"
        self.ports = ports
        self.proc = spawn(["quickstart", "--data", str(self.data), "--port", str(ports[0]), "--signer-port",
                           str(ports[1]), *extra], self.out, mark)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_line(self, prefix: str) -> None:
        def seen() -> bool:
            assert self.proc.poll() is None, f"quickstart exited with {self.proc.returncode}:\n{self.output()}"
            return any(line.startswith(prefix) for line in self.output().splitlines())

        wait_for(seen, START_TIMEOUT, f"quickstart to print {prefix!r}")


def run_again(tmp_path: Path, mark: str, ports: tuple[int, int]) -> str:
    """A second quick start on the same directory and ports, with ``--exit``: it must work."""
    again = Quickstart(tmp_path, mark, ports, "again", "--exit")
    again.proc.wait(START_TIMEOUT)
    output = again.output()
    assert again.proc.returncode == 0, output
    assert f"distributor:    http://127.0.0.1:{ports[0]} " in output, output  # its ports were free
    assert f"anchor signer:  http://127.0.0.1:{ports[1]} " in output, output
    assert not marked(mark)
    return output


def services_stopped_cleanly(data: Path) -> None:
    assert "fleetkeys-signer stopped on SIGTERM" in last_line(data / "signer.log")
    assert "fleetkeys-distributor stopped on SIGTERM" in last_line(data / "distributor.log")
    for i in range(1, len(WITNESSES) + 1):
        assert "fleetkeys-witness stopped on SIGTERM" in last_line(data / f"witness-{i}.log")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_quickstart_stops_every_process_it_started(tmp_path, mark, sig):
    ports = (free_port(), free_port())
    qs = Quickstart(tmp_path, mark, ports, "qs")
    qs.wait_line("serving")
    # Itself, then a gunicorn master and one worker for the signer, the distributor and each witness.
    wait_for(lambda: len(marked(mark)) == 1 + 2 * (2 + len(WITNESSES)), START_TIMEOUT,
             "itself, and each service's master and worker")
    qs.proc.send_signal(sig)
    assert_gone(qs.proc, mark, list(ports), QUICKSTART_STOP_BOUND, "fleetkeys quickstart")
    assert qs.proc.returncode == 0
    assert last_line(qs.out) == "stopped: nothing is left running"
    services_stopped_cleanly(qs.data)


def test_quickstart_killed_takes_its_services_down_and_the_next_run_works(tmp_path, mark):
    ports = (free_port(), free_port())
    qs = Quickstart(tmp_path, mark, ports, "qs")
    qs.wait_line("serving")
    qs.proc.send_signal(signal.SIGKILL)
    qs.proc.wait(10)
    # The kernel sends each service SIGTERM (PR_SET_PDEATHSIG): they stop within their own bound.
    assert_gone(qs.proc, mark, list(ports), max(SIGNER_STOP_BOUND, DISTRIBUTOR_STOP_BOUND), "the quick start's services")
    services_stopped_cleanly(qs.data)
    assert "client verified epoch 6 (log size 6)" in run_again(tmp_path, mark, ports)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_quickstart_stopped_mid_publish_then_the_next_run_finishes_that_epoch(tmp_path, mark, sig):
    """Stopped while publishing epoch 2 (the keyset written, perhaps signed, perhaps logged): the next run
    publishes that very keyset if the log lacks it, then three more epochs. Either way it ends at 5."""
    ports = (free_port(), free_port())
    qs = Quickstart(tmp_path, mark, ports, "qs")
    qs.wait_line("== epoch 2")
    qs.proc.send_signal(sig)
    bound = QUICKSTART_STOP_BOUND if sig == signal.SIGTERM else max(SIGNER_STOP_BOUND, DISTRIBUTOR_STOP_BOUND)
    assert_gone(qs.proc, mark, list(ports), bound, "fleetkeys quickstart")
    if sig == signal.SIGTERM:
        assert qs.proc.returncode == 0 and last_line(qs.out) == "stopped: nothing is left running", qs.output()
    output = run_again(tmp_path, mark, ports)
    assert "client verified epoch 5 (log size 5)" in output, output
