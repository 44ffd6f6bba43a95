"""What the witness does with one add-checkpoint request, without HTTP (:mod:`witness.app` serves it).

:meth:`Witness.add_checkpoint` takes the request body and returns the response body of a 200, the
witness's cosignature line; every refusal is a :class:`witness.errors.WitnessError`. The steps, in
the order c2sp.org/tlog-witness@v1.0.0 states its rules:

1. Parse the body strictly (:func:`witness.wire.parse_add_checkpoint`): :class:`MalformedRequest`
   (400), :class:`RequestTooLarge`.
2. "If the checkpoint origin is unknown, the witness MUST respond with a 404 Not Found":
   :class:`UnknownOrigin`.
3. "The witness MUST verify the checkpoint signature against the public key(s) it trusts for the
   checkpoint origin, and it MUST ignore signatures from unknown keys ... If none of the signatures
   verify against any of the trusted public keys, the witness MUST respond with a 403 Forbidden"
   (:func:`verifier.note.open_note` with the origin's keys: unknown keys' lines, other witnesses'
   cosignatures among them, are ignored; a line by a trusted key that fails makes the whole note
   refused, c2sp.org/signed-note, also 403): :class:`UntrustedCheckpoint`. The checkpoint used from
   here on is parsed again from the verified text.
4. In one transaction (:meth:`witness.state.WitnessState.advance`): the rules of
   :func:`witness.rules.check_update` (400 / 409 / 422), the cosignature at the request time
   (:class:`verifier.cosignature.CosignatureSigner`, tlog-cosignature/v1 over the exact note text,
   timestamp never before the previous one for the origin), checked against the witness's own
   verifier key before it may leave (:func:`verifier.cosignature.verify_cosignatures`), then the new
   state is committed. "The witness MUST persist the new checkpoint before responding." A signed
   checkpoint refused as inconsistent (422, or 409 for another root at the known size) is logged at
   WARNING with its request, as evidence of the log's misbehaviour (the spec's MAY).
"""

from __future__ import annotations

import logging

from keys import KeyBackendError, Signer
from verifier.checkpoint import parse_checkpoint_body
from verifier.cosignature import CosignatureSigner, verify_cosignatures
from verifier.errors import SignatureError, VerificationError
from verifier.note import NoteVerifier, Signature, open_note

from .config import WitnessConfig
from .errors import (
    InconsistentCheckpoint,
    MalformedRequest,
    RootConflict,
    UnknownOrigin,
    UntrustedCheckpoint,
    WitnessUnavailable,
)
from .rules import LogState
from .state import WitnessState
from .wire import parse_add_checkpoint

log = logging.getLogger("fleetkeys.witness")


class Witness:
    """One witness: its configuration, its cosigning key and its state store (one per process)."""

    def __init__(self, config: WitnessConfig, signer: Signer, state: WitnessState) -> None:
        self.config = config
        self.state = state
        self.verifier: NoteVerifier = config.verifier_for(signer.public_key)
        self._cosigner = CosignatureSigner(config.name, signer)

    @property
    def vkey(self) -> str:
        """The witness's verifier key: ``<name>+<key id>+base64(0x04 || public key)``."""
        return self.verifier.vkey

    def add_checkpoint(self, body: bytes) -> bytes:
        """Handle one add-checkpoint request body; return the 200 response body (module docstring)."""
        request = parse_add_checkpoint(body, self.config.max_body)
        origin = request.checkpoint.origin
        trusted = self.config.logs.get(origin)
        if trusted is None:
            raise UnknownOrigin(f"unknown log origin {origin[:120]!r}")
        try:
            note = open_note(request.note, trusted)
        except SignatureError as exc:
            raise UntrustedCheckpoint(f"checkpoint of {origin}: {exc}") from None
        except VerificationError as exc:  # already parsed above, so not expected
            raise MalformedRequest(f"checkpoint: {exc}") from None
        checkpoint = parse_checkpoint_body(note.text)

        def cosign(timestamp: int) -> Signature:
            try:
                signature = self._cosigner.cosign(note.text, timestamp)
                verify_cosignatures(note.text + b"\n" + signature.line, [self.verifier], 1)
            except (KeyBackendError, VerificationError) as exc:
                log.error("cosigning failed: %s", exc)
                raise WitnessUnavailable(f"the witness key failed: {exc}") from None
            return signature

        try:
            signature, state = self.state.advance(checkpoint, request.old_size, request.proof, request.note,
                                                  clock=self.config.clock, cosign=cosign)
        except (InconsistentCheckpoint, RootConflict) as exc:
            # "the witness MAY log the request even if the checkpoint fails one of the consistency checks
            # ... as it might be proof of log misbehavior": the log signed it, so it is kept here.
            log.warning("not cosigned, possible misbehaviour of %s: %s; old size %d; proof %s; checkpoint %r",
                        origin, exc, request.old_size, [h.hex() for h in request.proof], request.note)
            raise
        self._committed(state)
        return signature.line

    def _committed(self, state: LogState) -> None:
        log.info("cosigned %s at size %d (timestamp %d)", state.origin, state.size, state.timestamp)
        if self.config.after_commit is not None:
            self.config.after_commit()


__all__ = ["Witness"]
