"""The ``fedchain`` command line.

Each group of commands lives in its own module with a ``register(app)`` function;
heavy libraries are imported inside the commands, so ``fedchain --help`` is fast.
"""

from __future__ import annotations

import typer

from peer import cli_chain, cli_learn, cli_node, cli_rewards

app = typer.Typer(
    name="fedchain",
    help="Decentralised federated learning: libp2p gossip, robust aggregation, on-chain rounds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for module in (cli_chain, cli_learn, cli_node, cli_rewards):
    module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
