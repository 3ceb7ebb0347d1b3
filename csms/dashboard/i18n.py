"""The dashboard's languages: English (the source strings) and Simplified Chinese.

Strings are marked in the templates (`{% trans %}`, `_()`) and in Python (`_` below, a
no-op marker, translated when rendered), extracted by Babel into
`locale/messages.pot` and translated in `locale/<lang>/LC_MESSAGES/messages.po`. The `.po`
files are read with Babel at start (no compiled `.mo` to keep in step). The language is
the visitor's choice (the `csms_lang` cookie, set by the switch in the header), else the
best match of the browser's Accept-Language, else English.
"""

from __future__ import annotations

from functools import cache
from gettext import NullTranslations
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
COOKIE = "csms_lang"
# code -> the language's name in itself, for the switch
LANGUAGES = {"en": "English", "zh-CN": "简体中文"}
DEFAULT = "en"


def _(message: str) -> str:
    """Marks a string in Python code for extraction; the template translates it."""
    return message


@cache
def translations(language: str) -> NullTranslations:
    if language == DEFAULT:
        return NullTranslations()
    path = LOCALE_DIR / language.replace("-", "_") / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale=language.replace("-", "_"))
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The visitor's language: the cookie's if it names one we have, else the first of the
    browser's preferences we have (zh, zh-CN, zh-Hans... all mean Simplified Chinese
    here; zh-TW and zh-HK do not), else English."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for i, item in enumerate((accept_language or "")[:512].split(",")[:20]):
        tag, _sep, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        ranked.append((-q, i, tag.strip().lower()))
    for _q, _i, tag in sorted(ranked):
        if tag in ("zh", "zh-cn", "zh-hans", "zh-hans-cn", "zh-sg"):
            return "zh-CN"
        if tag == "en" or tag.startswith("en-"):
            return "en"
    return DEFAULT
