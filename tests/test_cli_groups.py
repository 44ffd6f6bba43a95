"""The fleetkeys command: a group per role, the README's short forms, the earlier names as hidden aliases."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fleetkeys.cli import main

GROUPS = {
    "keys": {"generate"},
    "signer": {"init", "token", "serve"},
    "operator": {"countersign", "publish", "trust-root"},
    "distributor": {"serve", "export", "log", "recover"},
    "client": {"verify", "verify-bundle"},
    "witness": {"serve", "keygen", "vkey"},
}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_each_role_has_its_group(group: str) -> None:
    assert set(main.commands[group].commands) == GROUPS[group]


def test_short_forms_are_listed_and_old_names_hidden() -> None:
    listed = {name for name, cmd in main.commands.items() if not cmd.hidden}
    assert listed == {"quickstart", "serve", "verify", "audit", "fsck", *GROUPS}
    for old in ("publish", "countersign", "trust-root", "keygen", "export", "verify-bundle", "log"):
        assert main.commands[old].hidden, old
    out = CliRunner().invoke(main, ["--help"]).output
    assert "keygen" not in out and "operator" in out


@pytest.mark.parametrize("argv", [["serve", "--help"], ["distributor", "serve", "--help"], ["keygen", "--help"],
                                  ["keys", "generate", "--help"], ["operator", "trust-root", "create", "--help"],
                                  ["trust-root", "create", "--help"]])
def test_every_spelling_runs(argv: list[str]) -> None:
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0 and "Usage:" in result.output
