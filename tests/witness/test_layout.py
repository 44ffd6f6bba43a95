"""Where the witness sits: its import rules (tests/test_boundaries.py's checker) and its CLI group."""

from __future__ import annotations

from click.testing import CliRunner

from fleetkeys.cli import main
from tests.test_boundaries import REPO, imports_of, project_files, rule_broken


def test_witness_is_checked_by_the_import_rules_and_breaks_none():
    files = project_files()["witness"]
    assert "witness/__init__.py" in files and "witness/app.py" in files
    found = {}
    for path in files:
        for imp in imports_of((REPO / path).read_text(encoding="utf-8"), path):
            assert rule_broken("witness", imp) is None, f"{path}:{imp.line}: {imp.text}"
            found.setdefault(imp.top, set()).add(path)
    # Project packages it uses: the protocol core and key custody only (no other role, not the CLI).
    assert {"verifier", "keys", "witness"} <= set(found)
    assert not set(found) & {"signer", "countersigner", "distributor", "fleetkeys", "bundles", "tests"}


def test_the_witness_group_and_no_short_form_taken():
    group = main.commands["witness"]
    assert set(group.commands) == {"serve", "keygen", "vkey"}
    # The top-level short form `serve` is still the distributor's; the role-prefixed names are hidden.
    assert main.commands["serve"].callback.__module__ == "distributor.cli"
    for hidden in ("witness-serve", "witness-keygen", "witness-vkey"):
        assert main.commands[hidden].hidden
    out = CliRunner().invoke(main, ["witness", "serve", "--help"]).output
    assert "--log ORIGIN=VKEY" in out and "--key" in out and "--data" in out and "--name" in out
