"""Events for a user's sockets from processes without python-socketio 5 (Celery workers, the bridge).

A JSON message on the Redis channel ``algoedge:events``; every API pod relays it to its own
sockets in the user's room (``algoedge.realtime``). No socket.io import here, so any process can use it.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from algoedge.keys import EVENTS_CHANNEL


async def publish_event(redis: Redis, user_id: int, event: str, data: Any) -> None:
    """Deliver ``event`` to every socket of ``user_id`` on every API pod (at most once, best effort)."""
    await redis.publish(
        EVENTS_CHANNEL, json.dumps({"user_id": user_id, "event": event, "data": data})
    )
