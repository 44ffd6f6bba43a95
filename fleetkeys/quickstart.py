"""``fleetkeys quickstart``: the whole system on one machine, on the embedded defaults.

It starts a real anchor signer, three witnesses (C2SP tlog-witness; the trust root requires 2 of the
3) and a real distributor (SQLite) as separate processes under gunicorn, publishes three epochs
through the real pipeline over HTTP (a first fleet, a second fleet, a revocation), verifies each
with the client library exactly as an app would, and keeps serving until Ctrl-C (or stops with
``--exit``). An epoch is shown as verified once the client accepts it,
that is once two witnesses cosigned the checkpoint that holds it (the distributor asks them as
soon as the bundle is appended). Everything lives in the data directory::

    DATA/operator.key            the operator's countersign key (0600)
    DATA/signer/                 the anchor signer: key, journal, tokens
    DATA/distributor/            the log: log and freshness keys, SQLite database, static tiles
    DATA/witnesses/wN/           witness N: its cosignature key (0600) and its state
    DATA/trust-root.json         the trust root an app would ship
    DATA/keysets/epoch-N.json    the keysets published, DATA/bundles/epoch-N.json the bundles
    DATA/client/state.json       the client's verified state

The keysets are written as an operator writes them, without a ``trust_root`` field: ``publish
--trust-root`` names the quickstart's trust root in each (bundles/FORMAT.md §3.3), as the distributor
requires. Running it again on the same directory continues the same log with three more epochs
(under the same trust root, which it keeps in ``DATA/trust-root.json``); an epoch a stopped run had
begun (its keyset file written, perhaps already signed) is finished first, with the same keyset.

Stopping: SIGTERM, SIGHUP and SIGINT (Ctrl-C) alike stop it, at any point: it sends SIGTERM to each
service's process group (they finish their in-flight requests, signer.server/distributor.server),
waits at most :data:`STOP_BOUND` seconds, kills whatever is left, prints ``stopped: ...`` and exits 0.
A second signal stops the services at once. If the quick start itself is killed (SIGKILL), each
service gets SIGTERM from the kernel (Linux ``PR_SET_PDEATHSIG``) and stops the same way. Every file
it writes is written atomically, so a stop at any instant leaves nothing that makes the next run fail.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import click
import requests

from keys import generate_key_file, load_signer
from verifier.atomicfile import create_exclusive, fsync_dir, write_atomic
from verifier.audit import keyset_changes
from verifier.bundle import parse_bundle
from verifier.client import Client
from verifier.cosignature import verify_cosignatures
from verifier.errors import EmptyLogError, ThresholdError, VerificationError
from verifier.keyset import Fleet, Keyset, format_time, parse_keyset, parse_time
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier
from verifier.signatures import KeyGroup
from verifier.trustroot import LogConfig, TrustRoot, encode_envelope, encode_trust_root_body, load_trust_root

NAMESPACE = "example.messenger/backup-vaults/v1"
ORIGIN = "fleetkeys.local/log"
DAY = 86400
#: Seconds the services get to stop after SIGTERM (their own bound: in-flight requests get 8 s and
#: each is gone within 10 s) before the quick start kills what is left of them.
STOP_BOUND = 10.0
#: Seconds they get after a second signal.
QUICK_BOUND = 2.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
#: The quick start's witnesses (names; the trust root requires :data:`WITNESS_THRESHOLD` of them).
WITNESSES = ("w1.witness.fleetkeys.local", "w2.witness.fleetkeys.local", "w3.witness.fleetkeys.local")
WITNESS_THRESHOLD = 2
#: Seconds the quick start waits for a published epoch to be witnessed and visible to the client.
VISIBLE_WITHIN = 60.0
_PR_SET_PDEATHSIG = 1


class _Stop(BaseException):
    """Raised in the main thread by the first SIGTERM, SIGHUP or SIGINT: it unwinds the quick start,
    and leaving :class:`_Services` stops the services. (A ``BaseException``, like ``KeyboardInterrupt``:
    no ``except Exception`` on the way swallows it.)"""

    def __init__(self, signum: int) -> None:
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


class _Signals:
    """The quick start's stop signals: the first raises :class:`_Stop` (at once, or at the end of the
    :meth:`held` block it arrived in); any later one sets :attr:`hurry` (stop the services at once)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.hurry = False
        self.stopping = False  # set while the services are being stopped: nothing to unwind any more
        self._held = 0
        self._raised = False
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _raise(self) -> None:
        if self.received is not None and not self._raised:
            self._raised = True
            raise _Stop(self.received)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            self.hurry = True
        else:
            self.received = signum
            if not self._held and not self.stopping:
                self._raise()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A block that a stop signal does not cut in half: it takes effect when the block ends."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if not self._held:
            self._raise()


def _say(line: str = "") -> None:
    """Print, even after the terminal went away (SIGHUP): stopping must not fail on a dead stdout."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(line)


def _exit_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel send the child SIGTERM when the quick start dies, even by
    SIGKILL (Linux ``prctl(PR_SET_PDEATHSIG)``); ``None`` where there is no such call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the quick start died before the guard was set
            os._exit(1)

    return preexec


class _Services:
    """The services the quick start runs, each the leader of its own process group (so a terminal's
    Ctrl-C reaches only the quick start, which stops them in order). Leaving the ``with`` block, for
    whatever reason, stops them all."""

    def __init__(self, signals: _Signals) -> None:
        self.signals = signals
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, args: list[str], log_path: Path, ready_url: str, what: str) -> subprocess.Popen:
        with open(log_path, "ab") as log_file, self.signals.held():  # never a child we do not know of
            proc = subprocess.Popen([sys.executable, "-m", "fleetkeys", *args], stdout=log_file,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_exit_with_parent())  # the quick start runs no threads
            self.procs.append((what, proc))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise click.ClickException(f"{what} exited with code {proc.returncode}; see {log_path}")
            try:
                if requests.get(ready_url, timeout=1).status_code == 200:
                    return proc
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise click.ClickException(f"{what} did not become ready within 30 s; see {log_path}")

    def _signal_all(self, sig: int) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)

    def stop(self) -> list[str]:
        """SIGTERM every service's group, wait up to :data:`STOP_BOUND` s (:data:`QUICK_BOUND` after a
        second signal), SIGKILL what is left (stragglers of an exited one too); the services killed."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_BOUND
        hurried = False
        while any(proc.poll() is None for _, proc in self.procs) and time.monotonic() < deadline:
            if self.signals.hurry and not hurried:
                hurried = True
                self._signal_all(signal.SIGINT)  # SIGINT after SIGTERM: they stop at once
                deadline = min(deadline, time.monotonic() + QUICK_BOUND)
            time.sleep(0.05)
        killed = [what for what, proc in self.procs if proc.poll() is None]
        for _, proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for _, proc in self.procs:
            proc.wait()
        return killed

    def __enter__(self) -> _Services:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.signals.stopping = True
        running = [what for what, proc in self.procs if proc.poll() is None]
        if isinstance(exc, _Stop):
            _say(f"\n{exc.name}: stopping" + (f" {' and '.join(running)} (at most {STOP_BOUND:g} s; a second "
                                                "SIGTERM or Ctrl-C stops them at once)" if running else ""))
        killed = self.stop()
        if isinstance(exc, _Stop):
            _say(f"stopped: killed {' and '.join(killed)}, still running after the bound" if killed else
                 "stopped: nothing is left running")


def _free_port(preferred: int, taken: tuple[str, ...] = ()) -> int:
    """``preferred`` if it is free and not in ``taken`` (URLs already handed out), else any free port."""
    for port in (preferred, 0):
        if port and any(url.endswith(f":{port}") for url in taken):
            continue
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise click.ClickException("no free TCP port on 127.0.0.1")


def _create_once(path: Path, make: Callable[[Path], Any]) -> None:
    """Create ``path`` with ``make(tmp)`` under a temporary name, then link it into place: even a
    SIGKILL leaves either no file or the whole one (never a half-written secret), and an existing
    file is never replaced."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.unlink(missing_ok=True)  # left by a run killed in between
    try:
        make(tmp)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _key(path: Path) -> bytes:
    """Public key of the key file at ``path``, generating it (0600) on first use."""
    if not path.exists():
        _create_once(path, generate_key_file)
    return load_signer(f"file:{path}").public_key


def _token(path: Path) -> None:
    """The distributor's publish token (0600), made here so that it is created atomically too."""
    if not path.exists():
        _create_once(path, lambda tmp: create_exclusive(tmp, (secrets.token_urlsafe(32) + "\n").encode()))


def _x25519_key() -> bytes:
    """A fresh X25519 public key standing in for an HSM fleet's key (the private half is discarded)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _latest_keyset(distributor: str) -> Keyset | None:
    resp = requests.get(f"{distributor}/api/v1/bundles/latest", timeout=10)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return parse_keyset(parse_bundle(base64.b64decode(resp.json()["bundle"])).keyset)


def _plan(latest: Keyset | None, now: int) -> list[tuple[str, list[Fleet]]]:
    """Three sample epochs after ``latest``: add a fleet, add another, revoke the first."""
    base = [f for f in latest.fleets] if latest else []
    n = (latest.epoch if latest else 0) + 1
    first = Fleet(f"eu-west-1-gen{n}", "x25519", _x25519_key(), now - 60, now + 365 * DAY, "active")
    second = Fleet(f"us-east-1-gen{n}", "x25519", _x25519_key(), now - 60, now + 365 * DAY, "active")
    revoked = Fleet(first.fleet_id, first.algorithm, first.public_key, first.not_before, first.not_after, "revoked")
    return [
        (f"add fleet {first.fleet_id}", [*base, first]),
        (f"add fleet {second.fleet_id}", [*base, first, second]),
        (f"revoke fleet {first.fleet_id}", [*base, revoked, second]),
    ]


def _begun_keyset(path: Path, latest: Keyset | None, now: int) -> bool:
    """Whether ``path`` is the keyset a stopped run wrote for the next epoch and did not get logged.

    It may already be signed (an anchor signature is final for its epoch, so only that keyset can be
    published for it now): it is published as it is, if it still continues the log and is in date."""
    try:
        raw = json.loads(path.read_bytes())
        return (raw["epoch"] == (latest.epoch if latest else 0) + 1 and raw["namespace"] == NAMESPACE
                and raw["previous"] == (latest.digest if latest else bytes(32)).hex()
                and parse_time(raw["issued_at"], "issued_at") <= now < parse_time(raw["expires_at"], "expires_at"))
    except (OSError, ValueError, KeyError, TypeError, VerificationError):
        return False


def _keyset_json(epoch: int, previous: bytes, fleets: list[Fleet], now: int) -> bytes:
    """The keyset as an operator writes it: readable, indented JSON (publish names the trust root in it
    and canonicalises it)."""
    return json.dumps({
        "epoch": epoch, "namespace": NAMESPACE, "issued_at": format_time(now), "expires_at": format_time(now + 30 * DAY),
        "previous": previous.hex(), "fleets": [f.to_json() for f in fleets],
    }, indent=2).encode() + b"\n"


def _refresh(client: Client, last_try: bool) -> Any:
    """``client.refresh()``, or ``None`` while the log clients see is still empty or its checkpoint
    not yet cosigned by enough witnesses (a new log, just started); on the ``last_try`` that is an error."""
    try:
        return client.refresh()
    except (EmptyLogError, ThresholdError):
        if last_try:
            raise
        return None


def _witnessed_by(checkpoint: bytes, root: TrustRoot) -> list[str]:
    """The names of ``root``'s witnesses whose cosignatures on ``checkpoint`` verify (for the display)."""
    return sorted(c.verifier.name for c in verify_cosignatures(checkpoint, root.witnesses.keys, 0))


def _ensure_trust_root(data: Path, anchor: bytes, operator: bytes, log_key: bytes, freshness: bytes,
                       witnesses: list[NoteVerifier], now: int) -> Path:
    path = data / "trust-root.json"
    if not path.exists():
        body = encode_trust_root_body(
            version=1, namespace=NAMESPACE,
            anchors=KeyGroup((NoteVerifier.from_public_key("anchor.local", anchor),), 1),
            countersigners=KeyGroup((NoteVerifier.from_public_key("operator.local", operator),), 1),
            log=LogConfig(ORIGIN, NoteVerifier.from_public_key(ORIGIN, log_key),
                          NoteVerifier.from_public_key(ORIGIN + "/freshness", freshness, ALG_COSIGNATURE_V1), 3600),
            witnesses=KeyGroup(tuple(witnesses), WITNESS_THRESHOLD),
            expires_at=now + 5 * 365 * DAY)
        write_atomic(path, encode_envelope(body), mode=0o644)
    return path


@click.command("quickstart")
@click.option("--data", "data_dir", default="fleetkeys-data", show_default=True, type=click.Path(file_okay=False))
@click.option("--exit", "exit_after", is_flag=True, help="Stop the services after the three epochs.")
@click.option("--port", default=8080, show_default=True, help="Distributor port (a free one if busy).")
@click.option("--signer-port", default=8090, show_default=True, help="Anchor signer port (a free one if busy).")
def quickstart_cmd(data_dir: str, exit_after: bool, port: int, signer_port: int) -> None:
    """Run signer, 3 witnesses and distributor locally, publish three epochs, verify them as an app would.

    SIGTERM, SIGHUP or Ctrl-C stops it and every service (within 10 s; a second one at once)."""
    signals = _Signals()
    try:
        with _Services(signals) as services:
            _quickstart(Path(data_dir).resolve(), exit_after, port, signer_port, signals, services)
    except _Stop:
        pass  # the services are stopped, and the last line said so
    finally:
        signals.restore()


def _quickstart(data: Path, exit_after: bool, port: int, signer_port: int, signals: _Signals,
                services: _Services) -> None:
    from countersigner.publish import PublishError, PublishRequest, publish

    for sub in ("", "keysets", "bundles", "distributor", "witnesses"):
        (data / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    now = int(time.time())
    operator = _key(data / "operator.key")
    log_key = _key(data / "distributor" / "log.key")
    freshness = _key(data / "distributor" / "freshness.key")
    _token(data / "distributor" / "publish.token")
    signer_url = f"http://127.0.0.1:{_free_port(signer_port)}"
    dist_url = f"http://127.0.0.1:{_free_port(port, (signer_url,))}"

    click.echo(f"data directory: {data}")
    with signals.held():  # a half-initialised signer directory would make the next run fail
        subprocess.run([sys.executable, "-m", "fleetkeys", "signer", "init", "--data", str(data / "signer"),
                        "--namespace", NAMESPACE], check=True, stdout=subprocess.DEVNULL, start_new_session=True)
    services.start(["signer", "serve", "--data", str(data / "signer"), "--port",
                             signer_url.rsplit(":", 1)[1]], data / "signer.log", f"{signer_url}/info", "anchor signer")
    anchor = bytes.fromhex(requests.get(f"{signer_url}/info", timeout=10).json()["keys"][0]["public_key"])
    click.echo(f"anchor signer:  {signer_url}  (key {anchor.hex()})")
    log_vkey = NoteVerifier.from_public_key(ORIGIN, log_key).vkey
    witness_options: list[str] = []
    witness_keys: list[NoteVerifier] = []
    for i, name in enumerate(WITNESSES, 1):
        home = data / "witnesses" / f"w{i}"
        home.mkdir(mode=0o700, exist_ok=True)
        key = NoteVerifier.from_public_key(name, _key(home / "witness.key"), ALG_COSIGNATURE_V1)
        url = f"http://127.0.0.1:{_free_port(signer_port + i, (signer_url, dist_url))}"
        services.start(["witness", "serve", "--name", name, "--key", f"file:{home / 'witness.key'}", "--data",
                        str(home / "state"), "--log", f"{ORIGIN}={log_vkey}", "--port", url.rsplit(":", 1)[1],
                        "--workers", "1"], data / f"witness-{i}.log", f"{url}/", f"witness {i}")
        witness_keys.append(key)
        witness_options += ["--witness", f"{url}={key.vkey}"]
        click.echo(f"witness {i}:      {url}  ({key.vkey})")
    root_path = _ensure_trust_root(data, anchor, operator, log_key, freshness, witness_keys, now)
    services.start(["serve", "--data", str(data / "distributor"), "--port", dist_url.rsplit(":", 1)[1],
                           "--origin", ORIGIN, "--trust-root", str(root_path), "--workers", "1", *witness_options],
                          data / "distributor.log", f"{dist_url}/api/v1/info", "distributor")
    click.echo(f"distributor:    {dist_url}  (log {ORIGIN}, SQLite in {data / 'distributor'})")
    root = load_trust_root(root_path.read_bytes())
    click.echo(f"trust root:     {root_path}  (witnesses required: {root.witnesses.threshold} of "
               f"{len(root.witnesses.keys)})")

    client = Client(dist_url, root_path.read_bytes(), data / "client")
    seen = client.state.saved_keyset

    def publish_epoch(keyset_path: Path, what: str) -> Keyset:
        nonlocal seen
        epoch = json.loads(keyset_path.read_bytes())["epoch"]
        click.echo(f"\n== epoch {epoch}: {what}")
        try:
            result = publish(PublishRequest(
                keyset_path=keyset_path, signer_url=signer_url, countersign_key=f"file:{data / 'operator.key'}",
                signer_token=(data / "signer" / "tokens" / "write.token").read_text().strip(),
                out=data / "bundles" / f"epoch-{epoch}.json", trust_root_path=root_path,
                distributor_url=dist_url,
                publish_token=(data / "distributor" / "publish.token").read_text().strip()),
                progress=lambda line: click.echo(f"   {line}"), now=now)
        except PublishError as exc:
            raise click.ClickException(f"publish failed: {exc}") from exc
        started = time.monotonic()
        while (update := _refresh(client, time.monotonic() - started > VISIBLE_WITHIN)) is None or update.epoch < epoch:
            # Appended and acknowledged; visible to clients once the witnesses cosigned it.
            if time.monotonic() - started > VISIBLE_WITHIN:
                raise click.ClickException(f"epoch {epoch} was appended but not witnessed within "
                                           f"{VISIBLE_WITHIN:g} s; see {data / 'distributor.log'}")
            time.sleep(0.1)
        if root.witnesses.threshold:
            names = _witnessed_by(requests.get(f"{dist_url}/checkpoint", timeout=10).content, root)
            click.echo(f"   witnessed by {', '.join(names)} within {time.monotonic() - started:.1f} s")
        verified = client.state.saved_keyset
        changes = ", ".join(keyset_changes(seen, verified).describe()) or "no change"
        click.echo(f"   client verified epoch {update.epoch} (log size {update.checkpoint_size}): {changes}")
        for fleet in update.fleets:
            click.echo(f"     active {fleet.fleet_id:<22} {fleet.algorithm} {fleet.public_key.hex()}")
        seen = verified
        return result.keyset

    latest = _latest_keyset(dist_url)
    begun = data / "keysets" / f"epoch-{(latest.epoch if latest else 0) + 1}.json"
    if _begun_keyset(begun, latest, now):
        latest = publish_epoch(begun, "finish the epoch a stopped run began")
    for what, fleets in _plan(latest, now):
        epoch = (latest.epoch if latest else 0) + 1
        keyset_path = data / "keysets" / f"epoch-{epoch}.json"
        write_atomic(keyset_path, _keyset_json(epoch, latest.digest if latest else bytes(32), fleets, now), mode=0o644)
        latest = publish_epoch(keyset_path, what)

    click.echo(f"\nverify again any time:  fleetkeys verify --trust-root {root_path} --distributor {dist_url} "
               f"--state {data / 'client'}")
    click.echo(f"checkpoint:             {dist_url}/checkpoint")
    click.echo(f"epochs:                 {dist_url}/api/v1/epochs")
    if exit_after:
        return
    click.echo("serving; Ctrl-C (or SIGTERM, SIGHUP) stops it and every service")
    while all(proc.poll() is None for _, proc in services.procs):
        time.sleep(0.5)
    raise click.ClickException("a service exited unexpectedly; see the logs in the data directory")


COMMANDS = [quickstart_cmd]
