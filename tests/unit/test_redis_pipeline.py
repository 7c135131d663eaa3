"""The pipelined Redis client's reading of a Redis URL (the forms the settings accept)."""

from __future__ import annotations

import pytest
from algoedge.redis_pipeline import PipelinedRedis, RedisAddress


class TestRedisAddress:
    def test_should_read_host_port_password_and_database(self) -> None:
        address = RedisAddress.from_url("redis://:s3cr%2Ft@redis.tenant.svc:6380/2")
        assert address == RedisAddress(
            host="redis.tenant.svc", port=6380, db=2, username=None, password="s3cr/t", tls=False
        )
        assert address.handshake() == [("AUTH", "s3cr/t"), ("SELECT", "2")]

    def test_should_default_to_port_6379_database_0_and_no_handshake(self) -> None:
        address = RedisAddress.from_url("redis://127.0.0.1")
        assert (address.port, address.db, address.handshake()) == (6379, 0, [])

    def test_should_authenticate_as_the_user_of_the_url_and_use_tls_for_rediss(self) -> None:
        address = RedisAddress.from_url("rediss://api:pw@redis.example:6379/0")
        assert address.tls
        assert address.handshake() == [("AUTH", "api", "pw")]

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("http://redis:6379/0", "must start with redis:// or rediss://"),
            ("redis://redis:notaport/0", "invalid port"),
            ("redis:///0", "has no host"),
            ("redis://redis:6379/zero", "not a number"),
        ],
    )
    def test_should_refuse_a_url_the_settings_refuse(self, url: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            PipelinedRedis.from_url(url, timeout_seconds=1.0)
