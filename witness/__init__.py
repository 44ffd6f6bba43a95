"""The witness: a C2SP tlog-witness (c2sp.org/tlog-witness@v1.0.0) for fleetkeys' log (docs/DESIGN.md §7).

It cosigns a log's checkpoint only if it is proven consistent with the latest checkpoint it cosigned
for that origin, and records it durably before answering, so no log can get two forks of its history
cosigned by one witness; submitting the same checkpoint again renews its cosignature with a new
timestamp (freshness). It imports only ``verifier`` and ``keys``.

Modules: :mod:`witness.wire` (the add-checkpoint body parser), :mod:`witness.rules` (pure checks),
:mod:`witness.state` (SQLite state, the atomic check-and-update), :mod:`witness.core` (one request,
without HTTP), :mod:`witness.app` (Flask factory ``create_app``, the status table), :mod:`witness.server`
(gunicorn), :mod:`witness.config`, :mod:`witness.errors`, :mod:`witness.cli` (``fleetkeys witness``).

Endpoints: ``POST /add-checkpoint`` (the spec's) and ``GET /`` (JSON: the witness's name and vkey,
the logs it witnesses); see :mod:`witness.app`.
"""
