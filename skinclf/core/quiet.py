"""Third-party messages that are not the user's business on the first screen, each silenced narrowly.

Everything else a library says (its own warnings about the user's data or settings) still shows.
"""

from __future__ import annotations

import logging
import warnings

#: Loggers whose INFO lines narrate their own internals: the ONNX exporter's graph optimisation passes,
#: and alembic's set-up of the Optuna study database.
NARRATING_LOGGERS = ("onnxscript", "onnx_ir", "alembic")


def not_an_advertisement(record: logging.LogRecord) -> bool:
    """False for Lightning's tip to install its cloud logger, printed whenever a Trainer starts."""
    return "litlogger" not in record.getMessage()


def quiet_third_parties() -> None:
    for name in NARRATING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(not_an_advertisement)
    # raised by Lightning's own code on every fit under torch >= 2.10, nothing a user can change
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
