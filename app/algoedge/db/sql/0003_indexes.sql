-- algoedge:no-transaction
-- The scalability analysis's indexes plus the ones the API's queries need. Built CONCURRENTLY so
-- a migration on a live database does not block writes; IF NOT EXISTS makes a re-run safe.
-- The analysis asked for these three on trades; trades_user_id is a prefix of the composite and
-- kept because the analysis's reporting queries were written against it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS trades_user_id ON trades (user_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS trades_created_at ON trades (created_at);
-- Keyset pagination on (created_at, id), newest first, per user and per account.
CREATE INDEX CONCURRENTLY IF NOT EXISTS trades_user_created ON trades (user_id, created_at DESC, id DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS trades_account_created ON trades (account_id, created_at DESC, id DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS marketplace_bots_status ON marketplace_bots (status);
CREATE INDEX CONCURRENTLY IF NOT EXISTS signals_provider_created ON signals (provider_id, created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS bot_subscriptions_bot ON bot_subscriptions (bot_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS follows_provider ON follows (provider_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS reports_user_created ON reports (user_id, created_at DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_user_created ON notifications (user_id, created_at DESC);
