-- Redis keys whose delete failed because Redis was unreachable from the pod that needed it gone
-- (a revoked session, a renamed user). Every API pod drains this table once Redis answers, so the
-- invalidation survives the pod that recorded it. Usually empty.
CREATE TABLE cache_invalidations (
    key text PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
