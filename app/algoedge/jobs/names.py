"""Task names and queue routing, shared by every process that sends or runs tasks (no Celery import).

Tasks go to a dedicated queue (``reports``, ``emails``) when the tenant's
``ALGOEDGE_WORKER_QUEUES`` lists it, otherwise to the first listed queue; so any queue list the
CRD allows is consumed, and the API's capacity endpoint counts exactly the queues workers read.
"""

from __future__ import annotations

from typing import Final

DEFAULT_QUEUE: Final = "default"
REPORTS_QUEUE: Final = "reports"
EMAILS_QUEUE: Final = "emails"

GENERATE_REPORT: Final = "algoedge.reports.generate"
REPORT_FAN_OUT: Final = "algoedge.reports.fan_out"
REPORT_BATCH: Final = "algoedge.reports.batch"
SEND_EMAIL: Final = "algoedge.emails.send"
SWEEP: Final = "algoedge.maintenance.sweep"
PRUNE_SESSIONS: Final = "algoedge.maintenance.prune_sessions"

#: The queue each task prefers; see :func:`queue_for`.
PREFERRED_QUEUE: Final[dict[str, str]] = {
    GENERATE_REPORT: REPORTS_QUEUE,
    REPORT_FAN_OUT: REPORTS_QUEUE,
    REPORT_BATCH: REPORTS_QUEUE,
    SEND_EMAIL: EMAILS_QUEUE,
    SWEEP: DEFAULT_QUEUE,
    PRUNE_SESSIONS: DEFAULT_QUEUE,
}


def queue_for(task: str, queues: tuple[str, ...]) -> str:
    """The queue ``task`` is sent to, given the queues the workers consume (never empty)."""
    preferred = PREFERRED_QUEUE[task]
    return preferred if preferred in queues else queues[0]
