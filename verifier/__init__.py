"""fleetkeys client library and protocol core (pure: no I/O outside ``verifier.client``).

Public entry points are re-exported here; see ``bundles/FORMAT.md`` for the formats.
"""

from .errors import (
    ChainError,
    ConsistencyError,
    DigestError,
    ExpiredError,
    FormatError,
    FreezeError,
    MismatchError,
    ProofError,
    RollbackError,
    SignatureError,
    SizeLimitError,
    ThresholdError,
    TrustRootError,
    VerificationError,
)

__all__ = [
    "ChainError",
    "ConsistencyError",
    "DigestError",
    "ExpiredError",
    "FreezeError",
    "FormatError",
    "MismatchError",
    "ProofError",
    "RollbackError",
    "SignatureError",
    "SizeLimitError",
    "ThresholdError",
    "TrustRootError",
    "VerificationError",
]

from .update import ClientState, VerifiedUpdate, verify_trust_root_update, verify_update  # noqa: E402

__all__ += ["ClientState", "VerifiedUpdate", "verify_trust_root_update", "verify_update"]
