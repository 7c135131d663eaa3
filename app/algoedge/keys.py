"""Every Redis key and channel name that more than one process uses (docs/architecture.md lists them).

Kept apart from :mod:`algoedge.cache` so processes without the API's dependencies (the bridge)
can name the same keys without importing the API's metrics.
"""

from __future__ import annotations

PREFIX = "algoedge"
#: JSON events for a user's sockets from processes without python-socketio 5.
EVENTS_CHANNEL = f"{PREFIX}:events"
#: python-socketio's own AsyncRedisManager channel (API pods only).
SOCKETIO_CHANNEL = f"{PREFIX}:socketio"
#: Channel on which an API pod announces a session that ended (its jti), so every pod closes
#: that session's sockets (API pods only).
SESSION_ENDED_CHANNEL = f"{PREFIX}:sessions:ended"
#: Sorted set: MT account id -> unix time of the bridge's last heartbeat for that connected account.
BRIDGE_CONNECTED_KEY = f"{PREFIX}:bridge:connected"
#: A bridge replica re-reports each connected account at least this often; older entries are stale.
BRIDGE_HEARTBEAT_SECONDS = 90
#: Hash: API process (``<host>:<pid>``) -> ``"<sockets> <unix time>"``: each API process's count of
#: connected sockets, rewritten on every change and at least every API_SOCKETS_REPORT_SECONDS;
#: the capacity endpoint sums the entries younger than API_SOCKETS_STALE_SECONDS.
API_SOCKETS_KEY = f"{PREFIX}:api:sockets"
API_SOCKETS_REPORT_SECONDS = 10
#: An entry this old belongs to a process that stopped without removing it.
API_SOCKETS_STALE_SECONDS = 3 * API_SOCKETS_REPORT_SECONDS
#: Sorted set: bridge member (pod name) -> expiry of its registration (Redis server time, ms).
BRIDGE_MEMBERS_KEY = f"{PREFIX}:bridge:members"
#: Channel on which the API announces linked, edited and unlinked accounts (the account id), so
#: bridges react at once instead of at their next poll.
BRIDGE_WAKE_CHANNEL = f"{PREFIX}:bridge:wake"


def bridge_lease_key(account_id: int) -> str:
    """The lease a bridge replica must hold to connect ``account_id``: ``<pod>/<incarnation>``."""
    return f"{PREFIX}:bridge:lease:{account_id}"
