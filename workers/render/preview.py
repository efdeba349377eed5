"""`parcelcast templates preview`: render a moment with realistic sample data."""

from __future__ import annotations

from pathlib import Path

from workers.render.moments import Channel
from workers.render.render import Renderer
from workers.render.samples import sample_context


def preview(moment: str, channel: Channel, locale: str, out: Path | str | None = None,
            *, renderer: Renderer | None = None) -> str:
    """A human-readable preview of one moment, channel and locale.

    E-mail: the subject, the locale actually used and the plain-text part; with `out`, the
    inlined HTML is written there (a folder gets `<moment>.<locale>.html`) so it can be
    opened in a browser. SMS: the body with its encoding and segment count; with `out`, the
    body is written there. Returns the preview text either way.
    """
    renderer = renderer or Renderer()
    context = sample_context(moment)
    if channel == "sms":
        sms = renderer.render_sms(moment, locale, context)
        text = (f"SMS {moment} [{sms.locale_used}] {sms.encoding}, {sms.segments} segment(s)"
                f"{' (shortened)' if sms.shortened else ''}\n\n{sms.body}\n")
        if out is not None:
            _target(Path(out), moment, sms.locale_used, "sms.txt").write_text(sms.body + "\n")
        return text
    email = renderer.render_email(moment, locale, context)
    text = f"Subject: {email.subject}\nLocale: {email.locale_used}\n\n{email.text}"
    if out is not None:
        target = _target(Path(out), moment, email.locale_used, "html")
        target.write_text(email.html)
        text += f"\n(HTML written to {target})\n"
    return text


def _target(out: Path, moment: str, locale: str, suffix: str) -> Path:
    if out.is_dir():
        return out / f"{moment}.{locale}.{suffix}"
    out.parent.mkdir(parents=True, exist_ok=True)
    return out
