"""Every piece of app state, behind one typed key each."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis

from service.api.metrics import Metrics
from service.clock import Clock
from service.eta.runtime import EtaRuntime
from service.security.api_keys import KeyCache
from service.settings import Settings
from service.store.quality import QualityBuffer
from service.tracking.coalescer import IngestCoalescer

settings_key = web.AppKey("settings", Settings)
clock_key = web.AppKey("clock", Clock)
pool_key = web.AppKey("pool", asyncpg.Pool)
redis_key = web.AppKey("redis", ArqRedis)
metrics_key = web.AppKey("metrics", Metrics)
key_cache_key = web.AppKey("key_cache", KeyCache)
coalescer_key = web.AppKey("coalescer", IngestCoalescer)
eta_key = web.AppKey("eta", EtaRuntime)
quality_key = web.AppKey("quality", QualityBuffer)
