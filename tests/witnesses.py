"""Real witness processes (``python -m witness serve``, gunicorn) for a :class:`tests.factory.World`:
witness ``i`` runs under the name and seed of ``world.witness_cosigners[i]`` and trusts the world's
log key, so a distributor can be configured with ``--witness URL=VKEY`` for each."""

from __future__ import annotations

from pathlib import Path

from tests.factory import SeedSigner, World
from tests.service_process import ServiceProcess
from tests.signer.process import write_seed_key


def witness_seed(world: World, index: int) -> bytes:
    """The fixed seed of ``world.witness_cosigners[index]`` (see ``World.__post_init__``)."""
    signer = world.witness if index == 0 else SeedSigner(f"witness {index + 1}")
    assert signer.public_key == world.witness_cosigners[index].verifier.public_key
    return signer._seed  # noqa: SLF001 - the fixed test seed, written as the key file the process loads


class WorldWitness(ServiceProcess):
    """Witness ``index`` of ``world``, its key and state under ``base``; ``port`` to restart it where it was."""

    name = "witness"
    ready_path = "/"
    stop_timeout = 15.0

    def __init__(self, world: World, index: int, base: Path, *, port: int | None = None) -> None:
        self.world, self.index, self.base = world, index, base
        self.vkey = world.witness_cosigners[index].verifier.vkey
        base.mkdir(parents=True, exist_ok=True)
        key = base / "witness.key"
        if not key.exists():
            write_seed_key(key, witness_seed(world, index))
        args = ["witness", "serve", "--name", world.witness_cosigners[index].verifier.name, "--key", f"file:{key}",
                "--data", str(base / "data"), "--log", f"{world.origin}={world.log_note.verifier.vkey}",
                "--workers", "1"]
        super().__init__(args, lambda p: base / f"witness-{p}.log", port=port)
        self.wait_ready(30.0)

    @property
    def option(self) -> str:
        """The distributor's ``--witness`` value for this witness."""
        return f"{self.url}={self.vkey}"

    def restart(self) -> WorldWitness:
        """The same witness (key, state, port) started again after :meth:`kill` or :meth:`stop`."""
        return WorldWitness(self.world, self.index, self.base, port=self.port)


def start_witnesses(world: World, base: Path, count: int | None = None) -> list[WorldWitness]:
    out: list[WorldWitness] = []
    try:
        for i in range(len(world.witness_cosigners) if count is None else count):
            out.append(WorldWitness(world, i, base / f"w{i + 1}"))
    except BaseException:
        for w in out:
            w.kill()
        raise
    return out
