"""Every piece of app state, behind one typed key each."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis

from service.auth import KeyCache
from service.clock import Clock
from service.coalescer import IngestCoalescer
from service.eta import EtaRuntime
from service.metrics import Metrics
from service.settings import Settings

settings_key = web.AppKey("settings", Settings)
clock_key = web.AppKey("clock", Clock)
pool_key = web.AppKey("pool", asyncpg.Pool)
redis_key = web.AppKey("redis", ArqRedis)
metrics_key = web.AppKey("metrics", Metrics)
key_cache_key = web.AppKey("key_cache", KeyCache)
coalescer_key = web.AppKey("coalescer", IngestCoalescer)
eta_key = web.AppKey("eta", EtaRuntime)
