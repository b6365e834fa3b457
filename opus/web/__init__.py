"""The web client's assets: the page templates (templates/) and the JavaScript UWS library with the
pages' scripts (static/).  Browser sessions and CSRF tokens are in ``opus.auth.session``, CORS in
``opus.server.cors``.

The pages are thin server-rendered shells; their scripts talk only to the public REST API through
``static/uws.js``, which other sites may embed (``CORS_ORIGINS``).  The routes are in
``opus/server/web_routes.py``.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
