"""The ``fleetkeys`` console command: one subcommand group per role.

Each role keeps its commands in its own ``cli`` module and exports them as ``COMMANDS`` (a list of
click commands or groups); this root only assembles them, so no role imports another:

=================  =========================================================================
``keys``           ``generate`` (a key file)
``signer``         ``init``, ``token``, ``serve`` (the anchor signer, run by the third party)
``operator``       ``countersign``, ``publish``, ``trust-root create|show``
``distributor``    ``serve``, ``export``, ``log epochs``
``client``         ``verify``, ``verify-bundle``
``witness``        ``serve``, ``keygen``, ``vkey`` (a C2SP tlog-witness, run by an independent party)
=================  =========================================================================

Short forms kept at the top level: ``fleetkeys quickstart``, ``serve``, ``verify`` and ``audit``;
every command's earlier top-level name (``publish``, ``countersign``, ``trust-root``, ``keygen``,
``export``, ``verify-bundle``, ``log``) still works, hidden from the help.
"""

from __future__ import annotations

import copy
import importlib
import sys

try:
    import click
except ImportError:  # the client library alone was installed (no extras)
    sys.exit("the fleetkeys command needs the services extra: pip install 'fleetkeys[services]' (or '[all]')")

#: group name, help, role modules whose COMMANDS it holds, {command name: name inside the group}.
_GROUPS: tuple[tuple[str, str, tuple[str, ...], dict[str, str]], ...] = (
    ("keys", "Private keys: create key files.", ("fleetkeys.keys_cli",), {"keygen": "generate"}),
    ("operator", "The operator: countersign, publish, trust roots.", ("countersigner.cli", "fleetkeys.client_cli"),
     {"countersign": "countersign", "publish": "publish", "trust-root": "trust-root"}),
    ("distributor", "The log: serve it, export it, list it.", ("distributor.cli", "fleetkeys.audit_cli"),
     {"serve": "serve", "export": "export", "log": "log", "recover": "recover"}),
    ("client", "The client verifier: fetch and verify fleet keys, check a bundle.", ("fleetkeys.client_cli",),
     {"verify": "verify", "verify-bundle": "verify-bundle"}),
    ("witness", "A C2SP tlog-witness: serve add-checkpoint, create or show its key.", ("witness.cli",),
     {"witness-serve": "serve", "witness-keygen": "keygen", "witness-vkey": "vkey"}),
)
#: Commands that also stand at the top level under their own name, shown in the help.
_SHORT = {"quickstart", "serve", "verify", "audit", "signer", "fsck"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fleetkeys")
def main() -> None:
    """fleetkeys: publish, log and verify HSM fleet public keys."""


def _commands(module_name: str) -> list[click.Command]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return []
    return list(module.COMMANDS)


def _assemble() -> None:
    placed: dict[str, click.Command] = {}
    for name, help_text, modules, members in _GROUPS:
        group = click.Group(name, help=help_text)
        for module_name in modules:
            for command in _commands(module_name):
                if command.name in members:
                    group.add_command(command, members[command.name])
                    placed[command.name] = command
        main.add_command(group)
    for module_name in ("fleetkeys.quickstart", "fleetkeys.audit_cli", "signer.cli", "fleetkeys.fsck_cli"):
        for command in _commands(module_name):
            if command.name in _SHORT:
                main.add_command(command)
    for old_name, command in placed.items():
        if old_name in _SHORT:
            main.add_command(command, old_name)
        elif old_name not in main.commands:
            alias = copy.copy(command)
            alias.hidden = True
            main.add_command(alias, old_name)


_assemble()
