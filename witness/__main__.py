"""``python -m witness serve|keygen|vkey ...`` = ``fleetkeys witness ...`` (tests start real witnesses so)."""

from .cli import witness_group

witness_group(prog_name="python -m witness")
