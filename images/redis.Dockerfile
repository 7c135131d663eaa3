# A tenant's managed Redis, from Debian's redis-server (7.0) on the local base (images/build.sh).
# Laid out as the operator's Redis StatefulSet expects (algoedge_operator.builders.redis):
# `args: [/etc/redis/redis.conf]` after the ENTRYPOINT, redis-cli on PATH for the readiness
# probe, UID 999 (REDIS_UID), data in /data, a read-only root filesystem. Debian's /etc/redis (mode
# 0750, its own redis user) goes: the operator mounts redis.conf and auth/ there.
ARG BASE_IMAGE=localhost/algoedge-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && mkdir -p /data && chown 999:999 /data \
    && rm -rf /etc/redis && mkdir -p /etc/redis
USER 999:999
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["redis-server"]
