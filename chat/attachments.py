"""Files users attach: which kinds are read, their text, and the limits, each refusal naming the limit.

DeepSeek's chat models read text, so a file is turned into text once, when it arrives: text and code
as they are (UTF-8, or GB18030 as Chinese Windows writes it), PDF pages with pypdf, Word documents
with python-docx. The model reads that text (chat.prompt); the file itself is only ever downloaded.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils import formats
from django.utils.translation import gettext

from chat.models import Attachment

logger = logging.getLogger(__name__)

# Extensions read as plain text: prose, data and the code people paste into a chat.
TEXT_EXTENSIONS = frozenset(
    """
    txt text md markdown rst org tex log csv tsv json jsonl ndjson yaml yml toml ini cfg conf env xml html htm
    css scss less svg py pyi ipynb js mjs cjs ts tsx jsx vue svelte java kt kts scala go rs c h cc cpp cxx hpp hh
    cs fs vb swift m mm rb php pl pm lua r jl dart ex exs erl hs clj sql sh bash zsh fish ps1 bat cmd
    dockerfile makefile gradle properties proto graphql gql diff patch srt vtt
    """.split()
)
# Extensionless files people attach by name.
TEXT_NAMES = frozenset({"dockerfile", "makefile", "readme", "license", "procfile", "gemfile", "rakefile"})
PDF_EXTENSIONS = frozenset({"pdf"})
DOCX_EXTENSIONS = frozenset({"docx"})
# The file input's `accept`: what the page offers to pick.
ACCEPT = ",".join(f".{ext}" for ext in sorted(TEXT_EXTENSIONS | PDF_EXTENSIONS | DOCX_EXTENSIONS))

CONTENT_TYPES = {
    Attachment.Kind.PDF: "application/pdf",
    Attachment.Kind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


class Refused(Exception):
    """A file the site will not take, with a code for programs and a sentence naming the limit.

    Its HTTP status comes from its code, where every refusal's does (chat.api.service_status).
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Reading:
    """What was read from a file: its kind, content type, text and pages (PDF only)."""

    kind: str
    content_type: str
    text: str
    pages: int | None = None


def _number(value: int) -> str:
    return formats.number_format(value, force_grouping=True)


def kind_of(name: str) -> str | None:
    """The kind of file a name says it is, or None for a type the site does not read."""
    path = PurePath(name.lower())
    extension = path.suffix.lstrip(".")
    if extension in PDF_EXTENSIONS:
        return Attachment.Kind.PDF
    if extension in DOCX_EXTENSIONS:
        return Attachment.Kind.DOCX
    if extension in TEXT_EXTENSIONS or (not extension and path.name in TEXT_NAMES):
        return Attachment.Kind.TEXT
    return None


def clean_name(name: str) -> str:
    """The file's own name without any folder, control characters or surrogates, at most 255 characters."""
    base = PurePath(name.replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF).strip()
    if len(base) > 255:
        stem, dot, extension = base.rpartition(".")
        base = f"{stem[: 254 - len(extension)]}.{extension}" if dot and len(extension) < 20 else base[:255]
    return base or "file"


def _sizes(size: int, limit: int) -> dict[str, str]:
    """Both sizes readably (97.7 KB), or in bytes where rounding would make them look the same."""
    readable = {"size": filesizeformat(size), "limit": filesizeformat(limit)}
    if readable["size"] == readable["limit"]:
        return {"size": f"{_number(size)} B", "limit": f"{_number(limit)} B"}
    return readable


def check_size(size: int) -> None:
    """Refuse a file over the size limit before reading it."""
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    if size > limit:
        raise Refused(
            "attachment_too_large",
            gettext("This file is %(size)s; files of at most %(limit)s can be attached.") % _sizes(size, limit),
        )
    if size == 0:
        raise Refused("attachment_empty", gettext("This file is empty."))


def _refuse_type(name: str) -> Refused:
    return Refused(
        "attachment_type",
        gettext(
            "Files of this type (%(name)s) cannot be attached: attach text, Markdown, code, CSV or JSON, "
            "a PDF or a Word document (.docx)."
        )
        % {"name": name},
    )


def _no_text() -> Refused:
    return Refused("attachment_empty", gettext("No text could be read from this file (a scanned PDF has none)."))


def _decoded(data: bytes) -> str:
    """A text file's characters: UTF-8 (with or without BOM), or GB18030 as Chinese Windows saves text."""
    if b"\x00" in data[:8192]:
        raise Refused("attachment_type", gettext("This file is not text, although its name says so."))
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise Refused(
        "attachment_broken", gettext("This file's text could not be read: save it as UTF-8 and attach it again.")
    )


def _pdf_text(data: bytes) -> tuple[str, int]:
    """A PDF's text, page by page; encrypted, broken and over-long PDFs are refused."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise Refused(
                "attachment_encrypted",
                gettext("This PDF is protected by a password; remove the protection and attach it again."),
            )
        count = len(reader.pages)
        limit = settings.CHAT_ATTACHMENT_MAX_PAGES
        if count > limit:
            raise Refused(
                "attachment_too_many_pages",
                gettext("This PDF has %(pages)s pages; PDFs of at most %(limit)s pages can be attached.")
                % {"pages": _number(count), "limit": _number(limit)},
            )
        texts = [(page.extract_text() or "").strip() for page in reader.pages]
    except Refused:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        logger.info("unreadable PDF: %s", type(exc).__name__)
        raise Refused(
            "attachment_broken", gettext("This PDF is damaged or not a PDF, so its text could not be read.")
        ) from exc
    if not any(texts):
        raise _no_text()
    return "\n\n".join(f"[Page {number}]\n{text}" for number, text in enumerate(texts, start=1)), count


def _docx_text(data: bytes) -> str:
    """A Word document's paragraphs and tables as text; anything that is not a .docx is refused."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
        lines = [paragraph.text for paragraph in document.paragraphs]
        for table in document.tables:
            lines += [" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows]
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        logger.info("unreadable DOCX: %s", type(exc).__name__)
        raise Refused(
            "attachment_broken",
            gettext("This Word document is damaged or not a .docx file, so its text could not be read."),
        ) from exc
    return "\n".join(lines)


def read(*, name: str, data: bytes) -> Reading:
    """The text of an uploaded file, or Refused saying which limit or rule it breaks."""
    check_size(len(data))
    kind = kind_of(name)
    if kind is None:
        raise _refuse_type(name)
    pages = None
    if kind == Attachment.Kind.PDF:
        text, pages = _pdf_text(data)
    elif kind == Attachment.Kind.DOCX:
        text = _docx_text(data)
    else:
        text = _decoded(data)
    limit = settings.CHAT_ATTACHMENT_MAX_CHARS
    if len(text) <= limit:  # a NUL or a lone surrogate (from a PDF) would break JSON and the database
        text = "".join(ch for ch in text if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF)
    if not text.strip():
        raise _no_text()
    if len(text) > limit:
        raise Refused(
            "attachment_too_long",
            gettext("This file holds %(chars)s characters of text; files of at most %(limit)s can be attached.")
            % {"chars": _number(len(text)), "limit": _number(limit)},
        )
    content_type = CONTENT_TYPES.get(kind, "text/plain")
    return Reading(kind=kind, content_type=content_type, text=text, pages=pages)


def too_many_detail() -> str:
    """The refusal of a message with more files than allowed."""
    limit = settings.CHAT_ATTACHMENTS_PER_MESSAGE
    return gettext("A message can carry at most %(limit)s files.") % {"limit": _number(limit)}


def context_block(attachment: Attachment, text: str, *, cut_from: int | None = None) -> str:
    """A file's text as the model reads it: a header naming it, the text, and where it ends (or was cut)."""
    pages = f", {attachment.pages} pages" if attachment.pages else ""
    header = f'<file name="{attachment.name}"{pages}>'
    note = f"\n[The file was cut here to fit the context: {len(text)} of {cut_from} characters.]" if cut_from else ""
    return f"{header}\n{text}{note}\n</file>"
