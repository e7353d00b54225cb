"""Data: the real Hillstrom experiment and the synthetic marketing world with its truth."""

from mktlab.datasets.hillstrom import copy_to_raw, find_hillstrom, load_hillstrom
from mktlab.datasets.world import TABLES, World, load_world, make_world

__all__ = [
    "TABLES",
    "World",
    "copy_to_raw",
    "find_hillstrom",
    "load_hillstrom",
    "load_world",
    "make_world",
]
