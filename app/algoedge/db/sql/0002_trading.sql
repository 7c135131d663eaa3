-- Trading data: linked MetaTrader accounts, their trades, the bot marketplace, signal providers,
-- follows, reports and notifications. Indexes beyond primary keys and uniqueness constraints
-- come in 0003 (built CONCURRENTLY, outside a transaction).

-- Server-side record of issued access tokens: Redis caches it, Postgres is the authority, so
-- revocation still holds while Redis is down or after it lost its data.
CREATE TABLE sessions (
    jti text PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mt_accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    login text NOT NULL CHECK (login ~ '^[0-9]{1,20}$'),
    server text NOT NULL CHECK (length(server) BETWEEN 1 AND 128),
    platform text NOT NULL CHECK (platform IN ('mt4', 'mt5')),
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'deploying', 'connected', 'disconnected', 'failed')),
    -- Fernet token of the trading password (ALGOEDGE_CREDENTIALS_KEY); never leaves the API.
    encrypted_password bytea NOT NULL,
    metaapi_account_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mt_accounts_user_login_server_key UNIQUE (user_id, login, server)
);

CREATE TABLE trades (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES mt_accounts (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    symbol text NOT NULL CHECK (length(symbol) BETWEEN 1 AND 32),
    side text NOT NULL CHECK (side IN ('buy', 'sell')),
    volume numeric(14, 2) NOT NULL CHECK (volume > 0),
    open_price numeric(20, 8) NOT NULL,
    close_price numeric(20, 8),
    profit numeric(18, 2),
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE marketplace_bots (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '',
    strategy text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'retired')),
    monthly_price numeric(10, 2) NOT NULL DEFAULT 0 CHECK (monthly_price >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bot_subscriptions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    bot_id bigint NOT NULL REFERENCES marketplace_bots (id) ON DELETE CASCADE,
    account_id bigint REFERENCES mt_accounts (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bot_subscriptions_user_bot_key UNIQUE (user_id, bot_id)
);

CREATE TABLE signal_providers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'retired')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE signals (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_id bigint NOT NULL REFERENCES signal_providers (id) ON DELETE CASCADE,
    symbol text NOT NULL CHECK (length(symbol) BETWEEN 1 AND 32),
    side text NOT NULL CHECK (side IN ('buy', 'sell')),
    entry_price numeric(20, 8) NOT NULL,
    stop_loss numeric(20, 8),
    take_profit numeric(20, 8),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE follows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider_id bigint NOT NULL REFERENCES signal_providers (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT follows_user_provider_key UNIQUE (user_id, provider_id)
);

CREATE TABLE reports (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('daily', 'weekly', 'monthly')),
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL CHECK (period_end > period_start),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    payload jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    body jsonb NOT NULL DEFAULT '{}',
    read_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
