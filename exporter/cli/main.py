"""The command line: `eightbyeight-exporter [run] [FLAGS]`, `healthcheck`, `simulate`.

argparse chooses the command. The exporter's flags are those of `run` and also of the program
itself, so that `eightbyeight-exporter --web.listen-address=:9881` (no command) runs as it
always did. Each command's code is imported once chosen: the container's health check, run
every 30 s, loads neither the app nor the simulator.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exporter.cli import healthcheck
from exporter.config import flags

SIMULATE_HELP = "run the stand-in 8x8 API (see 'simulate --help')"


def build_parser() -> argparse.ArgumentParser:
    """The program's parser: the commands, then `run`'s flags, which are the program's too."""
    parser = flags.FlagParser(
        prog=flags.PROG,
        allow_abbrev=False,  # `--api.key` must not silently mean --api.key-file
        description=f"{flags.DESCRIPTION} Without a command, '{flags.PROG}' is '{flags.PROG} run'.",
    )
    flags.add_version(parser)
    commands = parser.add_subparsers(dest="command", title="commands")
    run = commands.add_parser(
        "run",
        help="serve /metrics and /probe (the command when none is given)",
        description=flags.DESCRIPTION,
        allow_abbrev=False,
    )
    # Only what is given after `run` is set there, so flags given before it are kept.
    flags.add_flags(run, given_only=True)
    check = commands.add_parser(
        "healthcheck",
        help="exit 0 when the running exporter answers /-/healthy",
        description=healthcheck.DESCRIPTION,
        allow_abbrev=False,
    )
    healthcheck.add_arguments(check)
    # The simulator's flags are its own (exporter/simulator/cli.py), read by its own parser:
    # building that parser here would load the simulator for every command.
    simulate = commands.add_parser(
        "simulate", help=SIMULATE_HELP, add_help=False, prefix_chars="\0"
    )
    simulate.add_argument("simulate_args", nargs="*", help=argparse.SUPPRESS)
    # After the commands, so that --help lists them first.
    flags.add_flags(parser.add_argument_group("flags of run, also given without its name"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "healthcheck":
        return healthcheck.check_command(args)
    if args.command == "simulate":
        from exporter.simulator.cli import main as simulate

        return simulate(args.simulate_args)
    from exporter.cli.run import listen_address_given, run

    return run(args, listen_given=listen_address_given(sys.argv[1:] if argv is None else argv))
