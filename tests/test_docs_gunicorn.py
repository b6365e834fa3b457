"""docs/deployment.md describes the gunicorn.conf.py that ships: the values it states are read
from the file itself.  (It once said 64 threads per worker long after the file said 1,000.)"""

from __future__ import annotations

import re
import runpy

from opus.settings import REPO_ROOT

DEPLOYMENT = REPO_ROOT / "docs" / "deployment.md"


def _conf() -> dict:
    return runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))


def _paragraph(text: str, start: str) -> str:
    at = text.index(start)
    return text[at:text.index("\n\n", at)]


def test_the_deployment_guide_states_gunicorn_conf_values():
    conf = _conf()
    described = _paragraph(DEPLOYMENT.read_text(encoding="utf-8"), "The example `gunicorn.conf.py` sets:")
    assert f"`{conf['worker_class']}` workers" in described
    assert f"{conf['threads']:,} threads" in described
    assert f"{conf['worker_connections']:,} connections" in described
    assert f"`timeout` of {conf['timeout']} s" in described
    assert ("No `preload_app`" in described) == (not conf["preload_app"])
    assert ("`reuse_port`" in described) == bool(conf["reuse_port"])
    assert ("No access log" in described) == (conf["accesslog"] is None)
    words = {2: "two"}
    assert f"At most {words.get(conf['MALLOC_ARENAS'], conf['MALLOC_ARENAS'])} malloc arenas" in described
    # Every number of threads the guide mentions for gunicorn's workers is the file's.
    for n in re.findall(r"([\d,]+) threads", described):
        assert int(n.replace(",", "")) == conf["threads"], n
