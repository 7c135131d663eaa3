"""Typed keys for the objects the API shares across handlers (aiohttp AppKey)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from algoedge.config import ApiSettings
from algoedge.db import Database

SETTINGS = web.AppKey("settings", ApiSettings)
DATABASE = web.AppKey("database", Database)
REDIS = web.AppKey("redis", Redis)
