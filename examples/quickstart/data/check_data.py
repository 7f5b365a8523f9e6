#!/usr/bin/env python3
"""Sanity checks for the quickstart data files (stdlib only).

    python examples/quickstart/data/check_data.py

Re-detects every kind of planted mess with simple, independent regexes and
prints the counts documented in README.md.  Exits non-zero on a mismatch.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate_tickets import (  # noqa: E402
    BROKEN_COUNTS, COUNTS, OFFENSIVE_WORDS, PII_COUNTS, has_domain_keyword, iban_ok, luhn_ok, norm,
)
from intents import INTENTS  # noqa: E402

FIELDS = {"id", "instruction", "input", "output", "channel", "customer_gender"}

RE_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
RE_PHONE = re.compile(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{2,4})[ .-]\d{3,4}[ .-]\d{3,4}\b")
RE_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
RE_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
RE_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
RE_KEY = re.compile(r"\bsk-[A-Za-z0-9]{32}\b|\bAKIA[A-Z0-9]{16}\b")
RE_OFFENSIVE = re.compile(r"\b(" + "|".join(map(re.escape, OFFENSIVE_WORDS + ["st00pid"])) + r")\b", re.I)
RE_MOJIBAKE = re.compile(r"Ã.|â€")
RE_HTML = re.compile(r"</?(?:p|br|div)\s*/?>|&amp;|&gt;|&lt;")


def pii_kinds(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if m := RE_EMAIL.findall(text):
        found["email"] = m
    if m := RE_KEY.findall(text):
        found["api_key"] = m
    ibans = [i for i in RE_IBAN.findall(text) if iban_ok(i)]
    if ibans:
        found["iban"] = ibans
    cards = [c for c in RE_CARD.findall(text) if 13 <= len(re.sub(r"\D", "", c)) <= 19 and luhn_ok(c)]
    if cards:
        found["credit_card"] = cards
    if m := RE_IPV4.findall(text):
        found["ipv4"] = m
    rest = text
    for vals in found.values():
        for v in vals:
            rest = rest.replace(v, " ")
    if m := RE_PHONE.findall(rest):
        found["phone"] = m
    return found


def main() -> int:
    ok = True

    def expect(name, got, want):
        nonlocal ok
        flag = "ok " if got == want else "BAD"
        ok &= got == want
        print(f"  [{flag}] {name}: {got} (expected {want})")

    raw = (HERE / "support_tickets.jsonl").read_text(encoding="utf-8").split("\n")
    assert raw[-1] == ""
    lines = raw[:-1]
    print(f"support_tickets.jsonl: {len(lines)} lines, {(HERE / 'support_tickets.jsonl').stat().st_size} bytes")
    empty = not_json = truncated = missing = 0
    recs: list[dict] = []
    seen_lines: set[str] = set()
    exact = 0
    for ln in lines:
        if not ln.strip():
            empty += 1
            continue
        if ln in seen_lines:
            exact += 1
        seen_lines.add(ln)
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError:
            if ln.startswith('{"id"'):
                truncated += 1
            else:
                not_json += 1
            continue
        if set(obj) != FIELDS:
            missing += 1
            continue
        recs.append(obj)
    expect("empty lines", empty, BROKEN_COUNTS["empty_line"])
    expect("truncated JSON", truncated, BROKEN_COUNTS["truncated_json"])
    expect("not JSON", not_json, BROKEN_COUNTS["not_json"])
    expect("records missing output", missing, BROKEN_COUNTS["missing_output"])
    expect("exact duplicate lines", exact, COUNTS["exact_duplicate"])

    uniq = list({json.dumps(r, sort_keys=True): r for r in recs}.values())
    key = lambda r: norm(r["instruction"]) + "|" + norm(r["input"])  # noqa: E731
    by_norm = Counter(key(r) for r in uniq)
    print(f"  complete records: {len(recs)}, distinct: {len(uniq)}, normalized-text collisions: "
          f"{sum(c - 1 for c in by_norm.values())} (casing/whitespace/punctuation near-duplicates)")

    pii = Counter()
    pii_recs = 0
    for r in uniq:
        k = pii_kinds(r["instruction"] + "\n" + r["input"] + "\n" + r["output"])
        if k:
            pii_recs += 1
            for kind in k:
                pii[kind] += 1
    expect("records with PII", pii_recs, COUNTS["pii"])
    for kind, n in PII_COUNTS.items():
        expect(f"  PII {kind}", pii[kind], n)

    offensive = sum(bool(RE_OFFENSIVE.search(r["instruction"])) for r in uniq)
    expect("offensive records", offensive, COUNTS["offensive"])
    off = [r for r in uniq if not has_domain_keyword(r["instruction"] + " " + r["input"])]
    expect("off-domain records (no domain keyword)", len(off), COUNTS["off_domain"])
    moj = sum(bool(RE_MOJIBAKE.search(r["instruction"])) for r in uniq)
    expect("mojibake records", moj, COUNTS["mojibake"])
    html = sum(bool(RE_HTML.search(r["instruction"] + r["output"])) for r in uniq)
    expect("html records", html, COUNTS["html"])

    g = Counter(r["customer_gender"] for r in recs)
    c = Counter(r["channel"] for r in recs)
    tot = len(recs)
    print("  gender:", {k: f"{v} ({100 * v / tot:.1f}%)" for k, v in g.most_common()})
    print("  channel:", {k: f"{v} ({100 * v / tot:.1f}%)" for k, v in c.most_common()})

    answers = {i.answer: i.key for i in INTENTS}
    per_intent = Counter()
    for r in uniq:
        for a, k in answers.items():
            if a in r["output"] or a.replace(">", "&gt;") in r["output"]:
                per_intent[k] += 1
    print(f"  in-domain records per intent: min {min(per_intent.values())}, max {max(per_intent.values())}, "
          f"intents {len(per_intent)}")
    expect("intents covered", len(per_intent), len(INTENTS))

    evals = [json.loads(x) for x in (HERE / "eval_prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    expect("eval prompts", len(evals), len(INTENTS))
    all_instr = "\n".join(norm(r["instruction"]) for r in recs)
    leaked = [e["prompt"] for e in evals if norm(e["prompt"]) in all_instr]
    expect("eval prompts found verbatim in tickets", len(leaked), 0)
    expect("eval expected == references[0]", sum(e["expected"] == e["references"][0] for e in evals), len(evals))

    gen = (HERE / "general.txt").read_text(encoding="utf-8")
    paras = gen.strip().split("\n\n")
    print(f"general.txt: {len(gen.encode())} bytes, {len(paras)} paragraphs, {len(set(paras))} distinct, "
          f"{len(set(re.findall(r'[a-z]+', gen.lower())))} distinct words")
    expect("general.txt repeated paragraphs", len(paras) - len(set(paras)), 0)
    dom = (HERE / "domain_text.txt").read_text(encoding="utf-8")
    docs = dom.strip().split("\n\n")
    print(f"domain_text.txt: {len(dom.encode())} bytes, {len(docs)} documents")
    print("ALL OK" if ok else "MISMATCHES FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
