"""WSGI entry point for gunicorn and mod_wsgi: ``gunicorn -c gunicorn.conf.py opus.wsgi:application``.

Settings come from the file named by ``OPUS_SETTINGS``.  The schema must be current
(``opus init``); background work starts in each worker process.
"""

from .server import create_app
from .settings import load_settings

application = create_app(load_settings())
