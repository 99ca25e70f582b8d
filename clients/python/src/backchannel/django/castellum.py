"""The castellum side: job handlers behind ``backchannel agent``, as one Django view.

::

    # castellum/backchannel_jobs.py
    from backchannel.django.castellum import JobError, handler

    @handler("invitation.lookup")
    def lookup(payload, job):
        invitation = Invitation.objects.filter(token=payload["token"]).first()
        if invitation is None:
            raise JobError("no such invitation", status=404, code="no_such_invitation")
        return {"name": invitation.name}

    # castellum/urls.py
    from backchannel.django.castellum import job_view
    urlpatterns = [path("backchannel/job", job_view)]

and run the agent with ``--forward http://127.0.0.1:8000/backchannel/job
--forward-header-file <the file of settings.BACKCHANNEL_CASTELLUM["SECRET_FILE"]>
--expect-kit`` (``--expect-kit``: an answer without the kit's header, e.g. a
wrong path, fails the job with ``not_the_kit``).

The view (CSRF-exempt: the agent sends no cookie):

1. refuses a request without the shared secret, or with a wrong one, with
   ``403`` (compared in constant time; the secret is never echoed or logged);
2. takes ``POST`` only (``405`` otherwise);
3. reads the job's headers and JSON payload (``400`` if they are not what the
   agent sends, ``413`` if the body is over ``DATA_UPLOAD_MAX_MEMORY_SIZE``);
4. runs the handler registered for ``X-Backchannel-Kind`` (``501
   unknown_kind`` if none) with the payload and a :class:`JobContext`, and
   answers ``200`` with its return value as JSON (Django's encoder: dates,
   decimals and UUIDs work);
5. turns a :class:`JobError` into its status and body, and any other exception
   into a generic ``500`` (logged with its traceback, which is never sent).

Through the agent, a ``200`` makes the job ``done`` with that result; anything
else makes it ``failed`` with ``error = {"status": <status>, "body": <body>}``.
Every error body is ``{"error": {"code": ..., "message": ...}}``, and every
answer of the view, success or failure, carries ``X-Backchannel-Kit: 1`` (see
:mod:`backchannel.handlers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..handlers import (
    JOB_ID_HEADER,
    BadJobRequest,
    Dispatcher,
    JobContext,
    JobError,
    Reply,
    decode_payload,
    secret_matches,
)
from .conf import castellum_config

__all__ = [
    "Dispatcher",
    "JobContext",
    "JobError",
    "handler",
    "handlers",
    "job_view",
    "job_view_for",
]

logger = logging.getLogger("backchannel.castellum")

#: The default registry, which :data:`job_view` serves.
handlers = Dispatcher()
#: ``@handler("kind")`` registers a function in :data:`handlers`.
handler = handlers.handler

View = Callable[[HttpRequest], HttpResponse]


def _respond(reply: Reply, extra: Mapping[str, str] | None = None) -> HttpResponse:
    """The reply with the kit's headers (and ``extra`` ones)."""
    response = HttpResponse(reply.body, status=reply.status)
    for name, value in {**reply.headers(), **(extra or {})}.items():
        response[name] = value
    return response


def job_view_for(dispatcher: Dispatcher) -> View:
    """A view serving the handlers of ``dispatcher`` (for a registry other than
    the default one)."""

    @csrf_exempt
    def job_view(request: HttpRequest) -> HttpResponse:
        try:
            return _respond(*_answer(dispatcher, request))
        except Exception:
            # Whatever happens, the agent gets the kit's answer (with its
            # header), and the traceback stays in the log.
            logger.exception("the job endpoint failed")
            return _respond(Reply.error(500, "internal", "the job endpoint failed"))

    return job_view


def _answer(dispatcher: Dispatcher, request: HttpRequest) -> tuple[Reply, dict[str, str]]:
    """The reply to one request, and the headers it adds to the kit's."""
    try:
        config = castellum_config()
    except ImproperlyConfigured as exc:
        logger.error("refusing every job: %s", exc)
        return Reply.error(500, "misconfigured", "the job endpoint is not configured"), {}
    if not secret_matches(config.secret, request.headers.get(config.header)):
        logger.warning(
            "refused a request without the right %s header (job id %r)",
            config.header,
            request.headers.get(JOB_ID_HEADER),
        )
        return Reply.error(403, "forbidden", "missing or wrong shared secret"), {}
    if request.method != "POST":
        reply = Reply.error(405, "method_not_allowed", "the agent POSTs jobs here")
        return reply, {"Allow": "POST"}
    try:
        job = JobContext.from_headers(request.headers)
        payload = decode_payload(request.body)
    except BadJobRequest as exc:
        return Reply.error(400, "bad_request", str(exc)), {}
    except RequestDataTooBig:
        logger.warning(
            "refused job %s: its payload is over DATA_UPLOAD_MAX_MEMORY_SIZE",
            request.headers.get(JOB_ID_HEADER),
        )
        message = "the payload is over castellum's DATA_UPLOAD_MAX_MEMORY_SIZE"
        return Reply.error(413, "payload_too_large", message), {}
    return dispatcher.dispatch(job, payload, encoder=DjangoJSONEncoder), {}


#: The view serving :data:`handlers`; point the agent's ``--forward`` at it.
job_view = job_view_for(handlers)
