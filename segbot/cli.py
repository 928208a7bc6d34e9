"""The one `segbot` entry point. Commands live beside the code they drive and are imported
only when used, so `segbot --help` stays fast and never loads torch."""

from __future__ import annotations

import importlib
import sys

import click

from segbot import __version__

# name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "migrate": "segbot.commands.migrate:migrate",
    "demo": "segbot.commands.demo:demo",
    "train": "segbot.commands.train:train",
    "weights": "segbot.commands.train:weights",
    "predict": "segbot.commands.predict:predict",
    "inspect": "segbot.commands.annotations:inspect_cmd",
    "stats": "segbot.commands.annotations:stats",
    "eval": "segbot.commands.annotations:eval_cmd",
    "compare": "segbot.commands.compare:compare",
    "worker": "segbot.commands.worker:worker",
    "run": "segbot.commands.run:run",
    "web": "segbot.commands.web:web",
    "backup": "segbot.commands.ops:backup",
    "restore": "segbot.commands.ops:restore",
    "health": "segbot.commands.ops:health",
    "clean": "segbot.commands.ops:clean",
    "admin": "segbot.commands.ops:admin",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # A command whose module is not there yet is simply not offered.
            if error.name and module_name.startswith(error.name):
                return None
            raise
        return getattr(module, attr, None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="segbot")
def main() -> None:
    """segbot: train a personal Cascade Mask R-CNN from a few labelled crops, then find,
    outline and measure every particle on new microscope images."""


def run() -> None:  # pragma: no cover - console entry
    sys.exit(main())
