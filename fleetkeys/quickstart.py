"""``fleetkeys quickstart``: the whole system on one machine, on the embedded defaults.

It starts a real anchor signer and a real distributor (SQLite) as separate processes under gunicorn,
publishes three epochs through the real pipeline over HTTP (a first fleet, a second fleet, a
revocation), verifies each with the client library exactly as an app would, and keeps serving until
Ctrl-C (or stops with ``--exit``). Everything lives in the data directory::

    DATA/operator.key            the operator's countersign key (0600)
    DATA/signer/                 the anchor signer: key, journal, tokens
    DATA/distributor/            the log: log and freshness keys, SQLite database, static tiles
    DATA/trust-root.json         the trust root an app would ship
    DATA/keysets/epoch-N.json    the keysets published, DATA/bundles/epoch-N.json the bundles
    DATA/client/state.json       the client's verified state

The keysets are written as an operator writes them, without a ``trust_root`` field: ``publish
--trust-root`` names the quickstart's trust root in each (bundles/FORMAT.md §3.3), as the distributor
requires. Running it again on the same directory continues the same log with three more epochs
(under the same trust root, which it keeps in ``DATA/trust-root.json``).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, closing
from pathlib import Path

import click
import requests

from keys import generate_key_file, load_signer
from verifier.audit import keyset_changes
from verifier.bundle import parse_bundle
from verifier.client import Client
from verifier.keyset import Fleet, Keyset, format_time, parse_keyset
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier
from verifier.signatures import KeyGroup
from verifier.trustroot import LogConfig, encode_envelope, encode_trust_root_body

NAMESPACE = "example.messenger/backup-vaults/v1"
ORIGIN = "fleetkeys.local/log"
DAY = 86400


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise click.ClickException("no free TCP port on 127.0.0.1")


def _key(path: Path) -> bytes:
    """Public key of the key file at ``path``, generating it (0600) on first use."""
    if not path.exists():
        return generate_key_file(path)
    return load_signer(f"file:{path}").public_key


def _start(args: list[str], log_path: Path, ready_url: str, what: str) -> subprocess.Popen:
    log_file = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([sys.executable, "-m", "fleetkeys", *args], stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
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
    proc.kill()
    raise click.ClickException(f"{what} did not become ready within 30 s; see {log_path}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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


def _keyset_json(epoch: int, previous: bytes, fleets: list[Fleet], now: int) -> bytes:
    """The keyset as an operator writes it: readable, indented JSON (publish names the trust root in it
    and canonicalises it)."""
    return json.dumps({
        "epoch": epoch, "namespace": NAMESPACE, "issued_at": format_time(now), "expires_at": format_time(now + 30 * DAY),
        "previous": previous.hex(), "fleets": [f.to_json() for f in fleets],
    }, indent=2).encode() + b"\n"


def _ensure_trust_root(data: Path, anchor: bytes, operator: bytes, log_key: bytes, freshness: bytes, now: int) -> Path:
    path = data / "trust-root.json"
    if not path.exists():
        body = encode_trust_root_body(
            version=1, namespace=NAMESPACE,
            anchors=KeyGroup((NoteVerifier.from_public_key("anchor.local", anchor),), 1),
            countersigners=KeyGroup((NoteVerifier.from_public_key("operator.local", operator),), 1),
            log=LogConfig(ORIGIN, NoteVerifier.from_public_key(ORIGIN, log_key),
                          NoteVerifier.from_public_key(ORIGIN + "/freshness", freshness, ALG_COSIGNATURE_V1), 3600),
            witnesses=KeyGroup((), 0),
            expires_at=now + 5 * 365 * DAY)
        path.write_bytes(encode_envelope(body))
    return path


@click.command("quickstart")
@click.option("--data", "data_dir", default="fleetkeys-data", show_default=True, type=click.Path(file_okay=False))
@click.option("--exit", "exit_after", is_flag=True, help="Stop the services after the three epochs.")
@click.option("--port", default=8080, show_default=True, help="Distributor port (a free one if busy).")
@click.option("--signer-port", default=8090, show_default=True, help="Anchor signer port (a free one if busy).")
def quickstart_cmd(data_dir: str, exit_after: bool, port: int, signer_port: int) -> None:
    """Run signer + distributor locally, publish three epochs, verify them as an app would."""
    from countersigner.publish import PublishError, PublishRequest, publish

    data = Path(data_dir).resolve()
    for sub in ("", "keysets", "bundles", "distributor"):
        (data / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    now = int(time.time())
    operator = _key(data / "operator.key")
    log_key = _key(data / "distributor" / "log.key")
    freshness = _key(data / "distributor" / "freshness.key")
    signer_url = f"http://127.0.0.1:{_free_port(signer_port)}"
    dist_url = f"http://127.0.0.1:{_free_port(port)}"

    with ExitStack() as stack:
        click.echo(f"data directory: {data}")
        subprocess.run([sys.executable, "-m", "fleetkeys", "signer", "init", "--data", str(data / "signer"),
                        "--namespace", NAMESPACE], check=True, stdout=subprocess.DEVNULL)
        signer = _start(["signer", "serve", "--data", str(data / "signer"), "--port", signer_url.rsplit(":", 1)[1]],
                        data / "signer.log", f"{signer_url}/info", "anchor signer")
        stack.callback(_stop, signer)
        anchor = bytes.fromhex(requests.get(f"{signer_url}/info", timeout=10).json()["keys"][0]["public_key"])
        root_path = _ensure_trust_root(data, anchor, operator, log_key, freshness, now)
        click.echo(f"anchor signer:  {signer_url}  (key {anchor.hex()})")
        dist = _start(["serve", "--data", str(data / "distributor"), "--port", dist_url.rsplit(":", 1)[1],
                       "--origin", ORIGIN, "--trust-root", str(root_path), "--workers", "1"],
                      data / "distributor.log", f"{dist_url}/api/v1/info", "distributor")
        stack.callback(_stop, dist)
        click.echo(f"distributor:    {dist_url}  (log {ORIGIN}, SQLite in {data / 'distributor'})")
        click.echo(f"trust root:     {root_path}")

        client = Client(dist_url, root_path.read_bytes(), data / "client")
        seen = client.state.saved_keyset
        latest = _latest_keyset(dist_url)
        previous = latest.digest if latest else bytes(32)
        for what, fleets in _plan(latest, now):
            epoch = (latest.epoch if latest else 0) + 1
            keyset_path = data / "keysets" / f"epoch-{epoch}.json"
            keyset_path.write_bytes(_keyset_json(epoch, previous, fleets, now))
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
            latest, previous = result.keyset, result.keyset.digest
            update = client.refresh()
            verified = client.state.saved_keyset
            changes = ", ".join(keyset_changes(seen, verified).describe()) or "no change"
            click.echo(f"   client verified epoch {update.epoch} (log size {update.checkpoint_size}): {changes}")
            for fleet in update.fleets:
                click.echo(f"     active {fleet.fleet_id:<22} {fleet.algorithm} {fleet.public_key.hex()}")
            seen = verified

        click.echo(f"\nverify again any time:  fleetkeys verify --trust-root {root_path} --distributor {dist_url} "
                   f"--state {data / 'client'}")
        click.echo(f"checkpoint:             {dist_url}/checkpoint")
        click.echo(f"epochs:                 {dist_url}/api/v1/epochs")
        if exit_after:
            return
        click.echo("serving; Ctrl-C to stop")
        try:
            while signer.poll() is None and dist.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            click.echo("stopping")
            return
        raise click.ClickException("a service exited unexpectedly; see the logs in the data directory")


COMMANDS = [quickstart_cmd]
