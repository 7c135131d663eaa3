"""Access tokens: a verified token is remembered, its expiry and its exact text still hold."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from algoedge.auth import AuthError, Tokens

SECRET = "s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_should_refuse_a_remembered_token_once_it_expires() -> None:
    clock = Clock()
    tokens = Tokens(SECRET, ttl_seconds=60, clock=clock)
    issued = tokens.issue(7, now=datetime.fromtimestamp(clock.now, tz=UTC))
    assert tokens.decode(issued.token).user_id == 7
    clock.now += 30
    assert tokens.decode(issued.token).jti == issued.jti  # remembered, still live
    clock.now += 31
    with pytest.raises(AuthError, match="expired"):
        tokens.decode(issued.token)


def test_should_check_every_other_text_even_with_the_same_claims() -> None:
    tokens = Tokens(SECRET, ttl_seconds=60)
    issued = tokens.issue(7, now=datetime.now(UTC))
    tokens.decode(issued.token)
    header, payload, signature = issued.token.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(AuthError, match="not valid"):
        tokens.decode(tampered)
    other_key = Tokens("o" * 32, ttl_seconds=60).issue(7, now=datetime.now(UTC)).token
    with pytest.raises(AuthError, match="not valid"):
        tokens.decode(other_key)


def test_should_remember_at_most_the_newest_tokens() -> None:
    tokens = Tokens(SECRET, ttl_seconds=60, remembered=2)
    now = datetime.now(UTC)
    issued = [tokens.issue(n, now=now) for n in range(3)]
    for token in issued:
        tokens.decode(token.token)
    assert len(tokens._verified) == 2
    # The evicted one is simply checked again.
    assert tokens.decode(issued[0].token).user_id == 0
