from django.urls import path

from backchannel.django.castellum import job_view

from . import jobs  # noqa: F401  (registers the handlers)

urlpatterns = [path("backchannel/job", job_view)]
