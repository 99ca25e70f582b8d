"""Fixtures: brokers on fresh databases, agents, and clients of both kinds."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backchannel import AsyncClient, Client
from support import (
    CHANNEL_TOKEN_FILES,
    SUBMITTER_TOKEN,
    Agent,
    Broker,
    Database,
    Recorder,
    Stream,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_site.settings")


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start brokers (each on a fresh database); all stopped and dropped after the test.
    Keyword arguments are broker settings, e.g. ``BACKCHANNEL_MAX_WAITING="1"``,
    and ``token_files`` (see :class:`support.Broker`)."""
    brokers: list[Broker] = []
    databases: list[Database] = []

    def start(
        postgres_port: int | None = None,
        token_files: dict[str, list[str]] | None = None,
        **settings: str,
    ) -> Broker:
        databases.append(Database())
        brokers.append(Broker(tmp_path, databases[-1], postgres_port, token_files, **settings))
        return brokers[-1]

    yield start
    for broker in brokers:
        broker.stop()
    for database in databases:
        database.drop()


@pytest.fixture
def broker(start_broker: Callable[..., Broker]) -> Broker:
    return start_broker()


@pytest.fixture
def channel_broker(start_broker: Callable[..., Broker]) -> Broker:
    """A broker with the channels ``site-a`` and ``site-b`` (and ``default``):
    the tokens of :data:`support.CHANNEL_TOKEN_FILES` in its token files, and
    a heartbeat of a second (so that a :class:`Stream` stops soon)."""
    return start_broker(token_files=CHANNEL_TOKEN_FILES, BACKCHANNEL_HEARTBEAT="1")


@pytest.fixture
def open_stream() -> Iterator[Callable[..., Stream]]:
    """``open_stream(broker, path, token, on_job=None)``: a :class:`Stream`,
    stopped after the test."""
    streams: list[Stream] = []

    def start(broker: Broker, path: str, token: str, **options: Any) -> Stream:
        streams.append(Stream(broker, path, token, **options))
        return streams[-1]

    yield start
    for stream in streams:
        stream.stop()


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """Start ``backchannel agent`` processes (stopped after the test)."""
    agents: list[Agent] = []

    def start(broker: Broker, **options: Any) -> Agent:
        agent = Agent(tmp_path, broker, **options)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()


class AsyncAsBlocking:
    """:class:`AsyncClient` behind the blocking interface, so that one test body
    checks both clients: each call runs in an event loop (and a client) of its
    own."""

    def __init__(self, url: str, token: str, recorder: Recorder | None, **options: Any) -> None:
        self.url, self.token, self.recorder, self.options = url, token, recorder, options

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            transport = self.recorder.async_transport() if self.recorder else None
            async with AsyncClient(
                self.url, self.token, transport=transport, **self.options
            ) as client:
                return await getattr(client, name)(*args, **kwargs)

        return lambda *args, **kwargs: asyncio.run(run(*args, **kwargs))


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``connect(url, token=..., recorder=..., **options)``: a :class:`Client`,
    or an :class:`AsyncClient` behind the same blocking interface."""
    clients: list[Client] = []

    def make(
        url: str, token: str = SUBMITTER_TOKEN, recorder: Recorder | None = None, **options: Any
    ) -> Any:
        if request.param == "async":
            return AsyncAsBlocking(url, token, recorder, **options)
        transport = recorder.transport() if recorder else None
        client = Client(url, token, transport=transport, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
