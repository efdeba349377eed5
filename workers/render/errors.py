"""Typed rendering failures: the caller decides whether a notification is dropped or fixed."""

from __future__ import annotations


class RenderError(Exception):
    """Base class: this notification could not be rendered."""


class TemplateMissingError(RenderError):
    """No locale in the fallback chain has a template for this moment and channel."""

    def __init__(self, moment: str, channel: str, tried: list[str]) -> None:
        super().__init__(f"no {channel} template for moment {moment!r} (tried {tried or 'nothing'})")
        self.moment = moment
        self.channel = channel
        self.tried = tried


class ContextError(RenderError):
    """The render context lacks a required variable or a template used an undefined one."""

    def __init__(self, moment: str, problem: str) -> None:
        super().__init__(f"{moment}: {problem}")
        self.moment = moment
        self.problem = problem


class SmsTooLongError(RenderError):
    """Even the most compact form of an SMS needs more segments than allowed."""

    def __init__(self, moment: str, locale: str, segments: int, limit: int) -> None:
        super().__init__(f"{moment}/{locale}: SMS needs {segments} segments (limit {limit})")
        self.moment = moment
        self.locale = locale
        self.segments = segments
        self.limit = limit
