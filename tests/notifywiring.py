"""Wiring of notifications and sharing into a test server, as ``opus.service.root.Root`` does once the
lead wires it (``Root.notifications``, ``completion.on_phase``, the share routes); idempotent, so these
tests keep working after that."""

from __future__ import annotations

from opus.server import share_routes
from opus.service.notifications import Notifications


def wire(server):
    """Give ``server`` (LiveServer or ApiServer) its notifications and share routes; returns the
    Notifications (started)."""
    root = server.services
    notifications = root.__dict__.get("notifications")
    if notifications is None:
        notifications = Notifications.build(server.settings, root.store)
        root.__dict__["notifications"] = notifications
    if root.completion.on_phase is None:
        root.completion.on_phase = notifications.phase_changed
    notifications.start()
    if not any(r.rule == "/share" for r in server.app.routes):
        share_routes.routes.install(server.app)
    return notifications
