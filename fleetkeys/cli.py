"""The ``fleetkeys`` console command: one subcommand group per role.

Each role keeps its commands in its own ``cli`` module and exports them as ``COMMANDS`` (a list of
click commands or groups); this root only assembles them, so no role imports another.
"""

from __future__ import annotations

import importlib

import click

_ROLE_MODULES = (
    "fleetkeys.keys_cli",
    "signer.cli",
    "countersigner.cli",
    "distributor.cli",
    "fleetkeys.client_cli",
    "fleetkeys.quickstart",
    "fleetkeys.audit_cli",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fleetkeys")
def main() -> None:
    """fleetkeys: publish, log and verify HSM fleet public keys."""


for _name in _ROLE_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise
        continue
    for _command in _module.COMMANDS:
        main.add_command(_command)
