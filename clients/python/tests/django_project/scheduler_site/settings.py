"""The scheduler of the tests: the internet-facing side, which submits jobs.

``BACKCHANNEL`` is a placeholder here; each test points it at its own broker
with ``override_settings``.
"""

SECRET_KEY = "scheduler-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
INSTALLED_APPS = ["backchannel.django"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "scheduler_site.urls"
DATABASES: dict[str, dict[str, str]] = {}

BACKCHANNEL = {
    "URL": "http://127.0.0.1:9",
    "TOKEN": "placeholder-token-0000000000",
    "TIMEOUT": 10,
}
