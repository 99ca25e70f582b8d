"""Views of the scheduler that ask castellum through the broker."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from backchannel import BackchannelError, JobFailed, JobNotDone
from backchannel.django import async_client, get_client


def _failure(exc: BackchannelError) -> JsonResponse:
    if isinstance(exc, JobFailed) and exc.handler_status == 404:
        return JsonResponse({"detail": "no such invitation"}, status=404)
    if isinstance(exc, JobFailed):
        return JsonResponse({"detail": exc.message}, status=502)
    if isinstance(exc, JobNotDone):
        return JsonResponse({"detail": "castellum did not answer in time"}, status=504)
    return JsonResponse({"detail": "the backchannel is unavailable"}, status=503)


def invitation(request: HttpRequest, token: str) -> JsonResponse:
    try:
        found = get_client().call("invitation.lookup", {"token": token}, timeout=5)
    except BackchannelError as exc:
        return _failure(exc)
    return JsonResponse({"invitation": found})


async def invitation_async(request: HttpRequest, token: str) -> JsonResponse:
    try:
        async with async_client() as client:
            found = await client.call("invitation.lookup", {"token": token}, timeout=5)
    except BackchannelError as exc:
        return _failure(exc)
    return JsonResponse({"invitation": found})
