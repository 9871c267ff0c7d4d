"""Simplified Chinese is first-class: every string of the templates, the Python code and the page's scripts is
marked for translation, extracted into locale/zh_Hans, translated, and compiled; a new English string fails here.
"""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.template.base import Lexer, TokenType

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES"
DOMAINS = ("django", "djangojs")
TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
SCRIPTS = sorted(p for p in (ROOT / "chat" / "static" / "chat").glob("*.js"))

# Words that are the same in both languages: names, protocols, formats, keys.
SAME_IN_BOTH = {
    "DeepSeek", "API", "APIs", "JSON", "NDJSON", "CSV", "SSE", "OpenAI", "OpenAPI", "Bearer", "CSRF", "URL",
    "HTTP", "md", "json", "Ctrl", "Shift", "Enter", "Esc", "curl", "Python", "httpx", "openai",
}  # fmt: skip
_PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")
WORD = re.compile(r"[A-Za-z][A-Za-z'\u2019-]+")


def _catalog(domain: str) -> polib.POFile:
    path = LOCALE / f"{domain}.po"
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run `make messages` and translate it"
    return polib.pofile(str(path))


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_string_is_translated(domain: str):
    """No entry is left empty or fuzzy, so no English shows on a Chinese page."""
    catalog = _catalog(domain)
    assert len(catalog) > 20
    untranslated = [entry.msgid for entry in catalog if not entry.translated() or entry.fuzzy or entry.obsolete]
    assert untranslated == [], f"untranslated in {domain}.po: {untranslated[:20]}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_placeholders_survive_translation(domain: str):
    """A translation keeps every %(name)s of its English, or the page would show a raw placeholder or crash."""
    wrong = []
    for entry in _catalog(domain):
        forms = [entry.msgstr] if not entry.msgid_plural else list(entry.msgstr_plural.values())
        expected = set(re.findall(r"%\(\w+\)[sd]", entry.msgid + entry.msgid_plural))
        for form in forms:
            if set(re.findall(r"%\(\w+\)[sd]", form)) - expected or (
                expected and not set(re.findall(r"%\(\w+\)[sd]", form))
            ):
                wrong.append((entry.msgid, form))
    assert wrong == []


@pytest.mark.parametrize("domain", DOMAINS)
def test_compiled_catalogs_match_the_translations(domain: str):
    """The committed .mo files are compiled from the .po files as they are (`make messages` compiles)."""
    with (LOCALE / f"{domain}.mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for entry in _catalog(domain):
        if entry.msgid_plural:
            got = [compiled.ngettext(entry.msgid, entry.msgid_plural, n) for n in (1, 2)]
            if got[0] != entry.msgstr_plural[0]:
                stale.append(entry.msgid)
        elif entry.msgctxt:
            if compiled.pgettext(entry.msgctxt, entry.msgid) != entry.msgstr:
                stale.append(entry.msgid)
        elif compiled.gettext(entry.msgid) != entry.msgstr:
            stale.append(entry.msgid)
    assert stale == [], f"{domain}.mo is older than {domain}.po: run `make messages`"


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="gettext's xgettext is not installed")
def test_the_catalogs_hold_every_string_of_the_code(tmp_path: Path):
    """Extracting again from the sources finds no string the catalogs lack (a new string must be translated)."""
    for part in ("chat", "chatsite", "templates", "manage.py"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part, ignore=shutil.ignore_patterns("vendor", "__pycache__"))
        else:
            shutil.copy(source, tmp_path / part)
    (tmp_path / "locale").mkdir()
    for domain in DOMAINS:
        subprocess.run(
            [sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", "-d", domain, "--no-location"],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            env={"PATH": "/usr/bin:/bin", "DJANGO_SECRET_KEY": "x" * 50},
        )
        fresh = {
            (e.msgctxt, e.msgid) for e in polib.pofile(str(tmp_path / "locale/zh_Hans/LC_MESSAGES" / f"{domain}.po"))
        }
        known = {(e.msgctxt, e.msgid) for e in _catalog(domain)}
        assert sorted(m for _, m in fresh - known) == [], f"new strings not in {domain}.po: run `make messages`"


class _VisibleText(HTMLParser):
    """The text a reader sees in a piece of template (and the attributes read aloud), outside code."""

    ATTRIBUTES = {"placeholder", "aria-label", "title", "alt", "label"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"code", "pre", "script", "style"}:
            self.skipping += 1
        self.found += [value for name, value in attrs if name in self.ATTRIBUTES and value]

    def handle_endtag(self, tag: str) -> None:
        if tag in {"code", "pre", "script", "style"} and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.found.append(data)


def _english_words(text: str) -> list[str]:
    return [word for word in WORD.findall(text) if word not in SAME_IN_BOTH]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT / "templates")))
def test_templates_have_no_untranslated_text(template: Path):
    """Every sentence of a template is inside {% translate %} or {% blocktranslate %}."""
    inside_block = False
    in_attribute = False  # a block that the base template puts inside an attribute (class names)
    kept: list[str] = []  # the template's own text; tags and variables become a neutral mark
    for token in Lexer(template.read_text()).tokenize():
        if token.token_type == TokenType.BLOCK:
            name, *rest = token.contents.split()
            inside_block = name in {"blocktranslate", "blocktrans", "plural"} or (
                inside_block and name not in {"endblocktranslate", "endblocktrans"}
            )
            if name == "block":
                in_attribute = rest[:1] == ["body_class"]
            elif name == "endblock":
                in_attribute = False
            kept.append("0")
        elif token.token_type == TokenType.TEXT and not inside_block and not in_attribute:
            kept.append(token.contents)
        elif token.token_type == TokenType.VAR:
            kept.append("0")
    parser = _VisibleText()
    parser.feed("".join(kept))
    assert [text.strip() for text in parser.found if _english_words(text)] == []


_LITERAL = re.compile(r"""(?P<q>["'`])(?P<body>(?:\\.|(?!(?P=q)).)*?)(?P=q)""", re.S)
_REGEX_LITERAL = re.compile(
    r"""(?<=[(,=:\[!&|?{};])(\s*)/(?![/*])(?:\\.|\[(?:\\.|[^\]\n])*\]|[^/\n\\\[])+/[dgimsuy]*"""
)
_COMMENT = re.compile(r"^\s*//[^\n]*$|/\*.*?\*/", re.M | re.S)
_TRANSLATED_BEFORE = re.compile(r"(?:gettext|ngettext|pgettext)\(\s*(?:[\"'][^\"']*[\"'],\s*)?$")
_PROSE = re.compile(r"[A-Za-z]{2,}(?:[ ,;:]+0)*[ ,;:]+[A-Za-z]{2,}|[A-Za-z]{2,}[.…!?]$|^[A-Z][a-z]+$")
# Literals that are code although they read like words: key names, attribute values.
_CODE_LITERALS = {
    "Escape",
    "Enter",
    "Home",
    "End",
    "ArrowUp",
    "ArrowDown",
    "PageUp",
    "PageDown",
    "Tab",
    "noopener noreferrer nofollow",
}
_SELECTOR = re.compile(r"[#\[\]>=]|^\.|^[a-z-]+(?:\.[a-z-]+)+$|^[a-z][\w.-]*(?:\s*,\s*[a-z][\w.-]*)+$")
# Messages for developers (thrown errors, the console) are not the page's text.
_FOR_DEVELOPERS_BEFORE = re.compile(r"(?:new Error|console\.\w+)\(\s*$")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_have_no_untranslated_text(script: Path):
    """A sentence or word the page shows comes from gettext(); prose-like literals anywhere else fail."""
    source = _REGEX_LITERAL.sub(r"\1/re/", _COMMENT.sub("", script.read_text()))
    untranslated = []
    for match in _LITERAL.finditer(source):
        body = re.sub(r"\$\{[^}]*\}", "0", match["body"]).strip()
        if body in _CODE_LITERALS or not _PROSE.search(body) or _SELECTOR.search(body) or not _english_words(body):
            continue  # a key, a class name, an event type, a selector
        before = source[max(0, match.start() - 200) : match.start()]
        if _TRANSLATED_BEFORE.search(before) or _FOR_DEVELOPERS_BEFORE.search(before):
            continue
        untranslated.append(match["body"])
    assert untranslated == []
