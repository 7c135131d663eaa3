"""Typed keys for the objects the API shares across handlers (aiohttp AppKey, request keys)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from algoedge.api.bridge_wake import BridgeWake
from algoedge.auth import Claims, Passwords, PrefetchedSession, Sessions
from algoedge.cache import CachedUser
from algoedge.config import ApiSettings
from algoedge.credentials import CredentialsCipher
from algoedge.db import Database
from algoedge.jobs.queue import JobQueue
from algoedge.listings import Listings
from algoedge.outbox import Outbox
from algoedge.ratelimit import RateLimiter
from algoedge.realtime import Sockets

SETTINGS = web.AppKey("settings", ApiSettings)
DATABASE = web.AppKey("database", Database)
REDIS = web.AppKey("redis", Redis)
SESSIONS = web.AppKey("sessions", Sessions)
LIMITER = web.AppKey("limiter", RateLimiter)
CIPHER = web.AppKey("cipher", CredentialsCipher)
SOCKETS = web.AppKey("sockets", Sockets)
OUTBOX = web.AppKey("outbox", Outbox)
LISTINGS = web.AppKey("listings", Listings)
JOBS = web.AppKey("jobs", JobQueue)
BRIDGE_WAKE = web.AppKey("bridge_wake", BridgeWake)
PASSWORDS = web.AppKey("passwords", Passwords)

# Per-request values set by the middlewares.
USER: web.RequestKey[CachedUser] = web.RequestKey("user", CachedUser)
CLAIMS: web.RequestKey[Claims] = web.RequestKey("claims", Claims)
#: The session and user entries the rate-limit check read for the identity middleware.
PREFETCHED_SESSION: web.RequestKey[PrefetchedSession] = web.RequestKey(
    "prefetched_session", PrefetchedSession
)
