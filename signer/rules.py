"""The anchor signer's publication rules, as pure functions over the journal's state.

The signer signs epoch ``N`` of a namespace at most once and never signs two histories. For a request
``(namespace, epoch, digest[, previous])`` and what the journal holds, :func:`check_request` decides,
in this order:

1. the namespace is unknown → 404 (not recorded: it names nothing the signer vouches for);
   a digest-only request (Plexi's ``POST /namespaces/<ns>/audits``, no keyset) on a namespace of mode
   ``keyset`` → 409 ``keyset-required`` (recorded): a keyset namespace signs only keysets the signer
   has parsed and chained itself, so the digest path cannot route around rules 6 to 8;
2. ``epoch`` is already signed: with the same digest → the stored response again (idempotent, so a
   client whose connection died after the journal commit gets the very same signature); with another
   digest → **equivocation**, refused (409, recorded);
3. the namespace is not ``Online`` → refused (409, recorded);
4. ``epoch`` is not the next one: the first epoch is 1, then exactly last + 1 (409, recorded);
5. the digest was already signed for another epoch of this namespace (a replayed state) → 409, recorded;
6. keyset requests only: ``previous`` must be the digest signed for the last epoch (64 zero bytes for
   epoch 1), else the keyset forks the hash chain → 409, recorded;
7. keyset requests only: ``issued_at`` must not be earlier than the ``issued_at`` of the last epoch's
   keyset (when that is known: it was signed through the keyset path) → 409 ``issued-at-regressed``,
   recorded;
8. keyset requests only: the revocation rule (bundles/FORMAT.md §3.2,
   :func:`verifier.update.check_revocations`): no ``active`` fleet whose fleet id or public key a
   keyset revoked that the signer signed earlier for this namespace through the keyset path → 409
   ``revoked-reused``, recorded; and the namespace's marks stay within
   :data:`verifier.update.MAX_REVOKED` (every client would refuse more) → 409
   ``too-many-revocations``, recorded. The journal keeps the marks of every keyset it signs (its
   ``revoked`` table, written in the transaction of the signature).

Namespace modes, fixed when the namespace is created: ``keyset`` (the default) signs only through
``POST /api/v1/sign-keyset``; ``digest`` also accepts Plexi's digest-only path, for pure Plexi
compatibility, where the signer cannot check ``previous`` or the keyset and vouches only for rules 2-5.
A digest-only request carries no keyset, so the signer cannot see what it revokes or re-activates:
rules 6-8 apply to the keyset path alone, and a digest-mode namespace's marks are only those of the
keysets it signed through the keyset path. The revocation rule over the whole published history is
then the distributor's (it refuses to log such a keyset) and the audit's.

Anything else is signed, with a timestamp from :func:`next_timestamp` (strictly increasing across the
whole journal, whatever the wall clock does). Everything here is pure: the journal runs it inside one
``BEGIN IMMEDIATE`` transaction, so the check and the insert are atomic across processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from verifier.errors import ChainError, RollbackError, SizeLimitError
from verifier.keyset import Keyset, check_next_epoch
from verifier.update import check_revocations

from .errors import Refusal

STATUS_ONLINE = "Online"
STATUS_INITIALIZATION = "Initialization"
STATUS_DISABLED = "Disabled"
STATUSES = (STATUS_ONLINE, STATUS_INITIALIZATION, STATUS_DISABLED)

MODE_KEYSET = "keyset"
MODE_DIGEST = "digest"
MODES = (MODE_KEYSET, MODE_DIGEST)

#: Refusal code of each next-epoch rule (:func:`verifier.keyset.check_next_epoch`).
_RULE_CODES = {"epoch": "wrong-epoch", "previous": "broken-chain", "issued_at": "issued-at-regressed"}


@dataclass(frozen=True)
class Namespace:
    """A namespace record: the Plexi fields the signer keeps (``name``, ``ciphersuite``, ``status``).

    ``mode`` (``keyset`` or ``digest``, module docstring) is fixed at creation; a journal written before
    modes existed reads as ``keyset``.
    """

    name: str
    ciphersuite: int
    status: str
    log_directory: str | None
    created_at: int
    mode: str = MODE_KEYSET


@dataclass(frozen=True)
class SignRequest:
    """What a client asks the signer to sign. ``previous`` and ``issued_at`` (seconds), and the parsed
    ``keyset`` itself, are known only on the keyset path: a request without ``previous`` is a
    digest-only request."""

    namespace: str
    epoch: int
    digest: bytes
    previous: bytes | None = None
    issued_at: int | None = None
    keyset: Keyset | None = None

    @property
    def is_keyset(self) -> bool:
        return self.previous is not None


@dataclass(frozen=True)
class SignedEntry:
    """One signature in the journal: the exact statement bytes, the signature and the key that made it.

    ``issued_at`` is the signed keyset's ``issued_at`` (seconds), ``None`` for a digest-only signature.
    """

    namespace: str
    epoch: int
    digest: bytes
    previous: bytes | None
    ciphersuite: int
    timestamp: int
    statement: bytes
    signature: bytes
    public_key: bytes
    issued_at: int | None = None


def check_request(request: SignRequest, namespace: Namespace | None, last: SignedEntry | None,
                  at_epoch: SignedEntry | None, digest_epoch: int | None,
                  revoked: frozenset[str] = frozenset()) -> SignedEntry | None:
    """Apply the rules (module docstring) to one request; return the stored entry for a repeat.

    ``last`` is the namespace's highest signed epoch, ``at_epoch`` the entry already signed for
    ``request.epoch`` (if any), ``digest_epoch`` the epoch at which ``request.digest`` was signed in
    this namespace (if any), ``revoked`` the revocation marks of the keysets signed in this namespace
    (rule 8). Returns ``None`` when the request may be signed now; raises :class:`Refusal` otherwise.
    """
    if namespace is None:
        raise Refusal("unknown-namespace", f"namespace {request.namespace!r} does not exist")
    ns = namespace.name
    if not request.is_keyset and namespace.mode == MODE_KEYSET:
        raise Refusal("keyset-required",
                      f"namespace {ns!r} is a keyset namespace: it signs only keysets sent to POST /api/v1/sign-keyset "
                      "(which checks previous and the keyset), never a bare digest", record=True)
    if at_epoch is not None:
        if at_epoch.digest == request.digest:
            return at_epoch
        raise Refusal("equivocation",
                      f"{ns} epoch {request.epoch} is already signed with digest {at_epoch.digest.hex()}; "
                      f"refusing to sign a second digest {request.digest.hex()} for it", record=True)
    if namespace.status != STATUS_ONLINE:
        raise Refusal("namespace-not-online",
                      f"namespace {ns!r} is {namespace.status}, not Online", record=True)
    try:
        check_next_epoch(last, request)
    except ChainError as exc:
        raise Refusal(_RULE_CODES[exc.rule], f"{ns}: {exc}", record=True) from None
    if digest_epoch is not None:
        raise Refusal("digest-reused",
                      f"{ns}: digest {request.digest.hex()} was already signed for epoch {digest_epoch}; "
                      "a digest is never signed twice", record=True)
    if request.keyset is not None:
        try:
            check_revocations(revoked, request.keyset)
        except RollbackError as exc:
            raise Refusal("revoked-reused", f"{ns}: {exc}", record=True) from None
        except SizeLimitError as exc:
            raise Refusal("too-many-revocations", f"{ns}: keyset epoch {request.epoch}: {exc}; clients would refuse "
                          "it", record=True) from None
    return None


def next_timestamp(now_ms: int, last_timestamp: int | None) -> int:
    """The statement timestamp: the clock, but always strictly after the last one the signer set."""
    if last_timestamp is None:
        return now_ms
    return max(now_ms, last_timestamp + 1)


__all__ = [
    "MODES",
    "MODE_DIGEST",
    "MODE_KEYSET",
    "Namespace",
    "STATUSES",
    "STATUS_DISABLED",
    "STATUS_INITIALIZATION",
    "STATUS_ONLINE",
    "SignRequest",
    "SignedEntry",
    "check_request",
    "next_timestamp",
]
