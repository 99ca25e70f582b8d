"""Views of the scheduler that ask castellum through the broker."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from backchannel import BackchannelError, JobFailed, JobNotDone
from backchannel.django import async_client, get_client


def _failure(exc: BackchannelError) -> JsonResponse:
    if isinstance(exc, JobFailed):
        # A 404 with a code is the handler's own "not found"; a 404 without one
        # is not the castellum kit's answer (the agent's forward URL is wrong),
        # and a kind with no handler is 501 unknown_kind.
        if exc.handler_status == 404 and exc.handler_code is not None:
            return JsonResponse({"detail": "no such invitation"}, status=404)
        return JsonResponse({"detail": exc.message}, status=502)
    if isinstance(exc, JobNotDone):
        return JsonResponse({"detail": "castellum did not answer in time"}, status=504)
    if exc.retryable:
        return JsonResponse({"detail": "the backchannel is unavailable"}, status=503)
    # A wrong token, a token of the other role, a bad request: this site's
    # configuration or code is wrong (the client logged it).
    return JsonResponse({"detail": "the backchannel refused this site's request"}, status=500)


def invitation(request: HttpRequest, token: str) -> JsonResponse:
    try:
        found = get_client().call("invitation.lookup", {"token": token}, wait=5)
    except BackchannelError as exc:
        return _failure(exc)
    return JsonResponse({"invitation": found})


async def invitation_async(request: HttpRequest, token: str) -> JsonResponse:
    try:
        async with async_client() as client:
            found = await client.call("invitation.lookup", {"token": token}, wait=5)
    except BackchannelError as exc:
        return _failure(exc)
    return JsonResponse({"invitation": found})
