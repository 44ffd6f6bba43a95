"""An in-process distributor for attack tests, in the spirit of python-tuf's ``RepositorySimulator``.

:class:`Simulator` holds a fixed-seed :class:`tests.factory.World`, an append-only list of log
entries (bundles, trust-root rotation envelopes, or any other bytes), and builds everything the
distributor serves from them: the C2SP checkpoint signed by the log key with the log's freshness
cosignature at :attr:`Simulator.freshness_time` (and the cosignature of each of its
:attr:`Simulator.witnesses` that agrees to give one), ``c2sp.org/tlog-proof@v1`` inclusion proofs and
RFC 9162 consistency proofs.

It serves the distributor's static files (all :class:`verifier.client.Client` reads) and its JSON
read API (for tools, and the pure-core tests' material) through an injected
:data:`verifier.http.Transport` (:meth:`Simulator.transport`: no sockets, but the client's own
retry, redirect, cap and sanitising rules all apply), and to tests that want raw answers through a
:class:`requests.adapters.BaseAdapter` mounted on a :class:`requests.Session`::

    GET /checkpoint                                   text/plain signed checkpoint
    GET /entry/<N>                                    entry N's exact bytes (N encoded like a tile index)
    GET /tile/entries/<N>[.p/<W>], /tile/<L>/<N>[.p/<W>]
                                                      C2SP entry bundles and hash tiles (any width
                                                      up to the served size's), else 404
    GET /api/v1/bundles/latest, /api/v1/bundles/<e>   {"bundle", "epoch", "index", "proof"} or 404
    GET /api/v1/proof/consistency?from=A&to=B         {"from", "to", "proof": [base64...]}
    GET /api/v1/trust-roots/<v>                       {"trust_root", "version", "index", "proof"} or 404

Attack hooks (all plain attributes or small methods, so a test reads like the attack it describes):

* :attr:`view_size` serves the tree head of only the first N entries (a log that went backwards);
* :attr:`witnesses` are the :class:`Witness` objects asked to cosign each checkpoint served (each with
  a ``clock``, ``online`` and ``faulty`` hook), :attr:`log_freshness` whether the log adds its own
  freshness cosignature;
* :meth:`override` answers one path with a fixed :class:`SimResponse` (any status, body, headers,
  an endless generator body) or raises an exception (a stall: any exception becomes a FetchError);
* :meth:`tamper` rewrites the body bytes of every response to one path (:meth:`heal` ends both);
* :meth:`split_view` answers one named client from another simulator (a forked log);
* :attr:`static_view` answers every static file (entry objects, entry bundles, hash tiles) from
  another simulator while ``/checkpoint`` stays this one's: a CDN or proxy telling one consistent lie
  about the entries under the honest, freshly cosigned checkpoint;
* :meth:`after` runs a callback once a response to a path is built (the log moves on mid-refresh);
* :attr:`outage` makes every request raise (an unreachable distributor), :meth:`stall_after` every
  request after the next N (a proxy stalling a long catch-up part way);
* :attr:`requests` records ``(client name, path)`` for every request, :attr:`responses` every
  :class:`_StreamBody` served (with the number of bytes the client actually read).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from tests.factory import T0, World, fleet
from verifier.bundle import parse_bundle
from verifier.checkpoint import Checkpoint, sign_checkpoint
from verifier.client import Client
from verifier.cosignature import add_cosignatures
from verifier.errors import FetchError, ProofError, VerificationError
from verifier.http import HttpClient, HttpResponse, Transport, read_body
from verifier.keyset import GENESIS_PREVIOUS, TrustRootRef, parse_keyset
from verifier.merkle import consistency_proof, inclusion_proof, leaf_hash, leaves_reader, root, verify_consistency
from verifier.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    encode_entry_bundle,
    parse_entry_object_path,
    parse_tile_path,
    tile_width_at,
)
from verifier.tlogproof import TlogProof
from verifier.trustroot import encode_trust_root_object, parse_envelope, parse_trust_root_body

BASE_URL = "https://distributor.test"


@dataclass
class SimResponse:
    """One HTTP answer: status, headers, and a body as bytes or as an iterable of chunks."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: object, status: int = 200) -> SimResponse:
        return cls(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})


class _StreamBody:
    """A file-like response body over an iterator of chunks; counts what the client read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""
        self.consumed = 0
        self.closed = False

    def read(self, n: int | None = -1) -> bytes:
        while not self.closed and (n is None or n < 0 or len(self._buffer) < n):
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
            if n is None or n < 0:
                continue
            break  # like a socket read: return what arrived, do not wait to fill ``n``
        if n is None or n < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:n], self._buffer[n:]
        self.consumed += len(out)
        return out

    def read1(self, n: int = -1, decode_content: bool | None = None) -> bytes:  # noqa: ARG002 - urllib3's signature
        return self.read(n)

    def close(self) -> None:
        self.closed = True


def endless(chunk: bytes = b"A" * 65536) -> Iterator[bytes]:
    """A response body that never ends."""
    while True:
        yield chunk


class Witness:
    """A C2SP witness, ``world.witness_cosigners[index]``. Honest by default: it cosigns a checkpoint only
    if it is consistent with the last one it cosigned for that origin (proof from the log that asks), so a
    log cannot get two forks cosigned by it.

    Hooks: :attr:`clock` (``None``: the asking log's freshness time, i.e. in step with it; else the
    timestamp it writes, e.g. a clock far ahead), :attr:`online` (``False``: it answers nothing, a
    witness that is down), :attr:`faulty` (it cosigns whatever it is shown: a witness colluding with
    the operator).
    """

    def __init__(self, world: World, index: int = 0, *, faulty: bool = False) -> None:
        self.cosigner = world.witness_cosigners[index]
        self.latest: dict[str, Checkpoint] = {}
        self.clock: int | None = None
        self.online = True
        self.faulty = faulty

    def cosign(self, cp: Checkpoint, timestamp: int, prove: Callable[[int, int], list[bytes]]):
        if not self.online:
            return None
        last = self.latest.get(cp.origin)
        if last is not None and not self.faulty:
            if cp.size < last.size:
                return None
            try:
                verify_consistency(last.size, cp.size, prove(last.size, cp.size), last.root, cp.root)
            except ProofError:  # not an extension of what it cosigned: refuse
                return None
        self.latest[cp.origin] = cp
        return self.cosigner.cosign(cp.body(), timestamp if self.clock is None else self.clock)


def witnesses(world: World, *, faulty: int = 0) -> list[Witness]:
    """One :class:`Witness` per witness key of ``world``; the first ``faulty`` of them collude."""
    return [Witness(world, i, faulty=i < faulty) for i in range(len(world.witness_cosigners))]


class Simulator:
    """A simulated distributor over a fixed-seed :class:`World` (see the module docstring)."""

    def __init__(self, world: World | None = None, *, witness: Witness | None = None,
                 witnesses: list[Witness] | None = None) -> None:
        self.world = world or World()
        #: The witnesses this log asks to cosign every checkpoint it serves, in order (a test may change
        #: the list: a log that stops asking, or asks others).
        self.witnesses: list[Witness] = [*([witness] if witness is not None else []), *(witnesses or [])]
        #: Whether the log adds its own freshness cosignature (a log relying on witnesses alone may not).
        self.log_freshness = True
        self.entries: list[bytes] = []
        self.bundle_index: dict[int, int] = {}       # epoch -> log index
        self.trust_root_index: dict[int, int] = {}   # version -> log index
        self.root_bodies: dict[int, bytes] = {}      # version -> body of each rotation logged
        self.freshness_time = T0
        self.view_size: int | None = None
        self.keyset_digests: dict[int, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.responses: list[_StreamBody] = []
        self._overrides: dict[str, SimResponse | BaseException] = {}
        self._tampers: dict[str, Callable[[bytes], bytes]] = {}
        self._views: dict[str, Simulator] = {}
        self._after: dict[str, Callable[[], None]] = {}
        self.outage: BaseException | None = None
        self.static_view: Simulator | None = None
        self._stall_at: int | None = None

    # -- the log ---------------------------------------------------------------------------------

    def append(self, entry: bytes) -> int:
        """Append any entry; return its index."""
        self.entries.append(bytes(entry))
        return len(self.entries) - 1

    def publish_bundle(self, bundle: bytes, epoch: int | None = None) -> int:
        """Append a bundle; it becomes the one served for its epoch (the newest such).

        ``epoch`` must be given for an entry that does not parse (a forged or malformed bundle that a
        malicious log serves anyway).
        """
        index = self.append(bundle)
        if epoch is None:
            keyset = parse_keyset(parse_bundle(bundle).keyset)
            epoch = keyset.epoch
            self.keyset_digests[epoch] = keyset.digest
        self.bundle_index[epoch] = index
        return index

    def publish_trust_root(self, envelope: bytes) -> int:
        body, _ = parse_envelope(envelope)
        index = self.append(envelope)
        version = parse_trust_root_body(body).version
        self.trust_root_index[version] = index
        self.root_bodies[version] = body
        return index

    def root_ref(self) -> TrustRootRef:
        """The name of the newest trust root logged (the world's v1 root before any rotation)."""
        return self.world.root_ref(self.root_bodies[max(self.root_bodies)] if self.root_bodies else None)

    @property
    def epoch(self) -> int:
        return max(self.bundle_index, default=0)

    def make_keyset(self, epoch: int | None = None, fleets=None, *, previous: bytes | None = None,
                    expires_at: int | None = None) -> bytes:
        """Keyset for ``epoch`` (default: the next) chained to the published previous epoch, naming the
        newest trust root logged (as a distributor requires)."""
        epoch = epoch if epoch is not None else self.epoch + 1
        if fleets is None:
            fleets = [fleet(f"fleet-{i}") for i in range(1, epoch + 1)]
        if previous is None:
            previous = self.keyset_digests.get(epoch - 1, GENESIS_PREVIOUS)
        return self.world.keyset(epoch, fleets, previous=previous, expires_at=expires_at, root=self.root_ref())

    def add_epoch(self, fleets=None, *, anchor=None, countersigner=None, expires_at: int | None = None) -> bytes:
        """Sign (anchor, countersigner) and publish the next epoch; return the bundle bytes."""
        epoch = self.epoch + 1
        keyset = self.make_keyset(epoch, fleets, expires_at=expires_at)
        bundle = self.world.bundle(keyset, epoch, anchor=anchor, countersigner=countersigner)
        self.publish_bundle(bundle)
        return bundle

    # -- tree heads and proofs -------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.view_size if self.view_size is not None else len(self.entries)

    def _reader(self):
        return leaves_reader([leaf_hash(e) for e in self.entries])

    def tree_head(self, size: int | None = None) -> Checkpoint:
        size = self.size if size is None else size
        return Checkpoint(self.world.origin, size, root([leaf_hash(e) for e in self.entries[:size]]))

    def checkpoint(self, size: int | None = None, *, timestamp: int | None = None) -> bytes:
        """The signed checkpoint: log key, freshness cosignature, the cosignatures of the witnesses that
        agree to give one."""
        cp = self.tree_head(size)
        timestamp = self.freshness_time if timestamp is None else timestamp
        cosigs = [self.world.freshness_cosigner.cosign(cp.body(), timestamp)] if self.log_freshness else []
        for witness in self.witnesses:
            witnessed = witness.cosign(cp, timestamp, self.consistency)
            if witnessed is not None:
                cosigs.append(witnessed)
        signed = sign_checkpoint(cp, self.world.log_note)
        return add_cosignatures(signed, cosigs) if cosigs else signed

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        return consistency_proof(size1, size2, self._reader())

    def tlog_proof(self, index: int, *, checkpoint: bytes | None = None, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        checkpoint = checkpoint if checkpoint is not None else self.checkpoint(size)
        return TlogProof(index, tuple(inclusion_proof(index, size, self._reader())), checkpoint).encode()

    def static_file(self, path: str) -> bytes | None:
        """A file of the static export at the served size: a hash tile, an entry bundle (C2SP
        tlog-tiles, partial ones at any width up to the current one: like the distributor and its
        export, older widths stay served) or a per-entry object ``entry/<N>``; ``None`` if it does not
        exist (yet) or the path is not one."""
        size = self.size
        if path.startswith("trust-root/"):
            version = path[len("trust-root/"):]
            index = self.trust_root_index.get(int(version)) if version.isdigit() and version[0] != "0" else None
            return encode_trust_root_object(index, self.entries[index]) if index is not None and index < size else None
        if path.startswith("entry/"):
            try:
                index = parse_entry_object_path(path)
            except VerificationError:
                return None
            return self.entries[index] if index < size else None
        try:
            ref = parse_tile_path(path)
        except VerificationError:
            return None
        if ref.level is None:
            first = ref.index * TILE_WIDTH
            if first + ref.width > size:
                return None
            return encode_entry_bundle(self.entries[first:first + ref.width])
        if ref.width > tile_width_at(ref.level, ref.index, size):
            return None
        nodes = self._reader()
        height = TILE_HEIGHT * ref.level
        return b"".join(nodes(height, ref.index * TILE_WIDTH + i) for i in range(ref.width))

    def material(self, epoch: int, *, size: int | None = None) -> tuple[bytes, bytes, bytes]:
        """``(bundle, tlog-proof, checkpoint)`` for ``epoch``, as the pure core takes them."""
        index = self.bundle_index[epoch]
        checkpoint = self.checkpoint(size)
        return self.entries[index], self.tlog_proof(index, checkpoint=checkpoint, size=size), checkpoint

    def trust_root_material(self, version: int) -> tuple[bytes, bytes, bytes]:
        index = self.trust_root_index[version]
        checkpoint = self.checkpoint()
        return self.entries[index], self.tlog_proof(index, checkpoint=checkpoint), checkpoint

    # -- hooks -----------------------------------------------------------------------------------

    def override(self, path: str, response: SimResponse | BaseException) -> None:
        """Answer ``path`` (exact, query included) with ``response``, or raise it if an exception."""
        self._overrides[path] = response

    def tamper(self, path: str, fn: Callable[[bytes], bytes]) -> None:
        """Rewrite the body of every response to ``path`` with ``fn``."""
        self._tampers[path] = fn

    def stall_after(self, n: int | None) -> None:
        """Answer the next ``n`` requests, then stall every one after them (``None``: stop stalling)."""
        self._stall_at = None if n is None else len(self.requests) + n

    def heal(self, path: str | None = None) -> None:
        """End the overrides and tampers of ``path`` (of every path if ``None``): honest answers again."""
        for hooks in (self._overrides, self._tampers):
            if path is None:
                hooks.clear()
            else:
                hooks.pop(path, None)

    def split_view(self, client_name: str, other: Simulator) -> None:
        """Serve ``client_name`` from ``other`` (the same log keys, another history)."""
        self._views[client_name] = other

    def after(self, path: str, fn: Callable[[], None]) -> None:
        """Call ``fn`` right after the response to ``path`` is built."""
        self._after[path] = fn

    # -- HTTP ------------------------------------------------------------------------------------

    def handle(self, client_name: str, path: str) -> SimResponse:
        """Route one GET request (the read API in the module docstring)."""
        self.requests.append((client_name, path))
        if self.outage is not None:
            raise self.outage
        if self._stall_at is not None and len(self.requests) > self._stall_at:
            raise TimeoutError("stalled by a hostile proxy")
        if client_name in self._views:
            return self._views[client_name].handle(client_name, path)
        if self.static_view is not None and path.startswith(("/tile/", "/entry/")):
            return self.static_view.handle(client_name, path)
        override = self._overrides.get(path)
        if isinstance(override, BaseException):
            raise override
        response = override if override is not None else self._route(path)
        if path in self._tampers:
            response = SimResponse(response.status, self._tampers[path](bytes(response.body)), response.headers)
        if path in self._after:
            self._after[path]()
        return response

    def get(self, path: str) -> SimResponse:
        """What the honest distributor answers to ``path`` now (to replay it elsewhere)."""
        return self._route(path)

    def _route(self, path: str) -> SimResponse:
        url = urlsplit(path)
        parts = url.path.strip("/").split("/")
        if url.path == "/checkpoint":
            return SimResponse(200, self.checkpoint(), {"Content-Type": "text/plain; charset=utf-8"})
        if url.path.startswith(("/tile/", "/entry/", "/trust-root/")):
            data = self.static_file(url.path[1:])
            if data is None:
                return SimResponse.json({"error": f"{url.path} does not exist at size {self.size}"}, 404)
            return SimResponse(200, data, {"Content-Type": "application/octet-stream"})
        if parts[:3] == ["api", "v1", "bundles"] and len(parts) == 4:
            visible = {e: i for e, i in self.bundle_index.items() if i < self.size}
            epoch = max(visible, default=0) if parts[3] == "latest" else int(parts[3]) if parts[3].isdigit() else -1
            if epoch not in visible:
                return SimResponse.json({"error": f"no bundle for epoch {parts[3]}"}, 404)
            index = visible[epoch]
            return SimResponse.json({"bundle": base64.b64encode(self.entries[index]).decode(), "epoch": epoch,
                                     "index": index, "proof": self.tlog_proof(index).decode()})
        if parts[:3] == ["api", "v1", "trust-roots"] and len(parts) == 4 and parts[3].isdigit():
            index = self.trust_root_index.get(int(parts[3]))
            if index is None or index >= self.size:
                return SimResponse.json({"error": f"no trust root version {parts[3]}"}, 404)
            return SimResponse.json({"trust_root": base64.b64encode(self.entries[index]).decode(),
                                     "version": int(parts[3]), "index": index,
                                     "proof": self.tlog_proof(index).decode()})
        if url.path == "/api/v1/proof/consistency":
            query = parse_qs(url.query)
            a, b = int(query["from"][0]), int(query["to"][0])
            if not 0 < a <= b <= self.size:
                return SimResponse.json({"error": f"no consistency proof from {a} to {b}"}, 400)
            return SimResponse.json({"from": a, "to": b,
                                     "proof": [base64.b64encode(h).decode() for h in self.consistency(a, b)]})
        return SimResponse.json({"error": "not found"}, 404)

    def session(self, client_name: str = "client") -> requests.Session:
        """A :class:`requests.Session` whose requests to :data:`BASE_URL` this simulator answers."""
        session = requests.Session()
        session.mount(BASE_URL, SimulatorAdapter(self, client_name))
        return session

    def transport(self, client_name: str = "client") -> Transport:
        """A :data:`verifier.http.Transport` answering from this simulator as ``client_name``: an
        exception raised while answering (an outage, a stall) is the transport's FetchError; the
        byte cap and the attempt's deadline are applied by the same
        :func:`verifier.http.read_body` the socket transport uses."""

        def send(method: str, url: str, limit: int, body: bytes | None, headers, timeout: float) -> HttpResponse:  # noqa: ARG001
            parts = urlsplit(url)
            try:
                answer = self.handle(client_name, parts.path + (f"?{parts.query}" if parts.query else ""))
            except Exception as exc:  # noqa: BLE001 - a simulated network failure
                raise FetchError(f"{type(exc).__name__}: {exc}") from None
            stream = _StreamBody([answer.body] if isinstance(answer.body, bytes | bytearray) else answer.body)
            self.responses.append(stream)
            headers = {k.lower(): v for k, v in answer.headers.items()}
            data = read_body(url, answer.status, headers.get("content-length"), stream.read1, limit,
                             time.monotonic() + timeout)
            return HttpResponse(answer.status, headers, data, url)

        return send

    def client(self, state_dir: str | Path, *, trust_root: bytes | None = None, now: int = T0 + 60,
               name: str = "client", retries: int = 1) -> Client:
        """A :class:`Client` on this simulator, bootstrap root = the world's v1 root, clock fixed at ``now``
        (tests move it through ``client.clock = lambda: t``)."""
        http = HttpClient(timeout=1.0, retries=retries, backoff=0.0, allowed_origins=[BASE_URL],
                          transport=self.transport(name))
        return Client(BASE_URL, trust_root if trust_root is not None else self.world.trust_root_bytes(), state_dir,
                      http=http, clock=lambda: now)


class SimulatorAdapter(BaseAdapter):
    """Turns :class:`requests.PreparedRequest` objects into :meth:`Simulator.handle` calls."""

    def __init__(self, simulator: Simulator, client_name: str) -> None:
        super().__init__()
        self.simulator = simulator
        self.client_name = client_name

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # noqa: ARG002
        url = urlsplit(request.url)
        path = url.path + (f"?{url.query}" if url.query else "")
        answer = self.simulator.handle(self.client_name, path)
        body = _StreamBody([answer.body] if isinstance(answer.body, bytes | bytearray) else answer.body)
        self.simulator.responses.append(body)
        response = requests.Response()
        response.status_code = answer.status
        response.headers = CaseInsensitiveDict(answer.headers)
        response.raw = body
        response.url = request.url
        response.request = request
        response.reason = "simulated"
        response.encoding = "utf-8"
        response.connection = self
        if not stream:
            response.content  # noqa: B018 - what requests does for stream=False
        return response

    def close(self) -> None:
        pass


__all__ = ["BASE_URL", "SimResponse", "Simulator", "SimulatorAdapter", "Witness", "endless", "witnesses"]
