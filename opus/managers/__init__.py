"""Execution managers: where and how a job's script runs (``base.Manager``; ``factory.make_manager``
picks one from the settings).  They never import bottle."""
