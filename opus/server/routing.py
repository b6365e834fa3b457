"""Routes as module-level functions: each route module fills a ``RouteTable`` with decorators and
``create_app`` installs the tables in order.  A route reaches the process's services through
``services()`` (the application's config, set by ``create_app``), not through a closure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bottle import Bottle, request

from opus.service.root import Root
from opus.settings import Settings

#: Where create_app keeps the services object in ``app.config``.
SERVICES_KEY = "opus.services"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Route:
    method: str | list[str]
    path: str
    callback: Callable[..., Any]
    options: dict[str, Any]


@dataclass
class RouteTable:
    """The routes of one module, in the order they were declared (bottle tries dynamic routes in
    the order they were added)."""

    routes: list[Route] = field(default_factory=list)

    def route(self, method: str | list[str], path: str, **options: Any) -> Callable[[F], F]:
        """Declare ``func`` as the handler of ``method path`` (or of each of several methods);
        ``options`` are bottle route config (e.g. ``opus_public=True``, read by the plugins)."""
        def declare(func: F) -> F:
            self.routes.append(Route(method, path, func, options))
            return func

        return declare

    def get(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route("POST", path, **options)

    def put(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route("PUT", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[F], F]:
        return self.route("DELETE", path, **options)

    def install(self, app: Bottle) -> None:
        for r in self.routes:
            app.route(r.path, r.method, r.callback, **r.options)


def services() -> Root:
    """The services of the application serving this request."""
    found: Root = request.app.config[SERVICES_KEY]
    return found


def settings() -> Settings:
    """The settings of the application serving this request."""
    return services().settings
