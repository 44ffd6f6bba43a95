"""The anchor signer: the independent third party's signing service (docs/DESIGN.md §2, §4).

It signs a Plexi ``SignatureMessage`` for epoch N of a namespace only once, never two digests for one
epoch, and records every signature and refusal in an append-only, fsync'd journal before answering.
Modules: :mod:`signer.rules` (pure publication rules), :mod:`signer.journal` (SQLite journal),
:mod:`signer.wire` (Plexi JSON shapes), :mod:`signer.app` (Flask factory ``create_app``),
:mod:`signer.server` (gunicorn), :mod:`signer.config` (data directory and tokens), :mod:`signer.cli`.
"""
