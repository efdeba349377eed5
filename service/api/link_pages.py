"""The friendly pages a customer sees for a link that no longer (or never did) work.

Customers open these from e-mails and SMS: an HTML page in their language (the order's
locale when the link says whose it is, else the browser's Accept-Language), never a
problem+json document. 404 for a link that is not valid, 410 for one that has expired.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from service.api.keys import settings_key
from service.settings import REPO_ROOT

Problem = Literal["invalid", "expired", "gone"]
STATUS: dict[Problem, int] = {"invalid": 404, "expired": 410, "gone": 404}
# (title, text) per problem and locale; locales as the message templates have them.
TEXTS: dict[str, dict[Problem, tuple[str, str]]] = {
    "en": {
        "invalid": ("This link does not work", "Please check that you opened the whole link "
                    "from our message, or contact us and we will help."),
        "expired": ("This link has expired", "Links to a delivery work until some time after "
                    "it arrives. Contact us if you need anything about this order."),
        "gone": ("We cannot find this delivery", "Contact us and we will look it up for you."),
    },
    "es": {
        "invalid": ("Este enlace no funciona", "Comprueba que abriste el enlace completo de "
                    "nuestro mensaje, o escríbenos y te ayudaremos."),
        "expired": ("Este enlace ha caducado", "Los enlaces de un envío funcionan hasta un "
                    "tiempo después de la entrega. Escríbenos si necesitas algo de este pedido."),
        "gone": ("No encontramos este envío", "Escríbenos y lo buscaremos por ti."),
    },
    "de": {
        "invalid": ("Dieser Link funktioniert nicht", "Bitte prüfen Sie, ob Sie den ganzen "
                    "Link aus unserer Nachricht geöffnet haben, oder schreiben Sie uns."),
        "expired": ("Dieser Link ist abgelaufen", "Links zu einer Sendung gelten bis einige "
                    "Zeit nach der Zustellung. Schreiben Sie uns, wenn Sie Fragen haben."),
        "gone": ("Wir finden diese Sendung nicht", "Schreiben Sie uns, wir sehen nach."),
    },
    "pt-BR": {
        "invalid": ("Este link não funciona", "Confira se você abriu o link inteiro da nossa "
                    "mensagem, ou fale conosco que ajudamos."),
        "expired": ("Este link expirou", "Os links de uma entrega funcionam até algum tempo "
                    "depois dela. Fale conosco se precisar de algo sobre este pedido."),
        "gone": ("Não encontramos esta entrega", "Fale conosco que procuramos para você."),
    },
}

# The customer-facing pages (this one and the tracking page).
page_templates = SandboxedEnvironment(
    loader=FileSystemLoader(str(REPO_ROOT / "templates" / "pages")),
    autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
)


def _known(tag: str) -> str | None:
    tag = tag.strip()
    for locale in TEXTS:
        if tag.lower() == locale.lower():
            return locale
    language = tag.split("-")[0].lower()
    if language == "pt":
        return "pt-BR"
    return language if language in TEXTS else None


def page_locale(request: web.Request, locale: str | None = None) -> str:
    """The customer's locale when known, else the browser's best match, else English."""
    if locale:
        return _known(locale) or "en"
    wanted = []
    for index, part in enumerate(request.headers.get("Accept-Language", "")[:500].split(",")):
        tag, _, params = part.partition(";")
        try:
            weight = float(params.strip().removeprefix("q=")) if params else 1.0
        except ValueError:
            weight = 0.0
        wanted.append((-weight, index, tag))
    for _, _, tag in sorted(wanted):
        found = _known(tag)
        if found:
            return found
    return "en"


def link_page(request: web.Request, problem: Problem, locale: str | None = None
              ) -> web.Response:
    """The page for a link that cannot be followed (404 or 410)."""
    chosen = page_locale(request, locale)
    title, text = TEXTS[chosen][problem]
    html = page_templates.get_template("link.html.j2").render(
        locale=chosen, shop_name=request.app[settings_key].shop_name, title=title, text=text)
    return web.Response(text=html, status=STATUS[problem], content_type="text/html")
