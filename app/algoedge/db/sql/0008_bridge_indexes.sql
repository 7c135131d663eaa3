-- algoedge:no-transaction
-- One trade per account and MetaAPI position: the bridge's upserts conflict on it, so a deal seen
-- again after a reconnect changes nothing. Trades entered by other means keep a NULL position. The
-- position leads, so account listings keep using trades_account_created.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS trades_account_position ON trades (metaapi_position_id, account_id);
