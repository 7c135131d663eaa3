"""Notifications: newest first, filtered by read state, marked read once, another user's hidden."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from algoedge.config import ApiSettings
from algoedge.db import Database, notifications

from tests.integration.conftest import ApiClient

NOTIFICATIONS = "/api/v1/notifications"


@pytest.fixture
async def app_db(relaxed_settings: ApiSettings) -> AsyncIterator[Database]:
    database = await Database.connect(relaxed_settings)
    yield database
    await database.close()


async def notify(db: Database, user_id: int, n: int) -> int:
    made = await notifications.add_notification(
        db, user_id=user_id, key=f"report:{n}", kind="report.ready", body={"report_id": n}
    )
    assert made is not None
    return made


async def every(api: ApiClient, token: str, query: str = "") -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = f"limit=2&{query}" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await api.call("GET", f"{NOTIFICATIONS}?{params}", token=token)
        assert status == 200, body
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def test_should_page_my_notifications_newest_first(api: ApiClient, app_db: Database) -> None:
    user_id, token = await api.signed_up()
    other_id, _ = await api.signed_up()
    made = [await notify(app_db, user_id, n) for n in range(5)]
    await notify(app_db, other_id, 99)
    listed = await every(api, token)
    assert [n["id"] for n in listed] == list(reversed(made))
    assert listed[0] == {
        "id": made[-1],
        "kind": "report.ready",
        "body": {"report_id": 4},
        "read_at": None,
        "created_at": listed[0]["created_at"],
    }


async def test_should_create_a_notification_once_per_key(api: ApiClient, app_db: Database) -> None:
    user_id, token = await api.signed_up()
    other_id, _ = await api.signed_up()
    first = await notify(app_db, user_id, 7)
    again = await notifications.add_notification(
        app_db, user_id=user_id, key="report:7", kind="report.ready", body={"report_id": 7}
    )
    assert again is None
    # Keys are per user: someone else's report:7 is a notification of its own.
    assert await notify(app_db, other_id, 7) != first
    assert [n["id"] for n in await every(api, token)] == [first]


async def test_should_mark_read_once_and_filter_by_read_state(
    api: ApiClient, app_db: Database
) -> None:
    user_id, token = await api.signed_up()
    made = [await notify(app_db, user_id, n) for n in range(4)]
    path = f"{NOTIFICATIONS}/{made[1]}/read"
    status, body, _ = await api.call("POST", path, token=token)
    assert (status, body) == (204, None)
    read = await every(api, token, "unread=false")
    assert [n["id"] for n in read] == [made[1]]
    first_read_at = read[0]["read_at"]
    assert datetime.fromisoformat(first_read_at)
    # Again: still 204, and the first reading time stays.
    assert (await api.call("POST", path, token=token))[0] == 204
    assert (await every(api, token, "unread=false"))[0]["read_at"] == first_read_at
    unread = await every(api, token, "unread=true")
    assert [n["id"] for n in unread] == [made[3], made[2], made[0]]
    assert all(n["read_at"] is None for n in unread)
    assert len(await every(api, token)) == 4


async def test_should_hide_another_users_notification_as_not_found(
    api: ApiClient, app_db: Database
) -> None:
    owner_id, owner = await api.signed_up()
    _, intruder = await api.signed_up()
    theirs = await notify(app_db, owner_id, 1)
    status, problem, _ = await api.call("POST", f"{NOTIFICATIONS}/{theirs}/read", token=intruder)
    assert status == 404
    assert problem["detail"] == "No such resource."
    assert (await every(api, owner, "unread=true"))[0]["id"] == theirs
    for missing in ("987654321", "abc", "1.5"):
        status, _, _ = await api.call("POST", f"{NOTIFICATIONS}/{missing}/read", token=owner)
        assert status == 404, missing
    assert (await api.call("POST", f"{NOTIFICATIONS}/{theirs}/read"))[0] == 401


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("unread=maybe", "unread"),
        ("unread=1", "unread"),
        ("unread=true&unread=false", "unread"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("limit=101", "limit"),
        ("kind=report.ready", "kind"),
    ],
)
async def test_should_refuse_a_bad_query(api: ApiClient, query: str, field: str) -> None:
    _, token = await api.signed_up()
    status, problem, _ = await api.call("GET", f"{NOTIFICATIONS}?{query}", token=token)
    assert status == 422
    assert field in {e["field"] for e in problem["errors"]}
