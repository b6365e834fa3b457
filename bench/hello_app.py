"""The ceiling of the benchmark: one bottle route and nothing else, served by the same gunicorn
configuration as OPUS (``gunicorn -c gunicorn.conf.py bench.hello_app:application``).  What OPUS
does per request on top of HTTP parsing, bottle's routing and gunicorn's threads is what the
fractions printed by bench/run.py show."""

import bottle

application = bottle.Bottle()


@application.get("/hello")
def hello():
    return "hello"
