"""The WSGI application: thin bottle routes over ``opus.service.jobs.JobService``."""

from opus.server.app import create_app
__all__ = ["create_app"]
