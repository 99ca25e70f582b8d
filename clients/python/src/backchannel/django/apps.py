"""The Django app ``backchannel.django`` (label ``backchannel``)."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class BackchannelConfig(AppConfig):
    """Registers the checks; the management command comes with the app."""

    name = "backchannel.django"
    label = "backchannel"
    verbose_name = "backchannel"

    def ready(self) -> None:
        from .checks import check_broker, check_settings

        checks.register(check_settings, "backchannel")
        # Deploy only: it asks the broker over the network, which every
        # manage.py start should not.
        checks.register(check_broker, "backchannel", deploy=True)
