"""The WSGI application: thin bottle routes over ``opus.joblist.JobList``."""

from .app import create_app

__all__ = ["create_app"]
