"""Keep the translation catalogues in step with the marked strings.

    python -m csms.dashboard.catalogue

extracts every marked string of the templates and the dashboard's Python into
`locale/messages.pot` and merges it into each language's `messages.po` (new strings come
in untranslated, gone ones are dropped). A test fails while any string lacks a
translation, so a page cannot ship half in English.
"""

from __future__ import annotations

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from csms.dashboard.i18n import DEFAULT, LANGUAGES, LOCALE_DIR

HERE = LOCALE_DIR.parent
METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}


def extract() -> Catalog:
    catalog = Catalog(project="ocpp-csms dashboard", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        HERE, METHODS, OPTIONS, strip_comment_tags=True
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments,
                    context=context)
    return catalog


def po_path(language: str) -> str:
    return str(LOCALE_DIR / language.replace("-", "_") / "LC_MESSAGES" / "messages.po")


def main() -> None:
    template = extract()
    with (LOCALE_DIR / "messages.pot").open("wb") as f:
        write_po(f, template, omit_header=True, sort_output=True, width=100)
    for language in LANGUAGES:
        if language == DEFAULT:
            continue
        path = po_path(language)
        try:
            with open(path, "rb") as f:
                catalog = read_po(f, locale=language.replace("-", "_"))
        except FileNotFoundError:
            catalog = Catalog(locale=language.replace("-", "_"))
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        with open(path, "wb") as f:
            write_po(f, catalog, omit_header=True, sort_output=True, width=100,
                     include_previous=False)
        missing = [m.id for m in catalog if m.id and not m.string]
        print(f"{language}: {len(catalog)} strings, {len(missing)} untranslated")


if __name__ == "__main__":
    main()
