"""PII redaction with typed placeholders: <EMAIL>, <PHONE>, <IP>, <CREDIT_CARD>, <IBAN>, <SECRET>.

Credit card numbers must pass the Luhn check and IBANs the ISO 13616 mod-97 check, so order
numbers and other digit runs stay. Secrets cover well-known key formats (AWS, GitHub, Slack,
OpenAI-style ``sk-``, Google, JWTs, PEM private keys) and ``key/token/password = VALUE`` pairs.
Kinds run in a fixed order (secrets and cards before phones) so that one span gets one label.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable

PLACEHOLDERS = {
    "secret": "<SECRET>",
    "email": "<EMAIL>",
    "creditCard": "<CREDIT_CARD>",
    "iban": "<IBAN>",
    "ip": "<IP>",
    "phone": "<PHONE>",
}
ORDER = ("secret", "email", "creditCard", "iban", "ip", "phone")

_SECRET = re.compile(
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----.*?-----END (?:[A-Z]+ )?PRIVATE KEY-----"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b"
    r"|\bgithub_pat_[A-Za-z0-9_]{40,}\b"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}\b"
    r"|\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{20,}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}\b"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",
    re.S,
)
_SECRET_PAIR = re.compile(
    r"(?i)\b((?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|"
    r"password|passwd|pwd)\s*[:=]\s*)([\"']?)([^\s\"',;]{8,})\2"
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){1,4}(?!\w)"
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string (credit cards)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN (spaces ignored)."""
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group())
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ip(match: re.Match[str]) -> bool:
    if ":" in match.group() and (
        len(match.group()) < 7 or not any(c.isdigit() for c in match.group())
    ):
        return False
    try:
        ipaddress.ip_address(match.group())
    except ValueError:
        return False
    return True


def _phone(match: re.Match[str]) -> bool:
    text = match.group()
    digits = sum(c.isdigit() for c in text)
    if not 7 <= digits <= 15 or _DATE.fullmatch(text):
        return False
    # A bare run of digits is an id or an amount, not a phone number, unless it says "+".
    return text.startswith("+") or not text.isdigit()


class PiiRedactor:
    """Replaces the configured kinds of PII with placeholders and counts what it replaced."""

    def __init__(self, kinds: Iterable[str]) -> None:
        wanted = set(kinds)
        self.kinds = [k for k in ORDER if k in wanted]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        has_digits = _DIGITS.search(text) is not None
        for kind in self.kinds:
            if _HINTS[kind](text, has_digits):
                text = _REDACTORS[kind](text, counts)
        return text, counts


def _sub(
    pattern: re.Pattern[str], kind: str, check: Callable[[re.Match[str]], bool] | None = None
) -> Callable[[str, Counter[str]], str]:
    placeholder = PLACEHOLDERS[kind]

    def apply(text: str, counts: Counter[str]) -> str:
        def replace(match: re.Match[str]) -> str:
            if check is not None and not check(match):
                return match.group()
            counts[kind] += 1
            return placeholder

        return pattern.sub(replace, text)

    return apply


def _secrets(text: str, counts: Counter[str]) -> str:
    text = _sub(_SECRET, "secret")(text, counts)

    def pair(match: re.Match[str]) -> str:
        if match.group(3) == PLACEHOLDERS["secret"]:
            return match.group()
        counts["secret"] += 1
        return f"{match.group(1)}{match.group(2)}{PLACEHOLDERS['secret']}{match.group(2)}"

    return _SECRET_PAIR.sub(pair, text)


def _ips(text: str, counts: Counter[str]) -> str:
    text = _sub(_IPV4, "ip", _ip)(text, counts)
    return _sub(_IPV6, "ip", _ip)(text, counts)


_DIGITS = re.compile(r"\d\d")
_SECRET_MARKERS = (
    "-----BEGIN",
    "AKIA",
    "ASIA",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "sk-",
    "AIza",
    "eyJ",
)
_PAIR_MARKERS = ("key", "secret", "token", "passw", "pwd")


def _secret_hint(text: str, has_digits: bool) -> bool:
    if any(m in text for m in _SECRET_MARKERS):
        return True
    if "=" not in text and ":" not in text:
        return False
    lower = text.lower()
    return any(m in lower for m in _PAIR_MARKERS)


# Cheap substring tests that rule a kind out before its (slower) regex runs.
_HINTS: dict[str, Callable[[str, bool], bool]] = {
    "secret": _secret_hint,
    "email": lambda text, digits: "@" in text,
    "creditCard": lambda text, digits: digits,
    "iban": lambda text, digits: digits,
    "ip": lambda text, digits: (digits and "." in text) or text.count(":") >= 2,
    "phone": lambda text, digits: digits,
}

_REDACTORS: dict[str, Callable[[str, Counter[str]], str]] = {
    "secret": _secrets,
    "email": _sub(_EMAIL, "email"),
    "creditCard": _sub(_CARD, "creditCard", _card),
    "iban": _sub(_IBAN, "iban", lambda m: iban_ok(m.group())),
    "ip": _ips,
    "phone": _sub(_PHONE, "phone", _phone),
}
