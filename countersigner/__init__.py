"""The operator's countersigner and publish pipeline (docs/DESIGN.md §2, §4).

:mod:`countersigner.countersign` checks the anchor signature over exactly the requested statement and
only then countersigns (``countersign``, ``build_bundle``, typed ``CountersignRefused`` errors);
:mod:`countersigner.publish` runs the whole publish job; :mod:`countersigner.cli` holds the
``fleetkeys countersign`` and ``fleetkeys publish`` commands.
"""
