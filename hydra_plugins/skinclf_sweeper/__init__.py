"""skinclf's Hydra plugin: Hydra takes sweepers only from the hydra_plugins namespace package."""
