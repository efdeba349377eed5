"""Render a notification moment to an e-mail (subject, HTML, text) or an SMS body.

One `Renderer` per process: it owns the Jinja environment, whose compiled-template cache
is what makes rendering cheap. Templates run sandboxed with `StrictUndefined` (a typo in a
template fails loudly instead of sending "Hi ,"). HTML is autoescaped; subject, text and SMS
are not, which is safe because customer data is only ever *substituted*, never compiled
as a template: a product called "{{ 7*7 }}" shows as those nine characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from workers.render.context import OPTIONAL_DEFAULTS, REQUIRED_KEYS, MessageContext
from workers.render.dates import FILTERS, FORMATTER_KEY, LocalFormatter
from workers.render.errors import ContextError, SmsTooLongError, TemplateMissingError
from workers.render.locales import DEFAULT_LOCALE, formatting_locale, locale_chain
from workers.render.segments import Encoding, count_segments, smart_encode

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

_RESOLVED_MAX = 4096
_MOMENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
# "bis 2. Okt.." : a sentence ending on an abbreviated date keeps a single full stop.
# Only a letter's double dot before a space, a tag or the end, so "../" in a URL is safe.
_DOUBLE_STOP = re.compile(r"(?<=[^\W\d_])\.\.(?=[\s<]|$)")


def tidy(text: str) -> str:
    """One full stop where an abbreviated date ends a sentence (messages and pages alike)."""
    return _DOUBLE_STOP.sub(".", text) if ".." in text else text


_tidy = tidy


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    locale_used: str


@dataclass(frozen=True, slots=True)
class RenderedSms:
    body: str
    segments: int
    encoding: Encoding
    locale_used: str
    shortened: bool = False


def _truncate(value: str | None, limit: int) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[: limit - 3].rstrip() + "..."


def _first_name(value: str | None, limit: int) -> str | None:
    if not value:
        return value
    return _truncate(value.split()[0], limit)


# Each step is tried in order until the SMS fits: drop the optional part only when the
# name alone cannot be shortened enough, and cut the shop name last (it says who writes).
_SMS_STEPS: tuple[tuple[bool, int | None, int | None], ...] = (
    # (compact, customer first-name limit, shop name limit)
    (False, None, None),
    (False, 15, None),
    (True, None, None),
    (True, None, 24),
    (True, None, 14),
)


class Renderer:
    """Renders moments for a channel and locale; build once, reuse for every message."""

    def __init__(self, templates_dir: Path | str | None = None, *, max_sms_segments: int = 2,
                 default_locale: str = DEFAULT_LOCALE) -> None:
        self.templates_dir = Path(templates_dir) if templates_dir else DEFAULT_TEMPLATES_DIR
        self.max_sms_segments = max_sms_segments
        self.default_locale = default_locale
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(self.templates_dir)),
            undefined=StrictUndefined,
            # Only the HTML templates are markup; escaping a subject or an SMS would show
            # "&amp;" to the customer.
            autoescape=lambda name: bool(name and name.endswith(".html.j2")),
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # templates ship with the code; no stat() per render
            # Unbounded: a plain dict (they are a few hundred, and ship with the code). An LRU
            # cache moves the name to its end on every lookup, a scan of all the names.
            cache_size=-1,
        )
        self.env.filters.update(FILTERS)
        self._inliner = css_inline.CSSInliner(load_remote_stylesheets=False)
        self._locales = {
            channel: sorted(p.name for p in (self.templates_dir / channel).iterdir()
                            if p.is_dir() and not p.name.startswith("_"))
            if (self.templates_dir / channel).is_dir() else []
            for channel in ("email", "sms")
        }
        # (moment, channel, locale, suffixes) -> the template locale that serves it: the
        # templates ship with the code, so a stat() per file per message is not needed.
        self._resolved: dict[tuple[str, str, str | None, tuple[str, ...]], str] = {}

    def locales(self, channel: str) -> list[str]:
        """Locales that have a template folder for `channel`."""
        return list(self._locales.get(channel, []))

    def _context(self, moment: str, given: MessageContext | Mapping[str, Any],
                 requested: str | None, used: str) -> dict[str, Any]:
        context = given.template_vars() if isinstance(given, MessageContext) else given
        missing = [key for key in REQUIRED_KEYS if context.get(key) in (None, "")]
        if missing:
            raise ContextError(moment, f"missing required context: {', '.join(missing)}")
        ctx = {**OPTIONAL_DEFAULTS, **{k: v for k, v in context.items() if v is not None}}
        date_locale = formatting_locale(requested, used)
        ctx["locale"] = date_locale
        ctx[FORMATTER_KEY] = LocalFormatter(date_locale, str(ctx["timezone"]))
        return ctx

    def warm(self) -> int:
        """Compile every template now (a worker calls this at start, so its first messages
        do not pay for it); the number compiled."""
        names = self.env.list_templates(filter_func=lambda name: name.endswith(".j2"))
        for name in names:
            self.env.get_template(name)
        return len(names)

    def _resolve(self, moment: str, channel: str, locale: str | None,
                 suffixes: tuple[str, ...]) -> str:
        key = (moment, channel, locale, suffixes)
        used = self._resolved.get(key)
        if used is None:
            used = self._find(moment, channel, locale, suffixes)
            if len(self._resolved) >= _RESOLVED_MAX:  # locales come from orders: bounded
                self._resolved.clear()
            self._resolved[key] = used
        return used

    def _find(self, moment: str, channel: str, locale: str | None,
              suffixes: tuple[str, ...]) -> str:
        if not _MOMENT_NAME.match(moment):
            raise TemplateMissingError(moment, channel, [])
        chain = locale_chain(locale, self._locales.get(channel, []), self.default_locale)
        for candidate in chain:
            if all((self.templates_dir / channel / candidate / f"{moment}{suffix}").is_file()
                   for suffix in suffixes):
                return candidate
        raise TemplateMissingError(moment, channel, chain)

    def _render(self, name: str, moment: str, ctx: Mapping[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(ctx)
        except UndefinedError as exc:
            raise ContextError(moment, f"{name}: {exc.message}") from exc
        except TemplateNotFound as exc:
            raise TemplateMissingError(moment, name.split("/")[0], [name]) from exc

    def render_email(self, moment: str, locale: str | None,
                     context: MessageContext | Mapping[str, Any]) -> RenderedEmail:
        """Subject, inlined-CSS HTML and plain text for `moment`, in the best locale available."""
        used = self._resolve(moment, "email", locale, (".subject.j2", ".html.j2", ".txt.j2"))
        ctx = self._context(moment, context, locale, used)
        base = f"email/{used}/{moment}"
        # A subject is one header line: newlines in data must not become header injection.
        subject = _tidy(" ".join(self._render(f"{base}.subject.j2", moment, ctx).split()))
        ctx["subject"] = subject
        html = self._inliner.inline(_tidy(self._render(f"{base}.html.j2", moment, ctx)))
        text = self._render(f"{base}.txt.j2", moment, ctx)
        text = _tidy(_BLANK_LINES.sub("\n\n", _TRAILING_SPACE.sub("\n", text))).strip() + "\n"
        return RenderedEmail(subject=subject, html=html, text=text, locale_used=used)

    def render_sms(self, moment: str, locale: str | None,
                   context: MessageContext | Mapping[str, Any]) -> RenderedSms:
        """An SMS body within `max_sms_segments`, shortened step by step when it would not fit."""
        used = self._resolve(moment, "sms", locale, (".txt.j2",))
        ctx = self._context(moment, context, locale, used)
        name = f"sms/{used}/{moment}.txt.j2"
        segments = 0
        for step, (compact, name_limit, shop_limit) in enumerate(_SMS_STEPS):
            attempt = dict(ctx, compact=compact)
            if name_limit is not None:
                attempt["customer_name"] = _first_name(ctx["customer_name"], name_limit)
            if shop_limit is not None:
                attempt["shop_name"] = _truncate(ctx["shop_name"], shop_limit)
            # SMS is one line; smart encoding keeps a typographic dash from a date format
            # from turning the whole message into UCS-2.
            body = _tidy(smart_encode(" ".join(self._render(name, moment, attempt).split())))
            info = count_segments(body)
            segments = info.segments
            if segments <= self.max_sms_segments:
                return RenderedSms(body=body, segments=segments, encoding=info.encoding,
                                   locale_used=used, shortened=step > 0)
        raise SmsTooLongError(moment, used, segments, self.max_sms_segments)
