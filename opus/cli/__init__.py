"""The ``opus`` command."""
