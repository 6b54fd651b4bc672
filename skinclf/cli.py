"""How every command starts: compose its config, check it, run it, and end in one line where the user can act.

``@command("train")`` turns ``task(settings)`` into the entry point of ``python -m skinclf.train``,
the way lightning-hydra-template's ``task_wrapper`` serves its entry points: the configs and
resolvers are registered, keys of earlier versions are refused with the name of their successor,
Hydra composes ``conf/<name>.yaml`` with the command line, :func:`~skinclf.schema.validate` turns
the result into the typed settings the task receives, and :func:`~skinclf.errors.exit_on_user_error`
turns bad input, a full disk, SIGTERM and Ctrl-C into one line and an exit status.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import hydra
from omegaconf import DictConfig

from skinclf.config import CONFIG_PATH, register_configs
from skinclf.errors import SkinclfError, exit_on_user_error
from skinclf.schema import RENAMED_KEYS, validate

T = TypeVar("T")


def refuse_renamed_keys(overrides: Sequence[str]) -> None:
    """Refuse command-line keys of earlier versions, naming the key that replaced each."""
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        old, _, rest = key.partition(".")
        if old in RENAMED_KEYS and "=" in override:
            new = RENAMED_KEYS[old] + (f".{rest}" if rest else "")
            raise SkinclfError(f"{key}= is no longer a setting: use {new}=")


def module_name(task: Callable[..., Any]) -> str:
    """The dotted name of the task's module, also when it runs as ``python -m skinclf.<name>``."""
    spec = getattr(sys.modules.get(task.__module__), "__spec__", None)
    return spec.name if task.__module__ == "__main__" and spec is not None else task.__module__


def command(config_name: str) -> Callable[[Callable[[Any], T]], Callable[[], T | None]]:
    """The entry point of a command whose task takes the validated settings of conf/<config_name>.yaml."""

    def decorate(task: Callable[[Any], T]) -> Callable[[], T | None]:
        register_configs()

        def run_task(cfg: DictConfig) -> T:
            return task(validate(cfg))

        run_task.__module__ = module_name(task)  # Hydra names the job (and its log file) after this module
        run = hydra.main(config_path=CONFIG_PATH, config_name=config_name, version_base="1.3")(
            exit_on_user_error(run_task)
        )

        @exit_on_user_error
        def main() -> T | None:
            refuse_renamed_keys(sys.argv[1:])
            return run()

        main.__doc__ = task.__doc__
        return main

    return decorate
