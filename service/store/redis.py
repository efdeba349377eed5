"""An arq Redis client that connects lazily, so Redis being down never blocks start-up."""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings


def redis_settings(redis_url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_timeout = 2
    return settings


def arq_client(redis_url: str, queue_name: str) -> ArqRedis:
    s = redis_settings(redis_url)
    return ArqRedis(
        host=s.host, port=s.port, unix_socket_path=s.unix_socket_path, db=s.database,
        username=s.username, password=s.password, ssl=s.ssl,
        socket_connect_timeout=s.conn_timeout, socket_timeout=5,
        default_queue_name=queue_name,
    )
