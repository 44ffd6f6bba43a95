"""The fleetkeys distributor: the append-only log of bundles and its HTTP service (DESIGN.md §5, §8).

Modules: :mod:`.storage` (interface; :mod:`.storage_sqlite`, :mod:`.storage_postgres`), :mod:`.tree`
(tiled tree edge), :mod:`.log` (validation, appends, proofs), :mod:`.freshness` (the one served
checkpoint), :mod:`.export` (static C2SP files and entry objects), :mod:`.app` (Flask
``create_app``), :mod:`.server` (gunicorn), :mod:`.cli` (``fleetkeys serve`` / ``fleetkeys export``).
Importing the package does nothing.
"""
