"""The client's rules against a real broker, for Client and AsyncClient alike
(the ``connect`` fixture gives each in turn)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from backchannel import (
    AsyncClient,
    Client,
    JobExpired,
    JobFailed,
    JobState,
    JobStillOpen,
    TooManyWaiting,
)
from support import (
    LISTENER_TOKEN,
    SUBMITTER_TOKEN,
    Exchange,
    Recorder,
    TcpProxy,
    free_port,
    wait_until,
)

#: How late past its deadline a call may return: scheduling and one loopback
#: round trip on a busy machine, far less than any deadline of a job here.
LATE = 0.5


def test_a_submit_ends_done(broker, start_agent, connect):
    start_agent(broker)  # echoes every payload back as the result
    client = connect(broker.url)

    job = client.submit("echo.test", {"n": 1}, wait=10)
    assert job.state is JobState.DONE and job.is_terminal
    assert job.result == {"n": 1} and job.payload == {"n": 1} and job.error is None
    assert job.kind == "echo.test" and job.attempts == 1
    for moment in (job.created_at, job.deadline, job.completed_at):
        assert moment is not None and moment.tzinfo is not None
        assert abs(moment - datetime.now(timezone.utc)) < timedelta(minutes=5)

    assert client.call("echo.test", {"n": 2}, wait=10) == {"n": 2}
    assert client.get(job.id) == job
    assert client.wait(job, wait=1) is job  # already terminal: nothing to ask


def test_job_timeout_is_the_jobs_and_wait_the_callers(broker, start_agent, connect):
    start_agent(broker)
    client = connect(broker.url)
    job = client.submit("echo.names", {"n": 1}, job_timeout=7, wait=10)
    assert job.deadline - job.created_at == timedelta(seconds=7), "job_timeout: the job's own"
    assert job.state is JobState.DONE
    assert client.wait(job.id, wait=5) == job
    assert client.call("echo.names", {"n": 2}, 10, job_timeout=9) == {"n": 2}, "wait, positional"


def test_the_old_timeout_keywords_still_work_with_a_warning(broker, start_agent, connect):
    client = connect(broker.url)
    sync = isinstance(client, Client)
    # No listener yet: the old name of the caller's wait is the caller's wait,
    # not the job's timeout.
    started = time.monotonic()
    old = pytest.warns(DeprecationWarning, match=r"\.call\(timeout=\) is deprecated: use wait=")
    with old, pytest.raises(JobStillOpen) as raised:
        client.call("slow.old", None, timeout=0.5, job_timeout=60)
    assert time.monotonic() - started < 0.5 + LATE
    assert raised.value.job.deadline - raised.value.job.created_at == timedelta(seconds=60)

    start_agent(broker)
    with pytest.warns(
        DeprecationWarning, match=r"\.submit\(timeout=\) is deprecated: use job_timeout="
    ) as warned:
        job = client.submit("echo.old", {"n": 1}, timeout=7, wait=10)
    assert job.deadline - job.created_at == timedelta(seconds=7), "still the job's own timeout"
    if sync:
        assert warned[0].filename == __file__, "the warning points at the caller's line"
    with pytest.warns(DeprecationWarning, match=r"\.call\(timeout=\) is deprecated: use wait="):
        assert client.call("echo.old", {"n": 2}, timeout=10) == {"n": 2}
    with pytest.warns(DeprecationWarning, match=r"\.wait\(timeout=\) is deprecated: use wait="):
        assert client.wait(job.id, timeout=5) == job
    with pytest.raises(TypeError, match="not both"):
        client.call("echo.old", None, wait=1, timeout=1)
    with pytest.raises(TypeError, match="not both"):
        client.submit("echo.old", None, job_timeout=1, timeout=1)


def test_a_202_is_followed_until_the_job_ends(broker, connect):
    listener = Client(broker.url, LISTENER_TOKEN)

    def answer_after_the_first_wait(exchange: Exchange) -> None:
        if exchange.method == "POST" and exchange.status == 202:
            listener.answer(exchange.body["id"], result={"answered": "after the first wait"})

    recorder = Recorder(on_response=answer_after_the_first_wait)
    # Each waiting request asks for half a second at most: the submit's wait
    # runs out long before the call's deadline.
    client = connect(broker.url, recorder=recorder, max_wait=0.5)

    assert client.call("follow.test", {"x": 1}, wait=20) == {"answered": "after the first wait"}

    submit, *rest = recorder.exchanges
    assert (submit.method, submit.status) == ("POST", 202)
    assert 0 < float(submit.params["wait"]) <= 0.5
    assert rest, "the 202 was followed"
    follow = rest[-1]
    assert (follow.method, follow.path, follow.status) == (
        "GET",
        f"/v1/jobs/{submit.body['id']}",
        200,
    )
    assert float(follow.params["wait"]) > 0, "followed with a waiting GET, not by polling"
    assert follow.body["state"] == "done"
    listener.close()


def test_the_callers_deadline_is_kept_when_the_job_outlives_it(broker, connect):
    recorder = Recorder()
    client = connect(broker.url, recorder=recorder)

    started = time.monotonic()
    with pytest.raises(JobStillOpen) as raised:
        client.call("slow.test", None, wait=1.0, job_timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + LATE, "returned at the caller's deadline"
    job = raised.value.job
    assert job.state is JobState.PENDING and not job.is_terminal
    assert job.deadline - job.created_at == timedelta(seconds=60), "the job lives on"
    assert raised.value.code == "still_open" and raised.value.status is None
    assert all(float(e.params.get("wait", 0)) <= 1.0 for e in recorder.exchanges)

    # wait() keeps its own deadline the same way, and the job is still there.
    started = time.monotonic()
    with pytest.raises(JobStillOpen):
        client.wait(job.id, wait=0.8)
    assert time.monotonic() - started < 0.8 + LATE
    assert client.get(job.id).state is JobState.PENDING


def test_a_job_nobody_answers_expires_with_the_call(broker, connect):
    # By default the job's own timeout ends a moment before the caller's: the
    # caller learns it expired, and the broker does not keep it open for nobody.
    client = connect(broker.url)
    started = time.monotonic()
    with pytest.raises(JobExpired) as raised:
        client.call("nobody.test", {"n": 1}, wait=1.0)
    assert time.monotonic() - started < 1.0 + LATE
    assert raised.value.job.state is JobState.EXPIRED
    assert raised.value.job.attempts == 0
    assert "no listener took the job (attempts 0): is the agent running?" in str(raised.value)


def test_a_handler_no_one_answers_fails_with_the_agents_code(broker, start_agent, connect):
    # The agent forwards to a port where nothing listens: it asks again until
    # shortly before the job's deadline, then fails the job with its own code.
    start_agent(broker, forward=f"http://127.0.0.1:{free_port()}/backchannel/job")
    client = connect(broker.url)
    with pytest.raises(JobFailed) as raised:
        client.call("nobody.listens", None, wait=10, job_timeout=2)
    assert raised.value.agent_code == "handler_unreachable"
    assert raised.value.handler_code is None and raised.value.handler_status is None
    assert "the handler is unreachable" in raised.value.message


def test_503_too_many_waiting_is_retried_after_retry_after(start_broker, connect):
    broker = start_broker(BACKCHANNEL_MAX_WAITING="1")
    listener = Client(broker.url, LISTENER_TOKEN)
    submitter = Client(broker.url, SUBMITTER_TOKEN)
    held = submitter.submit("holder.test")
    holder = threading.Thread(target=submitter.wait, args=(held, 30))
    holder.start()
    wait_until(
        lambda: _metric(broker, "backchannel_requests_waiting") == 1, what="the holder to wait"
    )

    def free_the_slot(exchange: Exchange) -> None:
        if exchange.code == "too_many_waiting" and holder.is_alive():
            listener.answer(held, result="released")
            holder.join(timeout=10)

    recorder = Recorder(on_response=free_the_slot)
    client = connect(broker.url, recorder=recorder)
    job = client.submit("retry.test", {"n": 1}, wait=3.0)

    refused, retried = recorder.exchanges[0], recorder.exchanges[1]
    assert (refused.status, refused.code) == (503, "too_many_waiting")
    assert (retried.method, retried.status) == ("POST", 202)
    assert float(retried.params["wait"]) > 0, "the retry was a waiting request too"
    assert retried.sent_at - refused.answered_at >= 1.0, "not before Retry-After: 1"
    assert job.kind == "retry.test"
    assert broker.database.count_jobs() == 2  # the holder's and this one
    for client_ in (listener, submitter):
        client_.close()


def test_503_is_raised_when_the_deadline_leaves_no_time_to_retry(start_broker, connect):
    broker = start_broker(BACKCHANNEL_MAX_WAITING="0")
    recorder = Recorder()
    client = connect(broker.url, recorder=recorder, timeout=0.5)
    with pytest.raises(TooManyWaiting) as raised:
        client.submit("refused.test", wait=0.4)
    assert raised.value.status == 503 and raised.value.retry_after == 1
    assert recorder.statuses() == [503], "Retry-After (1 s) is past the deadline: no retry"


def test_a_submit_whose_response_was_lost_is_retried_with_the_same_key(broker, connect):
    proxy = TcpProxy(("127.0.0.1", broker.port), cut_responses=1)
    recorder = Recorder()
    client = connect(f"http://127.0.0.1:{proxy.port}", recorder=recorder)

    job = client.submit("cut.test", {"n": 1})

    assert proxy.cut == 1, "the first response was dropped"
    lost, retried = recorder.exchanges
    assert lost.status is None and retried.status == 202
    assert lost.sent["idempotency_key"] == retried.sent["idempotency_key"]
    assert broker.database.count_jobs() == 1, "the retry created no second job"
    assert job.id == int(broker.database.value("SELECT id FROM backchannel.jobs"))
    proxy.close()


def test_reads_are_retried_after_a_lost_response(broker, connect):
    job = Client(broker.url, SUBMITTER_TOKEN).submit("read.test")
    proxy = TcpProxy(("127.0.0.1", broker.port), cut_responses=1)
    client = connect(f"http://127.0.0.1:{proxy.port}")
    assert client.get(job.id) == job
    assert proxy.cut == 1
    proxy.close()


def test_the_async_client_runs_calls_side_by_side(broker, start_agent):
    start_agent(broker)

    async def calls() -> list[object]:
        async with AsyncClient(broker.url, SUBMITTER_TOKEN) as client:
            return await asyncio.gather(
                *(client.call("echo.many", {"n": n}, wait=10) for n in range(10))
            )

    assert asyncio.run(calls()) == [{"n": n} for n in range(10)]
    assert broker.database.count_jobs() == 10


def _metric(broker, name: str) -> float:
    text = httpx.get(f"{broker.url}/metrics", timeout=2).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")
