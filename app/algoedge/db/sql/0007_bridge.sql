-- The MetaAPI bridge: each linked account's connection state as users see it, the version of its
-- credentials (an edit bumps it, so a bridge attempt with old credentials cannot overwrite the
-- result of a newer one), MetaAPI accounts waiting to be removed after an unlink or an edit, and
-- the MetaAPI position behind each trade (a resynchronization must not duplicate trades).

ALTER TABLE mt_accounts DROP CONSTRAINT mt_accounts_state_check;
UPDATE mt_accounts SET state = 'provisioning' WHERE state = 'deploying';
ALTER TABLE mt_accounts
    ADD CONSTRAINT mt_accounts_state_check CHECK (state IN (
        'pending', 'provisioning', 'connecting', 'synchronizing', 'connected', 'disconnected', 'failed'
    )),
    ADD COLUMN state_since timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_error text CHECK (last_error IS NULL OR length(last_error) <= 500),
    ADD COLUMN credentials_version integer NOT NULL DEFAULT 1 CHECK (credentials_version > 0),
    ADD CONSTRAINT mt_accounts_metaapi_id_key UNIQUE (metaapi_account_id);

-- A MetaAPI account the platform no longer wants (unlinked, or replaced after an edit): a bridge
-- undeploys and deletes it, then removes the row.
CREATE TABLE metaapi_removals (
    metaapi_account_id text PRIMARY KEY CHECK (length(metaapi_account_id) BETWEEN 1 AND 64),
    requested_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text CHECK (last_error IS NULL OR length(last_error) <= 500)
);

ALTER TABLE trades
    ADD COLUMN metaapi_position_id text CHECK (length(metaapi_position_id) BETWEEN 1 AND 64);
