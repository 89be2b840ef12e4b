"""The `tetriserve` command line: the front door for operators.

Each sub-command lives in its own module of `deploy/` and plugs in through a
`register(subparsers)` function that adds its parser and sets `func` to a callable
taking the parsed arguments and returning an exit code. A command group (`bench`, `sim`)
is a parser of its own whose modules register their sub-commands on it the same way.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that each contribute top-level sub-commands, in the order `--help` lists them.
_COMMAND_MODULES = ("deploy.make_model_cmd", "deploy.serve_cmd", "deploy.batch_cmd")
# Modules that contribute sub-commands of `tetriserve bench`.
_BENCH_MODULES = (
    "deploy.bench_hw",
    "deploy.bench_kv",
    "deploy.bench_latency",
    "deploy.bench_workloads",
    "deploy.bench_lora",
)
# Modules that contribute sub-commands of `tetriserve sim`.
_SIM_MODULES = (
    "deploy.sim_cmd",
    "deploy.sim_scale_cmd",
    "deploy.sim_profile_cmd",
    "deploy.sim_validate_cmd",
    "deploy.sim_lora_profile_cmd",
    "deploy.sim_caraserve_cmd",
)
# Command groups: (name, help, the modules that contribute its sub-commands).
_GROUPS = (
    ("bench", "benchmarks: hardware models, workloads, LoRA", _BENCH_MODULES),
    ("sim", "the simulator: paper replays in simulated time", _SIM_MODULES),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tetriserve",
        description="Disaggregated LLM serving on Ray.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        _load(name).register(commands)
    for group, help_text, modules in _GROUPS:
        group_parser = commands.add_parser(group, help=help_text)
        group_commands = group_parser.add_subparsers(
            dest=group, required=True, metavar=group.upper()
        )
        for name in modules:
            _load(name).register(group_commands)
    return parser


def _load(module_name: str):
    return importlib.import_module(module_name)


def main(argv: list[str] | None = None) -> None:
    """Runs one sub-command; a value the config refuses ends it like a bad flag (status 2)."""
    from pydantic import ValidationError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except ValidationError as exc:
        parser.error(str(exc))
    sys.exit(code)


if __name__ == "__main__":
    main()
