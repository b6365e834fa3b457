"""OPUS: an IVOA UWS 1.1 job-control server.

Layers (see README, "Architecture"): ``opus.server`` (bottle routes) calls ``opus.service``
(the UWS rules over ``opus.uws`` domain objects), which persists through ``opus.storage`` and
dispatches to ``opus.managers``.
"""

__version__ = "2.0.0.dev0"
