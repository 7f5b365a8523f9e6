"""Text normalization: unicode and mojibake repair (ftfy), markup stripping, whitespace."""

from __future__ import annotations

import html
import re
import unicodedata

from kubetune.api.dataset import Cleaning

_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_DROP_BLOCKS = re.compile(r"<(script|style|noscript)\b[^>]*>.*?</\1\s*>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BLOCK_TAGS = re.compile(r"</?(p|div|br|li|ul|ol|tr|h[1-6]|section|article|table)\b[^>]*>", re.I)
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]{2,}|[\t\u00a0\u2000-\u200b\u3000]")
_TRAILING = re.compile(r" *\n *")
_BLANKS = re.compile(r"\n{3,}")


def fix_unicode(text: str) -> str:
    """Repair mojibake and normalize to NFC (ASCII text is returned as is, cheaply)."""
    if text.isascii():
        return text
    import ftfy

    return unicodedata.normalize("NFC", ftfy.fix_text(text, unescape_html=False))


def strip_html(text: str) -> str:
    """Remove tags, comments, scripts and styles; unescape entities."""
    if "<" in text and _TAG.search(text):
        text = _DROP_BLOCKS.sub(" ", text)
        text = _COMMENT.sub(" ", text)
        text = _BLOCK_TAGS.sub("\n", text)
        text = _TAG.sub("", text)
    if "&" in text and _ENTITY.search(text):
        text = html.unescape(text)
    return text


def normalize_whitespace(text: str) -> str:
    """Collapse runs of spaces, trim lines, keep at most one blank line between paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    if "\n" in text:
        text = _TRAILING.sub("\n", text)
        text = _BLANKS.sub("\n\n", text)
    return text.strip()


class TextCleaner:
    """Applies the text transforms a :class:`Cleaning` spec turns on."""

    def __init__(self, spec: Cleaning) -> None:
        self.spec = spec

    def __call__(self, text: str) -> str:
        if self.spec.normalize_unicode:
            text = fix_unicode(text)
        if self.spec.strip_html:
            text = strip_html(text)
        if self.spec.normalize_whitespace:
            text = normalize_whitespace(text)
        return text

    def length_problem(self, text: str) -> str | None:
        """The length bound ``text`` violates (``too_short_chars``...), or None."""
        spec = self.spec
        n = len(text)
        if spec.min_chars is not None and n < spec.min_chars:
            return "too_short_chars"
        if spec.max_chars is not None and n > spec.max_chars:
            return "too_long_chars"
        if spec.min_words is not None or spec.max_words is not None:
            words = len(text.split())
            if spec.min_words is not None and words < spec.min_words:
                return "too_short_words"
            if spec.max_words is not None and words > spec.max_words:
                return "too_long_words"
        return None
