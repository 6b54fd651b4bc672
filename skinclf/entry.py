"""How every command starts: compose its config, check it, run it, and end in one line where the user can act.

``@command("train")`` turns ``task(settings)`` into the entry point of ``python -m skinclf.train``,
the way lightning-hydra-template's ``task_wrapper`` serves its entry points: the configs and
resolvers are registered, keys of earlier versions are refused with the name of their successor,
Hydra composes ``conf/<name>.yaml`` with the command line, :func:`~skinclf.config.schema.validate` turns
the result into the typed settings the task receives, and :func:`~skinclf.core.errors.exit_on_user_error`
turns bad input, a full disk, SIGTERM and Ctrl-C into one line and an exit status.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from skinclf.config.resolvers import CONFIG_PATH, register_configs
from skinclf.config.schema import RENAMED_KEYS, SCHEMAS, SHORTHANDS, EvaluationSettings, TrainedModelConfig, validate
from skinclf.core.errors import SkinclfError, exit_on_user_error
from skinclf.core.quiet import quiet_third_parties
from skinclf.trained import TrainedModel, load_model

T = TypeVar("T")


def renamed(key: str) -> str | None:
    """What replaced a key (or a key below it) of an earlier version, if it was renamed: the new key, or what to
    write instead (a value with '=')."""
    for old, new in RENAMED_KEYS.items():
        if key == old or key.startswith(old + "."):
            return new if "=" in new else new + key[len(old) :]
    return None


#: Hydra's flags that take the next argument as their value (--cfg job, -cd <folder>...).
HYDRA_FLAGS_WITH_A_VALUE = frozenset(
    {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}
    | {"--info", "-i", "--experimental-rerun"}
)


def expand_shorthands(arguments: Sequence[str]) -> list[str]:
    """The command line with its shorthands written out (explain=true is explain.enabled=true)."""
    expanded = []
    for argument in arguments:
        key, equals, value = argument.partition("=")
        shorthand = equals and key in SHORTHANDS and value.lower() in ("true", "false")
        expanded.append(f"{SHORTHANDS[key]}={value}" if shorthand else argument)
    return expanded


def refuse_renamed_keys(arguments: Sequence[str]) -> None:
    """Refuse command-line keys of earlier versions, naming what replaced each; a bare folder (the argument
    ensemble and report took) is named too."""
    for previous, argument in zip([None, *arguments], arguments, strict=False):
        if previous in HYDRA_FLAGS_WITH_A_VALUE or argument.startswith("-"):
            continue
        if "=" not in argument:
            if Path(argument).expanduser().is_dir():
                raise SkinclfError(f"name folders as runs=[{argument}] (several: runs=[<folder>,<folder>])")
            continue
        key = argument.lstrip("+~").split("=", 1)[0]
        new = renamed(key)
        if new is not None:
            raise SkinclfError(f"{key}= is no longer a setting: use {new if '=' in new else new + '='}")


#: Where Hydra puts each run's folder: the values conf/paths gives every command (a rerun's config has none).
OUTPUT_FOLDERS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")


def value_at(config: dict, key: str) -> Any:
    """The value at a dotted key of a plain config, or None where there is none."""
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config


def rerun_arguments(config_name: str, arguments: Sequence[str]) -> list[str]:
    """``rerun=<run folder>``: the run's composed config (<folder>/.hydra/config.yaml) as the primary
    config, with the other arguments as overrides on top, and new run folders named as the command
    names them. This is Hydra's own ``--config-dir <folder>/.hydra --config-name config``."""
    reruns = [a for a in arguments if a.startswith("rerun=")]
    if not reruns:
        return list(arguments)
    folder = Path(reruns[-1].partition("=")[2]).expanduser()
    recorded = folder / ".hydra" / "config.yaml"
    if not recorded.is_file():
        raise SkinclfError(
            f"rerun={folder}: not the folder of a run ({recorded} does not exist); name a folder written by "
            f"skinclf.{config_name}, e.g. outputs/<name>/<date_time>"
        )
    given = {a.partition("=")[0] for a in arguments}
    # the folder names every command has, unresolved: ${now:...} and ${name} are for Hydra to fill in
    paths = OmegaConf.load(importlib.resources.files("skinclf.conf") / "paths" / "default.yaml")
    named = {key: value_at(OmegaConf.to_container(paths), key) for key in OUTPUT_FOLDERS if key not in given}
    folders = [f"{key}={value}" for key, value in named.items() if value is not None]
    rest = [a for a in arguments if not a.startswith("rerun=")]
    return [f"--config-dir={recorded.parent}", "--config-name=config", *folders, *rest]


def check_sweeper_plugin(arguments: Sequence[str]) -> None:
    """hydra/sweeper=lr_aug needs Hydra to find skinclf's plugin, which setuptools' editable install hides
    from it outside the checkout's root folder."""
    if "hydra/sweeper=lr_aug" not in arguments:
        return
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        raise SkinclfError("hydra/sweeper=lr_aug needs the sweep extra: pip install 'skinclf[sweep]'")
    import hydra_plugins

    if "skinclf_sweeper" not in {module.name for module in pkgutil.iter_modules(hydra_plugins.__path__)}:
        raise SkinclfError(
            "Hydra cannot find skinclf's resumable Optuna sweeper (hydra_plugins/skinclf_sweeper): with an editable "
            "install (make install), run sweeps from the root folder of the checkout, or install skinclf without -e"
        )


def with_schema(config_name: str, cfg: DictConfig) -> DictConfig:
    """The composed config against its schema: a rerun's recorded config has no defaults list naming it."""
    schema = SCHEMAS.get(f"{config_name}_schema")
    if schema is None or OmegaConf.get_type(cfg) is not dict:  # composed with its schema
        return cfg
    merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise SkinclfError(
            f"rerun: the recorded config has no {', '.join(missing[:4])} (a run of an earlier skinclf version): "
            f"give them on the command line, e.g. +{missing[0]}=<value>; conf/{config_name}.yaml has the defaults"
        )
    return merged


def output_folder() -> Path:
    """Hydra's run folder of the running command: where it writes."""
    return Path(HydraConfig.get().runtime.output_dir)


def given_keys(group: str) -> list[str]:
    """The keys of a config group that this command line sets (``evaluation.tta=flips`` gives ``tta``); all of
    them (``""``) where it selects the group itself."""
    if not HydraConfig.initialized():
        return []
    keys = []
    for override in HydraConfig.get().overrides.task:
        key = override.lstrip("+~").split("=", 1)[0]
        if key == group:
            return [""]
        if key.startswith(group + "."):
            keys.append(key[len(group) + 1 :])
    return keys


def trained_model(settings: TrainedModelConfig) -> tuple[TrainedModel, EvaluationSettings]:
    """The trained model of ckpt=, and the evaluation settings it was made with but for the keys the command line
    gives."""
    model = load_model(settings.ckpt)
    return model, model.evaluation_settings(settings.evaluation, given_keys("evaluation"))


def module_name(task: Callable[..., Any]) -> str:
    """The dotted name of the task's module, also when it runs as ``python -m skinclf.<name>``."""
    spec = getattr(sys.modules.get(task.__module__), "__spec__", None)
    return spec.name if task.__module__ == "__main__" and spec is not None else task.__module__


def command(config_name: str) -> Callable[[Callable[[Any, Path], T]], Callable[[], T | None]]:
    """The entry point of a command whose task takes the validated settings of conf/<config_name>.yaml and the run
    folder it writes into (Hydra's)."""

    def decorate(task: Callable[[Any, Path], T]) -> Callable[[], T | None]:
        register_configs()

        def run_task(cfg: DictConfig) -> T:
            return task(validate(with_schema(config_name, cfg)), output_folder())

        run_task.__module__ = module_name(task)  # Hydra names the job (and its log file) after this module
        run = hydra.main(config_path=CONFIG_PATH, config_name=config_name, version_base="1.3")(
            exit_on_user_error(run_task)
        )

        @exit_on_user_error
        def main() -> T | None:
            quiet_third_parties()
            sys.argv[1:] = expand_shorthands(sys.argv[1:])
            refuse_renamed_keys(sys.argv[1:])
            check_sweeper_plugin(sys.argv[1:])
            sys.argv[1:] = rerun_arguments(config_name, sys.argv[1:])
            return run()

        main.__doc__ = task.__doc__
        return main

    return decorate
