"""Rendering the customer's pages: one Jinja environment, the shop's branding, safe headers."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from aiohttp.web_request import FileField
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from multidict import MultiDict, MultiDictProxy

from service.api.keys import settings_key
from service.limits import scrub
from service.pages.branding import PALETTE, branding
from service.pages.catalogue import Strings, negotiate, strings_for
from service.settings import REPO_ROOT

# Our own templates only (never customer data as a template), so no sandbox; autoescaped.
pages = Environment(
    loader=FileSystemLoader(str(REPO_ROOT / "templates" / "pages")), autoescape=True,
    undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, auto_reload=False,
)
# A tracking link is a bearer token in the URL: never leak it to the logo's host; no
# scripts at all (the pages need none).
HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'none'; img-src https: http: data:; "
                                "style-src 'unsafe-inline'; form-action 'self'; "
                                "base-uri 'none'; frame-ancestors 'none'"),
}


def reader_strings(request: web.Request, locale: str | None = None) -> Strings:
    """The customer's locale when we know it, else what their browser asks for."""
    return strings_for(locale or request.query.get("lang")
                       or negotiate(request.headers.get("Accept-Language")))


def render(request: web.Request, template: str, strings: Strings, *, status: int = 200,
           **context: Any) -> web.Response:
    settings = request.app[settings_key]
    html = pages.get_template(template).render(
        t=strings, lang=strings.locale, brand=branding(settings), palette=PALETTE, **context)
    return web.Response(text=html, status=status, content_type="text/html", headers=HEADERS)


LinkProblem = Literal["invalid", "expired", "gone"]
# (status, catalogue key): 404 for a link that is not valid or whose delivery is gone, 410
# for one that has expired.
_LINK_PROBLEMS: dict[LinkProblem, tuple[int, str]] = {
    "invalid": (404, "not_found"), "expired": (410, "expired"), "gone": (404, "gone")}


def link_problem(request: web.Request, problem: LinkProblem, locale: str | None = None
                 ) -> web.Response:
    """A link we cannot open: a friendly page in the customer's language (the order's when
    the link says whose it is, else the browser's), never JSON."""
    status, key = _LINK_PROBLEMS[problem]
    strings = reader_strings(request, locale)
    return render(request, "message.html.j2", strings, status=status,
                  title=strings(f"{key}_title"), text=strings(f"{key}_text"),
                  lookup_url=f"/track?lang={strings.locale}")


async def form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """A posted form, its text made storable (what PostgreSQL cannot store becomes U+FFFD,
    so a lookup simply finds nothing); an empty one when the body is not a form we can read
    (a page answers with its own words, never a 500)."""
    try:
        posted = await request.post()
    except (ValueError, UnicodeDecodeError, AssertionError):
        return MultiDictProxy(MultiDict())
    return MultiDictProxy(MultiDict(
        (scrub(key), scrub(value) if isinstance(value, str) else value)
        for key, value in posted.items()))
