"""Both Django sides, end to end: the scheduler's views in this process call a
real broker through the client; the real ``backchannel agent`` forwards each
job to castellum's view, served over real HTTP by a process of its own."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import django
import httpx
import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import AsyncClient as DjangoAsyncClient
from django.test import Client as DjangoClient
from django.test import override_settings

from backchannel import Client, JobFailed, JobState
from backchannel.models import parse_time
from support import (
    LISTENER_TOKEN,
    SUBMITTER_TOKEN,
    Broker,
    Process,
    clean_env,
    free_port,
    openssl_keys,
    wait_until,
)

PROJECT = Path(__file__).parent / "django_project"


@pytest.fixture(scope="module", autouse=True)
def django_setup() -> None:
    django.setup()


@dataclass
class Castellum:
    url: str
    secret: str
    process: Process

    @property
    def job_url(self) -> str:
        return f"{self.url}/backchannel/job"


@pytest.fixture(scope="module")
def castellum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Castellum]:
    """Castellum's Django project, served over HTTP, with its shared secret in a file."""
    directory = tmp_path_factory.mktemp("castellum")
    secret = "castellum-secret-" + secrets.token_hex(16)
    (directory / "secret").write_text(secret + "\n")
    port = free_port()
    env = clean_env(
        DJANGO_SETTINGS_MODULE="castellum_site.settings",
        CASTELLUM_SECRET_FILE=str(directory / "secret"),
        PYTHONPATH=str(PROJECT),
    )
    process = Process(
        [sys.executable, "-m", "castellum_site.serve", str(port)], env, directory / "log"
    )
    url = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        if not process.running():
            raise AssertionError(f"castellum exited:\n{process.output()}")
        try:
            httpx.get(url, timeout=1)
            return True
        except httpx.TransportError:
            return False

    wait_until(listening, what="castellum to listen")
    yield Castellum(url, secret, process)
    process.stop()


@pytest.fixture
def scheduler(broker: Broker, tmp_path: Path) -> Iterator[Broker]:
    """The scheduler's settings pointed at this test's broker (token from a file)."""
    token_file = tmp_path / "scheduler.token"
    token_file.write_text(SUBMITTER_TOKEN + "\n")
    with override_settings(
        BACKCHANNEL={"URL": broker.url, "TOKEN_FILE": str(token_file), "TIMEOUT": 10}
    ):
        yield broker


def test_the_whole_round_trip(scheduler: Broker, start_agent: Any, castellum: Castellum) -> None:
    start_agent(scheduler, forward=castellum.job_url, secret=castellum.secret)
    browser = DjangoClient()

    response = browser.get("/invitations/abc")
    assert response.status_code == 200, response.content
    found = response.json()["invitation"]
    assert found["name"] == "Ada Lovelace"
    assert found["attempt"] == 1 and found["before_deadline"] is True

    # A JobError raised by castellum's handler reaches the scheduler's view.
    assert browser.get("/invitations/nobody").status_code == 404

    async def async_view() -> Any:
        return await DjangoAsyncClient().get("/async/invitations/def")

    response = asyncio.run(async_view())
    assert response.status_code == 200 and response.json()["invitation"]["name"] == "Grace Hopper"

    with Client(scheduler.url, SUBMITTER_TOKEN) as client:
        stored = client.get(found["job"])
        assert stored.state is JobState.DONE and stored.result == found


def test_what_castellum_raises_reaches_the_submitter(
    broker: Broker, start_agent: Any, castellum: Castellum
) -> None:
    start_agent(broker, forward=castellum.job_url, secret=castellum.secret)
    with Client(broker.url, SUBMITTER_TOKEN) as client:
        with pytest.raises(JobFailed) as refused:
            client.call("invitation.lookup", {"token": "nobody"}, wait=10)
        assert refused.value.handler_status == 404
        assert refused.value.body == {
            "error": {
                "code": "job_error",
                "message": "no such invitation",
                "details": {"token": "nobody"},
            }
        }
        assert refused.value.message == "the handler answered 404: no such invitation"

        with pytest.raises(JobFailed) as crashed:
            client.call("castellum.crash", None, wait=10)
        assert crashed.value.handler_status == 500
        assert crashed.value.body == {
            "error": {"code": "internal", "message": "the handler failed"}
        }
        assert "participants.db" not in json.dumps(crashed.value.error)
        assert "participants.db" in castellum.process.output(), "castellum logged it"

        with pytest.raises(JobFailed) as unknown:
            client.call("nobody.handles.this", None, wait=10)
        assert unknown.value.handler_status == 501
        assert unknown.value.body["error"]["code"] == "unknown_kind"

        clock = client.call("castellum.clock", None, wait=10)
        assert parse_time(clock["deadline"]) - parse_time(clock["now"]) < timedelta(seconds=10)


def test_a_handlers_not_found_no_handler_and_a_wrong_url_are_told_apart(
    scheduler: Broker, start_broker: Any, start_agent: Any, castellum: Castellum
) -> None:
    start_agent(scheduler, forward=castellum.job_url, secret=castellum.secret)
    browser = DjangoClient()
    with Client(scheduler.url, SUBMITTER_TOKEN) as client:
        with pytest.raises(JobFailed) as own:
            client.call("participant.lookup", {"id": "P-9"}, wait=10)
        assert (own.value.handler_status, own.value.handler_code) == (404, "no_such_participant")
        with pytest.raises(JobFailed) as no_handler:
            client.call("nobody.handles.this", None, wait=10)
        assert (no_handler.value.handler_status, no_handler.value.handler_code) == (
            501,
            "unknown_kind",
        )
    assert browser.get("/invitations/nobody").status_code == 404, "the handler's own not found"

    # The agent's forward URL with a trailing slash: Django's own 404 page.
    lost = start_broker()
    start_agent(lost, forward=castellum.job_url + "/", secret=castellum.secret)
    with Client(lost.url, SUBMITTER_TOKEN) as client, pytest.raises(JobFailed) as wrong_url:
        client.call("participant.lookup", {"id": "P-9"}, wait=10)
    assert (wrong_url.value.handler_status, wrong_url.value.handler_code) == (404, None)
    assert isinstance(wrong_url.value.body, str), "a page, not the kit's JSON"
    with override_settings(BACKCHANNEL={"URL": lost.url, "TOKEN": SUBMITTER_TOKEN}):
        response = browser.get("/invitations/abc")
    assert response.status_code == 502, "not 'no such invitation'"


def test_an_agent_that_expects_the_kit_names_a_wrong_url(
    scheduler: Broker, start_agent: Any, castellum: Castellum
) -> None:
    # The agent's forward URL with a trailing slash, and the kit expected: the
    # job fails with the agent's not_the_kit, and the agent said so at start.
    agent = start_agent(
        scheduler,
        forward=castellum.job_url + "/",
        secret=castellum.secret,
        BACKCHANNEL_EXPECT_KIT="true",
    )
    with Client(scheduler.url, SUBMITTER_TOKEN) as client, pytest.raises(JobFailed) as wrong_url:
        client.call("participant.lookup", {"id": "P-9"}, wait=10)
    assert wrong_url.value.agent_code == "not_the_kit"
    assert (wrong_url.value.handler_status, wrong_url.value.handler_code) == (404, None)
    assert wrong_url.value.body is None, "Django's page is not passed on"
    assert "does not reach the castellum kit" in wrong_url.value.message
    response = DjangoClient().get("/invitations/abc")
    assert response.status_code == 502, "not 'no such invitation'"
    wait_until(
        lambda: "does not answer as the castellum kit" in agent.process.output(),
        what="the agent's warning at start",
    )
    assert "/backchannel/job/" in agent.process.output(), "the path is named"
    agent.stop()

    # The right URL: the kit's own answers pass, its "not found" included.
    start_agent(
        scheduler,
        forward=castellum.job_url,
        secret=castellum.secret,
        BACKCHANNEL_EXPECT_KIT="true",
    )
    assert DjangoClient().get("/invitations/abc").status_code == 200
    with Client(scheduler.url, SUBMITTER_TOKEN) as client, pytest.raises(JobFailed) as own:
        client.call("participant.lookup", {"id": "P-9"}, wait=10)
    assert (own.value.handler_status, own.value.handler_code) == (404, "no_such_participant")
    assert own.value.agent_code is None


def test_an_agent_with_a_wrong_secret_is_told_at_start(
    broker: Broker, start_agent: Any, castellum: Castellum
) -> None:
    agent = start_agent(broker, forward=castellum.job_url, secret="a-wrong-secret-0123456789")
    wait_until(
        lambda: "refuses the agent (403 forbidden)" in agent.process.output(),
        what="the agent's warning at start",
    )
    assert castellum.secret not in agent.process.output()
    assert "a-wrong-secret-0123456789" not in agent.process.output()


def test_a_wrong_token_is_not_a_slow_castellum(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    browser = DjangoClient()
    wrong = "not-the-token-" + "w" * 16
    for token, status in [(wrong, "401 unauthorized"), (LISTENER_TOKEN, "403 forbidden")]:
        caplog.clear()
        with override_settings(BACKCHANNEL={"URL": broker.url, "TOKEN": token, "TIMEOUT": 10}):
            response = browser.get("/invitations/abc")
        assert response.status_code == 500, "a configuration error, not 'no answer in time'"
        assert response.json() == {"detail": "the backchannel refused this site's request"}
        [logged] = [r for r in caplog.records if r.name == "backchannel"]
        assert logged.levelno == logging.ERROR and status in logged.getMessage()
        assert token not in logged.getMessage()

    # No listener at all: that one is "no answer in time".
    with override_settings(BACKCHANNEL={"URL": broker.url, "TOKEN": SUBMITTER_TOKEN}):
        response = browser.get("/invitations/abc")
    assert response.status_code == 504
    # And no broker at all: unavailable (retried until the wait ran out).
    with override_settings(
        BACKCHANNEL={"URL": f"http://127.0.0.1:{free_port()}", "TOKEN": SUBMITTER_TOKEN}
    ):
        response = browser.get("/invitations/abc")
    assert response.status_code == 503


@pytest.mark.parametrize(
    "secret", [None, "a-wrong-secret-0123456789"], ids=["no-secret", "wrong-secret"]
)
def test_an_agent_without_the_right_secret_is_refused(
    scheduler: Broker, start_agent: Any, castellum: Castellum, secret: str | None
) -> None:
    start_agent(scheduler, forward=castellum.job_url, secret=secret)
    with Client(scheduler.url, SUBMITTER_TOKEN) as client:
        job = client.submit("invitation.lookup", {"token": "abc"}, wait=10)
    assert job.state is JobState.FAILED
    assert job.error["status"] == 403
    assert job.error["body"] == {
        "error": {"code": "forbidden", "message": "missing or wrong shared secret"}
    }
    assert castellum.secret not in json.dumps(job.error)

    response = DjangoClient().get("/invitations/abc")
    assert response.status_code == 502
    assert response.json() == {"detail": "the handler answered 403: missing or wrong shared secret"}


def test_the_castellum_view_over_http(castellum: Castellum) -> None:
    job_headers = {
        "X-Backchannel-Job-Id": "5",
        "X-Backchannel-Kind": "invitation.lookup",
        "X-Backchannel-Attempt": "1",
        "X-Backchannel-Deadline": "2099-01-01T00:00:00Z",
        "Content-Type": "application/json",
    }
    good = {**job_headers, "X-Backchannel-Secret": castellum.secret}

    def post(headers: dict[str, str], body: bytes = b'{"token": "abc"}') -> httpx.Response:
        return httpx.post(castellum.job_url, headers=headers, content=body, timeout=5)

    assert post(good).json()["name"] == "Ada Lovelace"
    for headers in (job_headers, {**job_headers, "X-Backchannel-Secret": castellum.secret + "x"}):
        refused = post(headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert castellum.secret not in refused.text
    wrong_method = httpx.get(castellum.job_url, headers=good, timeout=5)
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
    assert post(good, b"{not json").status_code == 400
    missing = post({k: v for k, v in good.items() if k != "X-Backchannel-Deadline"})
    assert (
        missing.status_code == 400
        and "X-Backchannel-Deadline" in missing.json()["error"]["message"]
    )
    unknown = post({**good, "X-Backchannel-Kind": "nobody.handles.this"})
    assert unknown.status_code == 501 and unknown.json()["error"]["code"] == "unknown_kind"

    # Every answer of the kit says so; a page the kit did not write does not.
    answers = [post(good), *(post(h) for h in (job_headers,)), wrong_method, missing, unknown]
    answers.append(post({**good, "X-Backchannel-Kind": "participant.lookup"}, b'{"id": "P-9"}'))
    assert [a.status_code for a in answers] == [200, 403, 405, 400, 501, 404]
    for answer in answers:
        assert answer.headers["X-Backchannel-Kit"] == "1", answer.status_code
        assert answer.headers["Content-Type"] == "application/json"
    not_the_kit = httpx.post(castellum.job_url + "/", headers=good, content=b"{}", timeout=5)
    assert not_the_kit.status_code == 404 and "X-Backchannel-Kit" not in not_the_kit.headers

    # A body over Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is the kit's 413.
    large = post(good, b'{"token": "' + b"a" * 3_000_000 + b'"}')
    assert large.status_code == 413 and large.headers["X-Backchannel-Kit"] == "1"
    assert large.json()["error"]["code"] == "payload_too_large"


def test_the_status_command(scheduler: Broker, start_agent: Any) -> None:
    out = io.StringIO()
    with pytest.raises(CommandError) as no_listener:
        call_command("backchannel_status", stdout=out)
    assert no_listener.value.returncode == 1
    assert "reachable" in out.getvalue() and "listener  none" in out.getvalue()

    start_agent(scheduler)
    out = io.StringIO()
    call_command("backchannel_status", stdout=out)
    assert "listener  python-tests-" in out.getvalue() and "jobs      pending 0" in out.getvalue()

    with override_settings(
        BACKCHANNEL={"URL": f"http://127.0.0.1:{free_port()}", "TOKEN": "x" * 20}
    ):
        out = io.StringIO()
        with pytest.raises(CommandError) as unreachable:
            call_command("backchannel_status", "--timeout", "0.5", stdout=out)
        assert unreachable.value.returncode == 2
        assert "x" * 20 not in out.getvalue() + str(unreachable.value)


def test_the_status_command_from_the_command_line(
    broker: Broker, start_agent: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "scheduler.token"
    token_file.write_text(SUBMITTER_TOKEN + "\n")

    def status(url: str = broker.url) -> subprocess.CompletedProcess[str]:
        env = clean_env(
            DJANGO_SETTINGS_MODULE="scheduler_site.settings",
            PYTHONPATH=str(PROJECT),
            SCHEDULER_BROKER_URL=url,
            SCHEDULER_TOKEN_FILE=str(token_file),
        )
        command = [sys.executable, "-m", "django", "backchannel_status", "--timeout", "2"]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    # No listener: one clear line first, exit 1, nothing that looks like a crash.
    none = status()
    assert none.returncode == 1, none
    assert none.stdout.splitlines()[0] == (
        f"no listener: the broker at {broker.url} answers, but no `backchannel agent` holds "
        "its stream; jobs wait until one connects"
    )
    assert none.stderr == "", "no CommandError line, no traceback"

    start_agent(broker)
    ok = status()
    assert ok.returncode == 0 and ok.stderr == ""
    assert ok.stdout.startswith(f"ok: the broker at {broker.url} answers, and listener python-")

    unreachable = status(f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 2
    assert unreachable.stdout.startswith("unusable: the broker at http://127.0.0.1:")
    assert "Traceback" not in unreachable.stderr and "CommandError" not in unreachable.stderr

    token_file.write_text("not-the-token-" + "z" * 16)
    refused = status()
    assert refused.returncode == 2 and "401 unauthorized" in refused.stdout.splitlines()[0]
    assert "Traceback" not in refused.stderr and "CommandError" not in refused.stderr
    assert "z" * 16 not in refused.stdout + refused.stderr

    token_file.unlink()
    unreadable = status()
    assert unreadable.returncode == 2 and unreadable.stdout.startswith("unusable: settings.")
    assert "Traceback" not in unreadable.stderr and "CommandError" not in unreadable.stderr


def test_the_checks(scheduler: Broker, start_agent: Any) -> None:
    def ids(deploy: bool) -> list[str]:
        return [m.id for m in run_checks(tags=["backchannel"], include_deployment_checks=deploy)]

    assert ids(deploy=False) == []
    assert ids(deploy=True) == ["backchannel.W002"], "no listener yet"
    start_agent(scheduler)
    assert ids(deploy=True) == []

    with override_settings(
        BACKCHANNEL={"URL": f"http://127.0.0.1:{free_port()}", "TOKEN": "x" * 20}
    ):
        assert ids(deploy=False) == [], "without --deploy nothing asks the broker"
        assert ids(deploy=True) == ["backchannel.E003"]
    with override_settings(BACKCHANNEL={"URL": "ftp://nowhere", "TOKEN": "x" * 20}):
        assert ids(deploy=False) == ["backchannel.E001"]
    with override_settings(BACKCHANNEL_CASTELLUM={"SECRET_FILE": "/nonexistent/secret"}):
        assert ids(deploy=False) == ["backchannel.E002"]


def test_get_client_is_built_once_and_follows_the_settings(
    scheduler: Broker, tmp_path: Path
) -> None:
    from backchannel.django import get_client

    seen: list[Client] = []
    threads = [threading.Thread(target=lambda: seen.append(get_client())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in seen}) == 1
    assert seen[0].base_url == scheduler.url and seen[0].timeout == 10
    assert seen[0].stats().jobs[JobState.PENDING] == 0

    other = f"http://127.0.0.1:{free_port()}"
    with override_settings(BACKCHANNEL={"URL": other, "TOKEN": "y" * 20, "TIMEOUT": 3}):
        assert get_client() is not seen[0] and get_client().base_url == other
        assert get_client().timeout == 3
    missing = tmp_path / "no-such-token"
    unreadable = override_settings(BACKCHANNEL={"URL": other, "TOKEN_FILE": str(missing)})
    with unreadable, pytest.raises(ImproperlyConfigured, match="no-such-token"):
        get_client()
    typo = override_settings(BACKCHANNEL={"URL": other, "TOKEN": "z" * 20, "TIMOUT": 3})
    with typo, pytest.raises(ImproperlyConfigured, match="unknown keys"):
        get_client()


def test_castellum_with_an_unreadable_secret_file_fails_its_check(tmp_path: Path) -> None:
    env = clean_env(
        DJANGO_SETTINGS_MODULE="castellum_site.settings",
        CASTELLUM_SECRET_FILE=str(tmp_path / "missing"),
        PYTHONPATH=str(PROJECT),
    )
    check = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode != 0 and "backchannel.E002" in check.stderr


def test_secrets_and_tokens_in_the_settings(tmp_path: Path) -> None:
    from backchannel.django.conf import castellum_config, scheduler_config

    with override_settings(BACKCHANNEL_CASTELLUM={"SECRET": "correct horse battery staple"}):
        # The agent sends a secret with inner spaces as it is; so does the kit.
        assert castellum_config().secret == "correct horse battery staple"
        assert castellum_config().header == "X-Backchannel-Secret"
        assert "correct horse" not in repr(castellum_config())
    secret_file = tmp_path / "secret"
    secret_file.write_text("  from-a-file  \n")
    with override_settings(
        BACKCHANNEL_CASTELLUM={"SECRET_FILE": str(secret_file), "HEADER": "X-Key"}
    ):
        assert (castellum_config().secret, castellum_config().header) == ("from-a-file", "X-Key")
    refused = [
        {"SECRET": " padded"},
        {"SECRET": "two\nlines"},
        {"SECRET": ""},
        {"SECRET": "x", "SECRET_FILE": str(secret_file)},
        {"SECRET": "fine-secret", "HEADER": "not a header"},
        {},
    ]
    for section in refused:
        with override_settings(BACKCHANNEL_CASTELLUM=section), pytest.raises(ImproperlyConfigured):
            castellum_config()
    token = "a-token with-a-space"
    with override_settings(BACKCHANNEL={"URL": "http://127.0.0.1:9", "TOKEN": token}):
        with pytest.raises(ImproperlyConfigured) as raised:
            scheduler_config()
        assert token not in str(raised.value)


def test_sealing_settings_and_their_checks(tmp_path: Path) -> None:
    from backchannel.django import get_client
    from backchannel.django.conf import scheduler_config

    signing, public, private = openssl_keys(tmp_path, "django")
    base = {"URL": "http://127.0.0.1:9", "TOKEN": "t" * 20}

    def ids(seal: Any) -> list[tuple[str, str]]:
        with override_settings(BACKCHANNEL={**base, "SEAL": seal}):
            return [(m.id, m.msg) for m in run_checks(tags=["backchannel"])]

    good = {"SIGNING_KEY_FILE": str(signing), "RECIPIENT_FILES": [str(public)]}
    assert ids(good) == []
    with override_settings(BACKCHANNEL={**base, "SEAL": good}):
        sealer = get_client().sealer
        assert sealer is not None and sealer.channel == "default"
        assert sealer is scheduler_config().sealer, "the keys are read once"
        assert len(sealer.recipient_kids) == 1 and len(sealer.signer_kid) == 16
        out = io.StringIO()
        with pytest.raises(CommandError):  # no broker at that URL
            call_command("backchannel_status", "--timeout", "0.5", stdout=out)
        assert (
            f"sealing   to castellum key {sealer.recipient_kids[0]} (also listed: none), "
            f"signed by {sealer.signer_kid}, channel default"
        ) in out.getvalue()
    with override_settings(BACKCHANNEL=base):
        assert get_client().sealer is None

    signing.chmod(0o640)
    [(check_id, message)] = ids(good)
    assert check_id == "backchannel.W003"
    assert str(signing) in message and "readable by its group (mode 0640)" in message
    signing.chmod(0o644)
    assert "its group and others" in ids(good)[0][1]
    signing.chmod(0o600)

    missing = str(tmp_path / "nowhere.key")
    refused = [
        ({**good, "SIGNING_KEY_FILE": missing}, f"cannot read the signing key {missing}"),
        ({**good, "SIGNING_KEY_FILE": str(private)}, "holds an X25519 private key, not an Ed25519"),
        ({**good, "RECIPIENT_FILES": [str(private)]}, "give the scheduler castellum's public key"),
        ({**good, "RECIPIENT_FILES": [str(signing)]}, "holds an Ed25519 private key"),
        ({**good, "RECIPIENT_FILES": str(public)}, "must be a list of paths"),
        ({**good, "RECIPIENT_FILES": []}, "must be a list of paths"),
        ({"RECIPIENT_FILES": [str(public)]}, "SIGNING_KEY_FILE"),
        ({**good, "CHANEL": "x"}, "unknown keys ['CHANEL']"),
        ("/etc/keys", "must be a dict"),
    ]
    for seal, expected in refused:
        [(check_id, message)] = ids(seal)
        assert check_id == "backchannel.E001" and expected in message, (seal, message)
        assert "BEGIN" not in message


def test_the_channel_setting(tmp_path: Path) -> None:
    from backchannel.django import async_client, get_client, scheduler_client
    from backchannel.django.conf import scheduler_config

    base = {"URL": "http://127.0.0.1:9", "TOKEN": "t" * 20}

    def checks(section: dict[str, Any]) -> list[tuple[str, str]]:
        with override_settings(BACKCHANNEL=section):
            return [(m.id, m.msg) for m in run_checks(tags=["backchannel"])]

    with override_settings(BACKCHANNEL=base):
        assert scheduler_config().channel == "default" and get_client().channel == "default"
    for given, expected in [("site-b", "site-b"), ("default", "default"), (None, "default")]:
        with override_settings(BACKCHANNEL={**base, "CHANNEL": given}):
            assert scheduler_config().channel == expected
            assert get_client().channel == expected, "the shared client follows the setting"
            with scheduler_client() as client:
                assert client.channel == expected
            later = async_client()
            assert later.channel == expected
            asyncio.run(later.aclose())
        assert checks({**base, "CHANNEL": given}) == []

    for bad in ["Site-B", "site_b", "-b", "", "x" * 64, 7]:
        [(check_id, message)] = checks({**base, "CHANNEL": bad})
        assert check_id == "backchannel.E001", bad
        assert "settings.BACKCHANNEL['CHANNEL'] must be a channel name" in message
        wrong = override_settings(BACKCHANNEL={**base, "CHANNEL": bad})
        with wrong, pytest.raises(ImproperlyConfigured, match="channel name"):
            get_client()

    # Sealing: the sealed header names the client's channel.
    signing, public, _ = openssl_keys(tmp_path, "channel")
    seal = {"SIGNING_KEY_FILE": str(signing), "RECIPIENT_FILES": [str(public)]}
    with override_settings(BACKCHANNEL={**base, "CHANNEL": "site-b", "SEAL": seal}):
        client = get_client()
        assert client.channel == "site-b"
        assert client.sealer is not None and client.sealer.channel == "site-b"
    same = {**base, "CHANNEL": "site-b", "SEAL": {**seal, "CHANNEL": "site-b"}}
    assert checks(same) == []
    for section in (
        {**base, "CHANNEL": "site-b", "SEAL": {**seal, "CHANNEL": "site-a"}},
        {**base, "SEAL": {**seal, "CHANNEL": "site-a"}},
    ):
        [(check_id, message)] = checks(section)
        assert check_id == "backchannel.E001"
        assert "['SEAL']['CHANNEL'] is 'site-a' but the clients submit on" in message
    [(check_id, message)] = checks({**base, "SEAL": {**seal, "CHANNEL": "Site A"}})
    assert check_id == "backchannel.E001" and "channel name" in message
