"""Subcommands that run models (train, eval, generate, plot, export, bench): they import torch."""
from __future__ import annotations


def fill_all(sub):
    pass
