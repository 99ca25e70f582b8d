"""The scheduler of the tests: the internet-facing side, which submits jobs.

``BACKCHANNEL`` is a placeholder here; each test points it at its own broker
with ``override_settings``, or, for a ``manage.py`` run in a process of its
own, with ``SCHEDULER_BROKER_URL`` and ``SCHEDULER_TOKEN_FILE``.
"""

import os

SECRET_KEY = "scheduler-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
INSTALLED_APPS = ["backchannel.django"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "scheduler_site.urls"
DATABASES: dict[str, dict[str, str]] = {}

BACKCHANNEL = {
    "URL": os.environ.get("SCHEDULER_BROKER_URL", "http://127.0.0.1:9"),
    "TIMEOUT": 10,
}
if "SCHEDULER_TOKEN_FILE" in os.environ:
    BACKCHANNEL["TOKEN_FILE"] = os.environ["SCHEDULER_TOKEN_FILE"]
else:
    BACKCHANNEL["TOKEN"] = "placeholder-token-0000000000"
