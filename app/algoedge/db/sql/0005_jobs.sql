-- Background jobs: reports, notifications and e-mail deliveries, each idempotent by a key written
-- in the same transaction as its effect, and the record of scheduled report runs (one per kind
-- and period, whichever beat claims it first).

-- One report per user, kind and period: a redelivered or repeated request finds the same row.
ALTER TABLE reports
    ADD CONSTRAINT reports_user_kind_period_key UNIQUE (user_id, kind, period_start),
    ADD COLUMN error text CHECK (error IS NULL OR length(error) <= 1000),
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    -- When a task for this report was last put on the queue (the sweeper re-enqueues stale ones).
    ADD COLUMN enqueued_at timestamptz,
    ADD COLUMN ready_at timestamptz;

-- Report e-mails are opt-in.
ALTER TABLE users ADD COLUMN email_reports boolean NOT NULL DEFAULT false;

-- A notification's key (for example report:<id>) makes its creation idempotent.
ALTER TABLE notifications
    ADD COLUMN key text NOT NULL DEFAULT gen_random_uuid()::text CHECK (length(key) BETWEEN 1 AND 200),
    ADD CONSTRAINT notifications_user_key UNIQUE (user_id, key);

-- Each e-mail the platform means to send, claimed before sending and marked after, so a
-- redelivered task does not send it again (see docs/jobs.md for the one window that remains).
CREATE TABLE email_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    user_id bigint REFERENCES users (id) ON DELETE SET NULL,
    kind text NOT NULL CHECK (kind IN ('welcome', 'report')),
    report_id bigint REFERENCES reports (id) ON DELETE SET NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    claimed_until timestamptz,
    message_id text,
    error text CHECK (error IS NULL OR length(error) <= 1000),
    enqueued_at timestamptz,
    sent_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT email_deliveries_key UNIQUE (key)
);

-- A scheduled report run (kind + period) is claimed once, by whichever beat inserts it first;
-- fan-out batches count themselves done so the run's completion (and its lag) is known.
CREATE TABLE report_runs (
    kind text NOT NULL CHECK (kind IN ('daily', 'weekly')),
    period_start timestamptz NOT NULL,
    scheduled_at timestamptz NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    enqueued_at timestamptz,
    batches_total integer,
    batches_done integer NOT NULL DEFAULT 0,
    users_total integer,
    completed_at timestamptz,
    PRIMARY KEY (kind, period_start)
);

-- Which batches of a run are done (a redelivered batch must not count twice).
CREATE TABLE report_run_batches (
    kind text NOT NULL,
    period_start timestamptz NOT NULL,
    first_user_id bigint NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, period_start, first_user_id),
    FOREIGN KEY (kind, period_start) REFERENCES report_runs (kind, period_start) ON DELETE CASCADE
);
