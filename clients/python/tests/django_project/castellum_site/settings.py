"""Castellum of the tests: the private side, behind ``backchannel agent``.

The shared secret comes from the file named by ``CASTELLUM_SECRET_FILE``, as
it would in production (the agent reads the same file).
"""

import os

SECRET_KEY = "castellum-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = ["backchannel.django"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "castellum_site.urls"
DATABASES: dict[str, dict[str, str]] = {}

BACKCHANNEL_CASTELLUM = {
    "SECRET_FILE": os.environ.get("CASTELLUM_SECRET_FILE", "/nonexistent"),
    "HEADER": "X-Backchannel-Secret",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
}
