"""The shop's name, logo and colour, and the colours derived from it that keep every text
readable (WCAG contrast of at least 4.5:1)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from service.settings import Settings

MIN_CONTRAST = 4.5
WHITE, INK = "#ffffff", "#1f2933"


def _linear(channel: int) -> float:
    c = channel / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _linear(r) + 0.7152 * _linear(g) + 0.0722 * _linear(b)


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours (1 to 21)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def darkened(hex_colour: str, against: str = WHITE) -> str:
    """`hex_colour`, darkened just enough to reach MIN_CONTRAST on `against`."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    for step in range(101):
        k = 1 - step / 100
        candidate = f"#{round(r * k):02x}{round(g * k):02x}{round(b * k):02x}"
        if contrast(candidate, against) >= MIN_CONTRAST:
            return candidate
    return "#000000"


@dataclass(frozen=True)
class Branding:
    name: str
    logo_url: str | None
    brand: str  # the shop's colour (header band, progress), darkened if no text reads on it
    on_brand: str  # text on the brand colour: white or our ink, whichever reads better
    ink: str  # the brand colour as text or links on white, darkened to 4.5:1 if needed


@cache
def _derived(name: str, logo_url: str | None, brand: str) -> Branding:
    on_brand = WHITE if contrast(WHITE, brand) >= contrast(INK, brand) else INK
    band = brand
    if contrast(on_brand, brand) < MIN_CONTRAST:  # a mid-tone: neither text colour reads
        band, on_brand = darkened(brand), WHITE
    return Branding(name, logo_url, band, on_brand, darkened(brand))


def branding(settings: Settings) -> Branding:
    logo = str(settings.shop_logo_url) if settings.shop_logo_url else None
    return _derived(settings.shop_name, logo, settings.shop_brand_color.lower())


# The pages' fixed colours (templates/pages/_layout.html.j2 reads them from here), and the
# pairs that must reach MIN_CONTRAST as text on background (a test checks every pair).
PALETTE: dict[str, str] = {
    "text": INK, "muted": "#52606d", "background": "#f5f7fa", "card": WHITE,
    "rule": "#d9e2ec", "field": "#7b8794", "notice_text": "#5c2d00", "notice_bg": "#fff4e5",
    "notice_edge": "#b45309", "error_text": "#8a1c1c", "error_bg": "#fdecea",
}
TEXT_PAIRS = (("text", "background"), ("text", "card"), ("muted", "card"),
              ("muted", "background"), ("notice_text", "notice_bg"),
              ("error_text", "error_bg"))
