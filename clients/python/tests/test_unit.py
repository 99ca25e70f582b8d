"""The parts that need no broker: parsing, the error table, the handler kit."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import warnings
from datetime import datetime, timedelta, timezone

import certifi
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from backchannel import (
    AlreadyTerminal,
    ApiError,
    AsyncClient,
    Client,
    ForeignAnswer,
    Job,
    JobExpired,
    JobFailed,
    JobState,
    NotFound,
    RetryPolicy,
    Sealer,
    Stats,
)
from backchannel._channels import check_channel
from backchannel.errors import _BY_STATUS, error_from_response, exception_for
from backchannel.handlers import (
    Dispatcher,
    JobContext,
    JobError,
    Reply,
    decode_payload,
    secret_matches,
)
from backchannel.models import parse_time
from backchannel.sealed import unb64u
from castellum_side import Castellum, Refused
from support import REPO

JOB = {
    "id": 42,
    "kind": "invitation.lookup",
    "state": "done",
    "payload": {"token": "abc"},
    "result": {"name": "Ada"},
    "error": None,
    "attempts": 1,
    "created_at": "2026-11-27T22:00:00.123456Z",
    "deadline": "2026-11-27T22:00:30.123456Z",
    "completed_at": "2026-11-27T22:00:00.2Z",
}


def documented_codes() -> dict[str, int]:
    """The error codes of docs/openapi.yaml's table, with their status."""
    text = (REPO / "docs" / "openapi.yaml").read_text()
    codes = {}
    for status, cell in re.findall(r"^\s*\| (\d{3}) \| (.*) \|$", text, re.MULTILINE):
        for code in re.findall(r"`([a-z_]+)`", cell):
            codes[code] = int(status)
    return codes


def test_every_documented_error_code_has_its_own_class() -> None:
    codes = documented_codes()
    assert len(codes) >= 20, "the table was found"
    classes = {}
    for code, status in codes.items():
        cls = exception_for(status, code)
        assert issubclass(cls, _BY_STATUS[status]), code
        assert cls is not _BY_STATUS[status] or status in (
            401,
            403,
            404,
            405,
            408,
            410,
            413,
            415,
        ), code
        classes[code] = cls
    shared = {cls for cls in classes.values() if list(classes.values()).count(cls) > 1}
    assert not shared, f"codes sharing a class: {shared}"


def test_an_error_response_becomes_its_exception_with_the_job() -> None:
    body = {"error": {"code": "already_terminal", "message": "the job is already done", "job": JOB}}
    response = httpx.Response(409, json=body, headers={"Retry-After": "2"})
    error = error_from_response(response)
    assert type(error) is AlreadyTerminal
    assert (error.status, error.code, error.message) == (
        409,
        "already_terminal",
        "the job is already done",
    )
    assert error.job == Job.from_json(JOB) and error.retry_after == 2
    assert str(error) == "409 already_terminal: the job is already done"


def test_an_error_without_a_json_body_still_maps_by_status() -> None:
    error = error_from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert type(error).__name__ == "BadGateway" and error.retryable and error.code is None
    unknown = error_from_response(
        httpx.Response(418, json={"error": {"code": "teapot", "message": "no"}})
    )
    assert type(unknown) is ApiError and unknown.code == "teapot"
    # A known code with a status it does not belong to maps by status.
    odd = error_from_response(httpx.Response(400, json={"error": {"code": "gone", "message": "?"}}))
    assert type(odd).__name__ == "BadRequest"


def test_a_job_from_json() -> None:
    job = Job.from_json(JOB)
    assert job.state is JobState.DONE and job.state == "done" and job.is_terminal
    assert job.created_at == datetime(2026, 11, 27, 22, 0, 0, 123456, tzinfo=timezone.utc)
    assert job.completed_at == datetime(2026, 11, 27, 22, 0, 0, 200000, tzinfo=timezone.utc)
    assert not Job.from_json({**JOB, "state": "delivered"}).is_terminal
    with pytest.raises(ValueError):
        Job.from_json({**JOB, "state": "lost"})
    with pytest.raises(KeyError):
        Job.from_json({k: v for k, v in JOB.items() if k != "deadline"})
    with pytest.raises(TypeError):
        Job.from_json({**JOB, "id": "42"})


def test_stats_from_json() -> None:
    counts = {"pending": 2, "delivered": 1, "done": 5, "failed": 0, "expired": 0, "cancelled": 0}
    stats = Stats.from_json({"jobs": counts, "oldest_pending_age_seconds": 1.5})
    assert stats.open == 3 and stats.jobs[JobState.DONE] == 5
    assert stats.oldest_pending_age_seconds == 1.5
    newer = Stats.from_json({"jobs": {**counts, "paused": 1}, "oldest_pending_age_seconds": None})
    assert set(newer.jobs) == set(JobState) and newer.oldest_pending_age_seconds is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T22:00:00Z", datetime(2026, 11, 27, 22, tzinfo=timezone.utc)),
        ("2026-11-27T22:00:00.5z", datetime(2026, 11, 27, 22, 0, 0, 500000, tzinfo=timezone.utc)),
        (
            "2026-11-27T22:00:00.123456789Z",
            datetime(2026, 11, 27, 22, 0, 0, 123456, tzinfo=timezone.utc),
        ),
        ("2026-11-27T23:30:00+01:30", datetime(2026, 11, 27, 22, tzinfo=timezone.utc)),
        ("2026-11-27 20:00:00-02:00", datetime(2026, 11, 27, 22, tzinfo=timezone.utc)),
    ],
)
def test_rfc3339_times(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected and parsed.tzinfo is timezone.utc


@pytest.mark.parametrize(
    "text", ["2026-11-27", "2026-11-27T22:00:00", "yesterday", "2026-11-27T22:00Z"]
)
def test_not_rfc3339_times(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_job_failed_describes_what_the_handler_said() -> None:
    def failed(error: object) -> JobFailed:
        return JobFailed(Job.from_json({**JOB, "state": "failed", "result": None, "error": error}))

    kit = failed(
        {"status": 404, "body": {"error": {"code": "job_error", "message": "no such invitation"}}}
    )
    assert kit.message == "the handler answered 404: no such invitation"
    assert kit.handler_status == 404 and kit.body["error"]["code"] == "job_error"
    assert failed({"status": 500, "body": "<html>"}).message == "the handler answered 500"
    assert failed({"message": "the handler is unreachable"}).message == (
        "the job failed: the handler is unreachable"
    )
    assert failed("plain").message == "the job failed" and failed("plain").handler_status is None


def test_job_failed_tells_the_three_not_founds_apart() -> None:
    def failed(error: object) -> JobFailed:
        return JobFailed(Job.from_json({**JOB, "state": "failed", "result": None, "error": error}))

    def body(status: int, code: str, message: str) -> dict[str, object]:
        return {"status": status, "body": {"error": {"code": code, "message": message}}}

    own = failed(body(404, "no_such_invitation", "no such invitation"))
    assert (own.handler_status, own.handler_code) == (404, "no_such_invitation")
    assert own.message == "the handler answered 404: no such invitation"
    no_handler = failed(body(501, "unknown_kind", "no handler for kind 'x'"))
    assert (no_handler.handler_status, no_handler.handler_code) == (501, "unknown_kind")
    wrong_url = failed({"status": 404, "body": "<h1>Not Found</h1>"})
    assert (wrong_url.handler_status, wrong_url.handler_code) == (404, None)
    for error in [
        {"message": "the handler is unreachable"},
        {"status": 404, "body": {"detail": "not found"}},
        {"status": 404, "body": {"error": {"code": 7}}},
        "plain",
        None,
    ]:
        assert failed(error).handler_code is None, error


def test_job_failed_exposes_the_agent_s_own_code() -> None:
    def failed(error: object) -> JobFailed:
        return JobFailed(Job.from_json({**JOB, "state": "failed", "result": None, "error": error}))

    unreachable = failed(
        {"code": "handler_unreachable", "message": "the handler is unreachable (tried 9 times)"}
    )
    assert (unreachable.agent_code, unreachable.handler_code) == ("handler_unreachable", None)
    assert unreachable.handler_status is None
    assert unreachable.message == "the job failed: the handler is unreachable (tried 9 times)"
    redirect = failed({"status": 307, "code": "handler_redirect", "message": "a redirect"})
    assert (redirect.handler_status, redirect.agent_code) == (307, "handler_redirect")
    wrong_url = failed({"status": 404, "code": "not_the_kit", "message": "not the kit"})
    assert (wrong_url.handler_status, wrong_url.handler_code) == (404, None)
    assert wrong_url.agent_code == "not_the_kit"
    own = failed({"status": 404, "body": {"error": {"code": "no_such_invitation"}}})
    assert (own.agent_code, own.handler_code) == (None, "no_such_invitation")
    assert failed({"code": 7}).agent_code is None


def test_job_expired_says_when_no_listener_took_the_job() -> None:
    untaken = JobExpired(Job.from_json({**JOB, "state": "expired", "result": None, "attempts": 0}))
    assert "no listener took the job (attempts 0): is the agent running?" in untaken.message
    assert "no listener took the job (attempts 0): is the agent running?" in str(untaken)
    taken = JobExpired(Job.from_json({**JOB, "state": "expired", "result": None, "attempts": 1}))
    assert taken.message == "no answer before the job's deadline"


def test_the_token_is_checked_and_never_shown() -> None:
    for bad in ["", "with space", "new\nline"]:
        with pytest.raises(ValueError) as raised:
            Client("http://127.0.0.1:1", bad)
        assert bad not in str(raised.value) or not bad
    token = "a-token-that-must-not-show-0000"
    client = Client("http://127.0.0.1:1", token)
    assert token not in repr(client) and token not in str(vars(client).get("base_url"))
    client.close()
    with pytest.raises(ValueError, match="http"):
        Client("127.0.0.1:8080", token)


def test_a_ca_bundle_path_is_taken_without_deprecation_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Client("https://127.0.0.1:1", "a-token-0000000000000", verify=certifi.where()).close()


def test_retry_pauses_grow_and_are_capped() -> None:
    policy = RetryPolicy(backoff=0.1, max_backoff=1.0)
    for failures, low, high in [(1, 0.05, 0.1), (2, 0.1, 0.2), (3, 0.2, 0.4), (10, 0.5, 1.0)]:
        assert low <= policy.pause(failures) <= high


# The handler kit, without a web framework --------------------------------------------------


def context(kind: str = "invitation.lookup") -> JobContext:
    return JobContext(
        id=7, kind=kind, attempt=1, deadline=datetime.now(timezone.utc) + timedelta(seconds=30)
    )


def test_the_dispatcher_runs_the_handler_of_the_kind() -> None:
    jobs = Dispatcher()

    @jobs.handler("invitation.lookup")
    def lookup(payload: dict[str, str], job: JobContext) -> dict[str, object]:
        if payload["token"] != "abc":
            raise JobError("no such invitation", status=404, token=payload["token"])
        return {"name": "Ada", "job": job.id}

    @jobs.handler("broken")
    def broken(payload: object, job: JobContext) -> object:
        raise RuntimeError("internal detail /srv/secret")

    assert "invitation.lookup" in jobs and list(jobs) == ["broken", "invitation.lookup"]
    ok = jobs.dispatch(context(), {"token": "abc"})
    assert (ok.status, json.loads(ok.body)) == (200, {"name": "Ada", "job": 7})
    refused = jobs.dispatch(context(), {"token": "zzz"})
    assert refused.status == 404
    assert json.loads(refused.body) == {
        "error": {"code": "job_error", "message": "no such invitation", "details": {"token": "zzz"}}
    }
    crashed = jobs.dispatch(context("broken"), None)
    assert (
        crashed.status == 500 and b"secret" not in crashed.body and b"Traceback" not in crashed.body
    )
    unknown = jobs.dispatch(context("nobody.handles"), None)
    assert unknown.status == 501 and json.loads(unknown.body)["error"]["code"] == "unknown_kind"
    unserialisable = Dispatcher()
    unserialisable.register("odd", lambda payload, job: object())
    assert unserialisable.dispatch(context("odd"), None).status == 500


def test_registering_is_checked() -> None:
    jobs = Dispatcher()
    jobs.register("a.kind", lambda payload, job: None)
    with pytest.raises(ValueError, match="already"):
        jobs.register("a.kind", lambda payload, job: None)
    with pytest.raises(ValueError, match="kind"):
        jobs.register("not a kind", lambda payload, job: None)
    with pytest.raises(ValueError, match="4xx or 5xx"):
        JobError("done?", status=200)
    for code in ["", "with space", "x" * 101, "ünï"]:
        with pytest.raises(ValueError, match="not an error code"):
            JobError("no", code=code)
    for code in ["unknown_kind", "forbidden", "internal", "bad_request"]:
        with pytest.raises(ValueError, match="the kit's own"):
            JobError("no", status=404, code=code)


def test_every_failure_of_the_kit_has_a_code_and_every_answer_its_header() -> None:
    jobs = Dispatcher()

    @jobs.handler("invitation.lookup")
    def lookup(payload: object, job: JobContext) -> object:
        if payload is None:
            raise JobError("no such invitation", status=404, code="no_such_invitation")
        return {"name": "Ada"}

    replies = {
        "done": jobs.dispatch(context(), {"token": "abc"}),
        "own not found": jobs.dispatch(context(), None),
        "no handler": jobs.dispatch(context("nobody.handles"), None),
        "kit's error": Reply.error(403, "forbidden", "missing or wrong shared secret"),
    }
    for name, reply in replies.items():
        assert reply.headers() == {
            "Content-Type": "application/json",
            "X-Backchannel-Kit": "1",
        }, name
    own, none = (json.loads(replies[name].body) for name in ("own not found", "no handler"))
    assert replies["own not found"].status == 404
    assert own == {"error": {"code": "no_such_invitation", "message": "no such invitation"}}
    assert replies["no handler"].status == 501 and none["error"]["code"] == "unknown_kind"


def test_the_job_context_comes_from_the_agents_headers() -> None:
    headers = {
        "X-Backchannel-Job-Id": "12",
        "X-Backchannel-Kind": "invitation.lookup",
        "X-Backchannel-Attempt": "2",
        "X-Backchannel-Deadline": "2026-11-27T22:00:30.5Z",
    }
    job = JobContext.from_headers(headers)
    assert (job.id, job.kind, job.attempt) == (12, "invitation.lookup", 2)
    assert job.deadline == datetime(2026, 11, 27, 22, 0, 30, 500000, tzinfo=timezone.utc)
    assert job.remaining() == 0
    for name, value in [
        ("X-Backchannel-Job-Id", "-1"),
        ("X-Backchannel-Attempt", "²"),
        ("X-Backchannel-Deadline", "soon"),
    ]:
        with pytest.raises(ValueError, match=name):
            JobContext.from_headers({**headers, name: value})
    with pytest.raises(ValueError, match="missing"):
        JobContext.from_headers({k: v for k, v in headers.items() if k != "X-Backchannel-Kind"})


def test_secrets_and_payloads() -> None:
    assert secret_matches("s3cret-value", "s3cret-value")
    assert not secret_matches("s3cret-value", "s3cret-valuE")
    assert not secret_matches("s3cret-value", None)
    assert not secret_matches("", "")
    assert not secret_matches("s3cret-value", "ünïcode")
    assert decode_payload(b"") is None and decode_payload(b'{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="JSON"):
        decode_payload(b"{not json")


def test_the_brokers_seal_gate_codes_have_their_classes() -> None:
    # BACKCHANNEL_REQUIRE_SEALED / BACKCHANNEL_SEAL_SIGNERS refuse a submit with
    # these (issue 21); each is its status's class and a SealError.
    from backchannel import NotSealed, SealedHeaderMismatch, SealError, UntrustedSigner
    from backchannel.errors import BadRequest, Forbidden

    for status, code, cls, base in [
        (400, "not_sealed", NotSealed, BadRequest),
        (400, "seal_mismatch", SealedHeaderMismatch, BadRequest),
        (403, "seal_bad_signature", UntrustedSigner, Forbidden),
    ]:
        assert exception_for(status, code) is cls
        assert issubclass(cls, base) and issubclass(cls, SealError)
        body = {"error": {"code": code, "message": "refused at the door"}}
        error = error_from_response(httpx.Response(status, json=body))
        assert type(error) is cls and error.status == status and error.code == code


# Named channels (issue 24), without a broker: what the clients send -----------------------

LISTENER_BODY = {"held": False, "listener_id": None, "instance": None, "since": None}
STATS_BODY = {
    "jobs": {"pending": 0, "delivered": 0, "done": 1, "failed": 0, "expired": 0, "cancelled": 0},
    "oldest_pending_age_seconds": None,
}


class Sent:
    """Records every request a client makes and answers it with the contract's
    shapes: a done job for the job routes, the listener's and the stats' bodies.
    With ``refuse_channels``, every channel route is ``404 not_found`` with that
    message (``no such channel`` from a broker where the token has no such
    channel, ``no such endpoint`` from a broker that predates channels)."""

    def __init__(self, refuse_channels: str | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.refuse_channels = refuse_channels

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if self.refuse_channels is not None and "/v1/channels/" in path:
            body = {"error": {"code": "not_found", "message": self.refuse_channels}}
            return httpx.Response(404, json=body)
        if path.endswith("/listener"):
            return httpx.Response(200, json=LISTENER_BODY)
        if path.endswith("/stats"):
            return httpx.Response(200, json=STATS_BODY)
        if path.endswith("/jobs") or "/jobs/" in path:
            return httpx.Response(200, json=JOB)
        body = {"error": {"code": "not_found", "message": "no such endpoint"}}
        return httpx.Response(404, json=body)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.answer)

    def lines(self) -> list[str]:
        return [f"{request.method} {request.url.path}" for request in self.requests]

    def body(self, index: int = -1) -> dict[str, object]:
        body: dict[str, object] = json.loads(self.requests[index].content)
        return body


def every_operation(client: Client) -> None:
    """Each method once: the three with a channel, then the four by job id."""
    client.submit("channel.test", {"n": 1})
    client.call("channel.test", {"n": 2}, wait=5)
    client.listener()
    client.stats()
    client.get(42)
    client.wait(42, wait=5)
    client.answer(42, result={"ok": True})
    client.cancel(42)


BY_ID = ["GET /prefix/v1/jobs/42", "GET /prefix/v1/jobs/42"]
BY_ID += ["POST /prefix/v1/jobs/42/result", "DELETE /prefix/v1/jobs/42"]


@pytest.mark.parametrize("channel", [None, "default"])
def test_without_a_channel_the_old_paths_are_used(channel: str | None) -> None:
    sent = Sent()
    with Client(
        "http://broker.test/prefix",
        "a-token-0000000000000",
        channel=channel,
        transport=sent.transport(),
    ) as client:
        assert client.channel == "default" and "channel" not in repr(client)
        every_operation(client)
    assert sent.lines() == [
        "POST /prefix/v1/jobs",
        "POST /prefix/v1/jobs",
        "GET /prefix/v1/listener",
        "GET /prefix/v1/stats",
        *BY_ID,
    ]


def test_a_channel_names_the_paths_of_submits_listener_and_stats_only() -> None:
    sent = Sent()
    with Client(
        "http://broker.test/prefix/",
        "a-token-0000000000000",
        channel="site-b",
        transport=sent.transport(),
    ) as client:
        assert client.channel == "site-b" and repr(client).endswith(", channel='site-b')")
        every_operation(client)
    assert sent.lines() == [
        "POST /prefix/v1/channels/site-b/jobs",
        "POST /prefix/v1/channels/site-b/jobs",
        "GET /prefix/v1/channels/site-b/listener",
        "GET /prefix/v1/channels/site-b/stats",
        *BY_ID,  # get, wait, answer and cancel by id are unchanged
    ]
    # The body of a submit on a channel is the body of any submit.
    assert set(sent.body(0)) == {"kind", "payload", "idempotency_key"}


def test_the_async_client_takes_a_channel_the_same_way() -> None:
    sent = Sent()

    async def run() -> str:
        async with AsyncClient(
            "http://broker.test/prefix",
            "a-token-0000000000000",
            channel="site-b",
            transport=sent.transport(),
        ) as client:
            await client.submit("channel.test")
            await client.call("channel.test", None, wait=5)
            await client.listener()
            await client.stats()
            await client.get(42)
            await client.cancel(42)
            return client.channel

    assert asyncio.run(run()) == "site-b"
    assert sent.lines() == [
        "POST /prefix/v1/channels/site-b/jobs",
        "POST /prefix/v1/channels/site-b/jobs",
        "GET /prefix/v1/channels/site-b/listener",
        "GET /prefix/v1/channels/site-b/stats",
        "GET /prefix/v1/jobs/42",
        "DELETE /prefix/v1/jobs/42",
    ]


@pytest.mark.parametrize(
    "name", ["a", "0", "site-a", "site-b", "default", "a1-b2-c3", "x" * 63, "9lives", "a--b"]
)
def test_channel_names_that_are_dns_labels_are_taken(name: str) -> None:
    assert check_channel(name) == name
    Client("http://broker.test", "a-token-0000000000000", channel=name).close()
    later = AsyncClient("http://broker.test", "a-token-0000000000000", channel=name)
    assert later.channel == name
    asyncio.run(later.aclose())


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Site-a",
        "SITE",
        "-site",
        "site-",
        "-",
        "site_a",
        "site.a",
        "site a",
        " site-a",
        "site-a\n",
        "x" * 64,
        "sïte",
        "site/a",
        "../jobs",
        "%2e%2e",
        5,
        b"site-a",
        ["site-a"],
    ],
)
def test_other_channel_names_are_refused(name: object) -> None:
    with pytest.raises(ValueError, match="channel name"):
        check_channel(name)
    with pytest.raises(ValueError, match="channel name"):
        Client("http://broker.test", "a-token-0000000000000", channel=name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channel name"):
        AsyncClient("http://broker.test", "a-token-0000000000000", channel=name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channel name"):
        Sealer.from_keys(*sealing_keys(), channel=name)  # type: ignore[arg-type]


def test_a_channels_not_found_is_the_not_found_class_and_logged_as_such(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The broker's answer for a channel that does not exist or is not the
    # token's: 404 not_found, "no such channel". No code of its own.
    body = {"error": {"code": "not_found", "message": "no such channel"}}
    error = error_from_response(httpx.Response(404, json=body))
    assert type(error) is NotFound and not error.retryable
    assert (error.status, error.code, error.message) == (404, "not_found", "no such channel")
    assert str(error) == "404 not_found: no such channel"

    token = "a-token-that-must-not-show-0000"
    sent = Sent(refuse_channels="no such channel")
    caplog.set_level(logging.DEBUG, logger="backchannel")
    with Client(
        "http://broker.test", token, channel="site-b", transport=sent.transport()
    ) as client:
        for operation in (
            lambda: client.submit("channel.test"),
            lambda: client.call("channel.test", None, wait=5),
            client.listener,
            client.stats,
        ):
            with pytest.raises(NotFound, match="no such channel") as raised:
                operation()
            assert raised.value.status == 404 and raised.value.code == "not_found"
            assert raised.value.message == "no such channel"
    assert len(sent.requests) == 4, "a channel's 404 is not retried"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4
    first = errors[0].getMessage()
    assert first.startswith("POST http://broker.test/v1/channels/site-b/jobs: refused with 404")
    assert "no such channel for this token" in first
    assert all(token not in record.getMessage() for record in caplog.records)

    # A broker that predates channels knows no such route: its 404 says so.
    caplog.clear()
    old = Sent(refuse_channels="no such endpoint")
    client = Client("http://broker.test", token, channel="site-b", transport=old.transport())
    with client, pytest.raises(NotFound, match="no such endpoint"):
        client.submit("channel.test")
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "broker knows channels" in record.getMessage()


# The sealed header's channel -----------------------------------------------------------------


def sealing_keys() -> tuple[Ed25519PrivateKey, list[X25519PublicKey]]:
    return Ed25519PrivateKey.generate(), [X25519PrivateKey.generate().public_key()]


def header_of(envelope: object) -> dict[str, object]:
    assert isinstance(envelope, dict)
    header: dict[str, object] = json.loads(unb64u(envelope["h"]))
    return header


def test_a_sealed_job_names_the_clients_channel() -> None:
    signing, _ = sealing_keys()
    castellum_key = X25519PrivateKey.generate()
    sealer = Sealer.from_keys(signing, [castellum_key.public_key()])
    assert sealer.channel == "default"
    sent = Sent()
    with Client(
        "http://broker.test",
        "a-token-0000000000000",
        channel="site-b",
        sealer=sealer,
        transport=sent.transport(),
    ) as client:
        client.submit_sealed("contact.lookup", {"participant": "P-0042"})
        with pytest.raises(ForeignAnswer):  # the double answers in clear
            client.call("contact.lookup", {"participant": "P-0043"}, wait=5)
    assert sent.lines() == ["POST /v1/channels/site-b/jobs"] * 2
    for index in (0, 1):
        assert header_of(sent.body(index)["payload"])["ch"] == "site-b"

    # Castellum's agent on site-b opens it; one on another channel refuses it.
    envelope = sent.body(0)["payload"]
    site_b = Castellum(keys=[castellum_key], signers=[signing.public_key()], channel="site-b")
    opened = site_b.open(envelope, kind="contact.lookup", job_id=42, now=int(time.time()))
    assert json.loads(opened.payload) == {"participant": "P-0042"}
    default = Castellum(keys=[castellum_key], signers=[signing.public_key()])
    with pytest.raises(Refused) as refused:
        default.open(envelope, kind="contact.lookup", job_id=43, now=int(time.time()))
    assert refused.value.code == "seal_mismatch"


def test_without_a_channel_a_sealed_job_names_default() -> None:
    sent = Sent()
    for channel in (None, "default"):
        with Client(
            "http://broker.test",
            "a-token-0000000000000",
            channel=channel,
            sealer=Sealer.from_keys(*sealing_keys()),
            transport=sent.transport(),
        ) as client:
            client.submit_sealed("contact.lookup", 1)
    assert sent.lines() == ["POST /v1/jobs"] * 2
    assert [header_of(sent.body(i)["payload"])["ch"] for i in (0, 1)] == ["default"] * 2


def test_a_sealer_made_for_one_channel_is_refused_by_a_client_on_another() -> None:
    sealer = Sealer.from_keys(*sealing_keys(), channel="site-a")
    assert header_of(sealer.seal("k", 1, job_timeout=5).envelope)["ch"] == "site-a"
    assert header_of(sealer.seal("k", 1, job_timeout=5, channel="site-c").envelope)["ch"] == (
        "site-c"
    )
    with pytest.raises(ValueError, match="channel name"):
        sealer.seal("k", 1, job_timeout=5, channel="Site C")
    for channel in (None, "default", "site-b"):
        with pytest.raises(ValueError, match="sealer was made for channel 'site-a'"):
            Client("http://broker.test", "a-token-0000000000000", channel=channel, sealer=sealer)
        with pytest.raises(ValueError, match="sealer was made for channel 'site-a'"):
            AsyncClient(
                "http://broker.test", "a-token-0000000000000", channel=channel, sealer=sealer
            )
    sent = Sent()
    with Client(
        "http://broker.test",
        "a-token-0000000000000",
        channel="site-a",
        sealer=sealer,
        transport=sent.transport(),
    ) as client:
        client.submit_sealed("k", 1)
    assert sent.lines() == ["POST /v1/channels/site-a/jobs"]
    assert header_of(sent.body()["payload"])["ch"] == "site-a"
