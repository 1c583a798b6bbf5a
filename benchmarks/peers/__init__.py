"""spanqa against its peers (benchmarks/peers.py; docs/peers.md): one module per system family
behind one small interface (``base.System``, listed in ``systems``), the matmul ceilings
(``ceiling``), the worker processes (``worker``), the inputs (``prepare``), the table (``table``)
and the driver that runs them all (``driver``, whose docstring says what the table shows).

The names below are what the other benchmarks share with this one.
"""

from .prepare import (
    DEV,
    HELDOUT,
    STANDIN,
    machine_info,
    make_base_checkpoint,
    make_hf_dir,
    model_config,
    prepare_model,
    write_calibration,
    write_subset,
)
from .table import flops
from .worker import read_items, run_worker

__all__ = [
    "DEV",
    "HELDOUT",
    "STANDIN",
    "flops",
    "machine_info",
    "make_base_checkpoint",
    "make_hf_dir",
    "model_config",
    "prepare_model",
    "read_items",
    "run_worker",
    "write_calibration",
    "write_subset",
]
