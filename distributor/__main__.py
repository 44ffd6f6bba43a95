"""``python -m distributor serve|export``: the distributor's commands without the root ``fleetkeys`` group."""

import click

from .cli import COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """fleetkeys distributor."""


for _command in COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
