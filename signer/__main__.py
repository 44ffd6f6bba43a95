"""``python -m signer ...`` = ``fleetkeys signer ...`` (used by tests to start a real signer process)."""

from .cli import signer_group

signer_group(prog_name="python -m signer")
