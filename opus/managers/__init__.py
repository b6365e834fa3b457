"""Execution managers: where and how a job's script runs.  They never import bottle."""

from .base import Manager, make_manager

__all__ = ["Manager", "make_manager"]
