-- algoedge:no-transaction
-- Reports read a user's closed trades of a period in closing order; the sweepers look for stale
-- pending work; unread notifications are listed newest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS trades_user_closed ON trades (user_id, closed_at, id) WHERE closed_at IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS reports_pending ON reports (enqueued_at) WHERE status = 'pending';
CREATE INDEX CONCURRENTLY IF NOT EXISTS email_deliveries_open ON email_deliveries (enqueued_at) WHERE status IN ('pending', 'sending');
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_user_unread ON notifications (user_id, created_at DESC, id DESC) WHERE read_at IS NULL;
