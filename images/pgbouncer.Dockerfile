# A tenant's pgBouncer, from Debian's pgbouncer (1.18: SCRAM with plain-text userlist entries)
# on the local base (images/build.sh). The operator's Deployment runs
# `command: [pgbouncer, /etc/pgbouncer/pgbouncer.ini]` as UID 70 (PGBOUNCER_UID) with a
# read-only root filesystem; the config sets no pid file, logs to stderr, and /tmp is an emptyDir.
ARG BASE_IMAGE=localhost/algoedge-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
USER 70:70
WORKDIR /tmp
EXPOSE 6432
ENTRYPOINT []
CMD ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
