"""read_capacity against a real HTTP server on 127.0.0.1: what it reads, and what it refuses to."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from algoedge_operator.capacity import (
    MAX_ANSWER_BYTES,
    CapacityError,
    CapacityReport,
    parse_capacity,
    read_capacity,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANSWER = {"linked_accounts": 3, "connected_accounts": 2, "queue_backlog": {"default": 5}}


def padded_answer(size: int) -> bytes:
    """A valid capacity answer of ``size`` bytes (trailing whitespace is legal JSON)."""
    body = json.dumps(ANSWER).encode()
    return body + b" " * (size - len(body))


async def read_from(handler: Handler) -> CapacityReport:
    app = web.Application()
    app.router.add_get("/internal/v1/capacity", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            return await read_capacity(
                session,
                str(server.make_url("/internal/v1/capacity")),
                token="t" * 16,
                timeout_seconds=5,
            )
    finally:
        await server.close()


def sends(body: bytes, *, chunked: bool = False) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=body, content_type="application/json")
        # No Content-Length: the size shows only while reading.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 4096):
            await response.write(body[start : start + 4096])
        await response.write_eof()
        return response

    return handler


class TestReadCapacity:
    @pytest.mark.parametrize("chunked", [False, True])
    async def test_should_read_an_answer_up_to_the_bound(self, chunked: bool) -> None:
        report = await read_from(sends(padded_answer(MAX_ANSWER_BYTES), chunked=chunked))
        assert (report.linked_accounts, report.total_backlog) == (3, 5)

    @pytest.mark.parametrize("chunked", [False, True])
    async def test_should_refuse_an_answer_beyond_the_bound(self, chunked: bool) -> None:
        with pytest.raises(CapacityError, match="answer is larger than 65536 bytes"):
            await read_from(sends(padded_answer(MAX_ANSWER_BYTES + 1), chunked=chunked))

    async def test_should_refuse_json_nested_too_deeply_within_the_bound(self) -> None:
        with pytest.raises(CapacityError, match="answer is not JSON"):
            await read_from(sends(b"[" * (MAX_ANSWER_BYTES // 2)))


class TestConnectedSockets:
    def test_should_read_the_apis_sockets_when_reported(self) -> None:
        report = parse_capacity({**ANSWER, "connected_sockets": 812})
        assert report.connected_sockets == 812

    def test_should_accept_an_answer_without_them(self) -> None:
        # An API from before the count existed: no utilisation, no CapacityLow.
        assert parse_capacity(ANSWER).connected_sockets is None

    @pytest.mark.parametrize("value", [-1, "12", 1.5, True, None])
    def test_should_refuse_a_count_that_is_not_one(self, value: object) -> None:
        with pytest.raises(CapacityError, match="connected_sockets"):
            parse_capacity({**ANSWER, "connected_sockets": value})
