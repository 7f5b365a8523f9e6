"""Unit tests of the dataprep stages: each one through its public class or function."""

from __future__ import annotations

import gzip
import io
import random
from collections import Counter

import numpy as np
import pytest
from kubetune.api.dataset import Balance, Cleaning, Curation, QualityFilter
from kubetune_workloads.dataprep import balance
from kubetune_workloads.dataprep.cleaning import TextCleaner
from kubetune_workloads.dataprep.curation import Curator, detect_language
from kubetune_workloads.dataprep.decontam import Decontaminator
from kubetune_workloads.dataprep.dedup import ExactDeduper, NearDeduper
from kubetune_workloads.dataprep.formats import Malformed, read_csv, read_jsonl, read_text
from kubetune_workloads.dataprep.minhash import (
    MinHasher,
    candidate_probability,
    jaccard_estimate,
    recall_bands,
)
from kubetune_workloads.dataprep.pii import PiiRedactor, iban_ok, luhn_ok
from kubetune_workloads.dataprep.quality import quality_problem
from kubetune_workloads.dataprep.records import Record
from kubetune_workloads.dataprep.schema import SchemaMapper
from kubetune_workloads.dataprep.streams import BadLine, decompressed, read_lines
from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.lexicon import OffensiveLexicon

ALL_PII = ["email", "phone", "ip", "creditCard", "iban", "secret"]

# --- offensive lexicon ------------------------------------------------------------------------


def test_lexicon_matches_whole_words_and_leetspeak() -> None:
    lexicon = OffensiveLexicon.load()
    assert lexicon.find("what the f*ck, you m0ron") == ["fuck", "moron"]
    assert lexicon.find("sh1t $hit a$$ fuuuuck") == ["shit", "shit", "ass", "fuck"]
    assert lexicon.find("You SON OF A B1TCH!") == ["son of a bitch"]
    assert lexicon.find("fucking idiots") == ["fuck", "idiot"]


def test_lexicon_leaves_innocent_words_alone() -> None:
    lexicon = OffensiveLexicon.load()
    for text in ("Scunthorpe assess classic class passage", "code 455 and 5318", "hello!! all"):
        assert not lexicon.contains(text), text


def test_lexicon_redacts_and_is_configurable() -> None:
    lexicon = OffensiveLexicon.load(extra_terms=["frak"], allow_terms=["idiot"])
    assert lexicon.redact("you frakking idiot") == "you <OFFENSIVE> idiot"
    assert lexicon.redact("clean text") == "clean text"
    assert lexicon.redact("sh1t happens", placeholder="***") == "*** happens"


# --- PII ------------------------------------------------------------------------------------


def test_luhn_and_iban_checks() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00")
    assert not iban_ok("DE89 3704 0044 0532 0130 01")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail jane.doe@example.com now", "Mail <EMAIL> now"),
        ("Call +1 (555) 123-4567.", "Call <PHONE>."),
        ("Card 4111 1111 1111 1111 ok", "Card <CREDIT_CARD> ok"),
        ("Card 4111 1111 1111 1112 ok", "Card 4111 1111 1111 1112 ok"),  # fails Luhn
        ("IBAN DE89 3704 0044 0532 0130 00.", "IBAN <IBAN>."),
        ("host 192.168.1.20.", "host <IP>."),
        ("version 1.2.3.4.5 and 999.1.1.1", "version 1.2.3.4.5 and 999.1.1.1"),
        ("key AKIAIOSFODNN7EXAMPLE", "key <SECRET>"),
        ("api_key=abcd1234efgh5678", "api_key=<SECRET>"),
        ("on 12.05.2024 we sold 1500 units", "on 12.05.2024 we sold 1500 units"),
    ],
)
def test_pii_redaction(text: str, expected: str) -> None:
    assert PiiRedactor(ALL_PII).redact(text)[0] == expected


def test_pii_counts_and_kinds() -> None:
    text, counts = PiiRedactor(["email"]).redact("a@b.io and c@d.io, call 555-123-4567")
    assert text == "<EMAIL> and <EMAIL>, call 555-123-4567"
    assert counts == Counter({"email": 2})


# --- cleaning and quality ---------------------------------------------------------------------


def test_cleaner_repairs_mojibake_html_and_whitespace() -> None:
    clean = TextCleaner(Cleaning())
    assert clean("The cafÃ© is â€œopenâ€\x9d") == 'The café is "open"'
    assert clean("<p>Hello&nbsp;<b>world</b></p><script>x()</script>") == "Hello world"
    assert clean("a   b\t c\n\n\n\nd  ") == "a b c\n\nd"


def test_length_bounds() -> None:
    cleaner = TextCleaner(Cleaning(min_words=3, max_chars=20))
    assert cleaner.length_problem("two words") == "too_short_words"
    assert cleaner.length_problem("x " * 30) == "too_long_chars"
    assert cleaner.length_problem("three small words") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("The support team answered my question about shared folders quickly.", None),
        ("Great news ### about ### shared ### folders ### today ### everyone", "symbol_ratio"),
        ("a b c d e f g h i j", "mean_word_length"),
        ("123 456 789 000 111 222 333 444 word", "alpha_words"),
        ("buy now\nbuy now\nbuy now\nbuy now\nreal line", "repeated_lines"),
        ("Accept cookies\nPrivacy policy\nClick here\nA sentence.", "boilerplate"),
        (" ".join(["spam eggs ham"] * 10), "repeated_ngrams"),
    ],
)
def test_quality_heuristics(text: str, reason: str | None) -> None:
    assert quality_problem(text, QualityFilter()) == reason


def test_quality_off_keeps_everything() -> None:
    assert quality_problem("# # # #", QualityFilter(enabled=False)) is None


# --- curation -------------------------------------------------------------------------------


def test_stemming_matches_inflections() -> None:
    curator = Curator(Curation(include_keywords=["refund", "sync"], matching="stem"))
    assert curator.problem("I was refunding the syncing app")[0] is None
    assert Curator(Curation(include_keywords=["refund"], matching="exact")).problem(
        "I was refunding"
    )[0] == ("low_relevance")


def test_lemmatization_matches_irregular_forms() -> None:
    curator = Curator(Curation(include_keywords=["mouse"], matching="lemma"))
    assert curator.problem("The mice ran away")[0] is None
    assert curator.problem("The cat ran away")[0] == "low_relevance"


def test_relevance_threshold_phrases_regexes_and_excludes() -> None:
    spec = Curation(
        include_keywords=["sign in", "password"],
        include_regexes=[r"\berror \d+"],
        exclude_keywords=["casino"],
        min_relevance=2,
    )
    curator = Curator(spec)
    assert curator.relevance("I cannot sign in, error 403") == 2
    assert curator.problem("I cannot sign in, error 403")[0] is None
    assert curator.problem("I cannot sign in")[0] == "low_relevance"
    assert curator.problem("sign in to the casino with your password")[0] == "excluded_keyword"


def test_language_filter_is_deterministic() -> None:
    german = "Ich habe mein Passwort vergessen und kann mich nicht mehr anmelden."
    assert detect_language(german) == "de"
    curator = Curator(Curation(languages=["en"]))
    assert curator.problem(german) == ("language", "de")
    assert curator.problem("I forgot my password and cannot sign in to my account.")[0] is None


# --- dedup ----------------------------------------------------------------------------------


def _mutate(words: list[str], count: int, rng: random.Random) -> str:
    out = list(words)
    for i in rng.sample(range(len(out)), count):
        out[i] = f"changed{i}"
    return " ".join(out)


def test_exact_dedup_ignores_case_spacing_and_punctuation() -> None:
    dedup = ExactDeduper()
    assert not dedup.seen("Hello, World!")
    assert dedup.seen("hello   world")
    assert not dedup.seen("hello there world")


def test_minhash_estimates_jaccard() -> None:
    hasher = MinHasher(num_perm=256, ngram=1)
    a = " ".join(f"w{i}" for i in range(100))
    b = " ".join(f"w{i}" for i in range(50, 150))  # true Jaccard 50/150
    sig = hasher.signatures([a, b, a])
    assert abs(jaccard_estimate(sig[0], sig[1]) - 1 / 3) < 0.08
    assert jaccard_estimate(sig[0], sig[2]) == 1.0
    assert np.array_equal(MinHasher(num_perm=256, ngram=1).signatures([a]), sig[:1])


def test_near_dedup_threshold_on_constructed_near_duplicates() -> None:
    rng = random.Random(0)
    vocab = [f"word{i}" for i in range(3000)]
    bases = [[rng.choice(vocab) for _ in range(200)] for _ in range(30)]
    dedup = NearDeduper(threshold=0.8, num_perm=128, ngram=5)
    assert dedup.duplicates([" ".join(b) for b in bases]) == [False] * 30
    # One changed word removes at most 5 of ~196 shingles (Jaccard ~0.95): a near-duplicate.
    close = [_mutate(b, 1, rng) for b in bases]
    assert sum(dedup.duplicates(close)) >= 28
    # 25 changed words leave Jaccard well below 0.5: distinct documents.
    far = [_mutate(b, 25, rng) for b in bases]
    assert sum(dedup.duplicates(far)) <= 1
    bands, rows = recall_bands(0.8, 128)
    assert bands * rows <= 128
    assert candidate_probability(0.8, bands, rows) >= 0.99


def test_near_dedup_checks_every_member_of_a_bucket() -> None:
    # The reproduction: X ~ Y is 0.76 (below 0.8), Y ~ Z is 0.81. Z is a near-duplicate
    # of Y whether or not X came first and owns Y's buckets.
    x = (
        "my printer crashes what should i do ticket 10133 from dana hi dana thanks for reaching "
        "out check the cable and retry if the printer still crashes reply to this ticket thanks "
        "again"
    )
    y = x.replace("10133", "10385").replace(" thanks again", "")
    z = y.replace("10385", "10423")
    assert NearDeduper(0.8, 128, 3, seed=42).duplicates([x, y, z]) == [False, False, True]
    assert NearDeduper(0.8, 128, 3, seed=42).duplicates([y, z]) == [False, True]


def test_near_dedup_recall_and_precision_around_the_threshold() -> None:
    # Pairs at exact Jaccard just above and well below the threshold (5-gram shingles of 200
    # distinct words: k substitutions 5+ words apart give J = (196 - 5k) / (196 + 5k)).
    rng = random.Random(1)
    found_above = found_below = 0
    for trial in range(40):
        words = [f"v{trial}x{i}" for i in range(200)]
        above, below = list(words), list(words)
        for pos in rng.sample(range(0, 200, 5), 4):  # J = 176/216 = 0.815
            above[pos] = f"a{trial}y{pos}"
        for pos in rng.sample(range(0, 200, 5), 12):  # J = 136/256 = 0.53
            below[pos] = f"b{trial}y{pos}"
        dedup = NearDeduper(0.8, 128, 5, seed=trial)
        flags = dedup.duplicates([" ".join(words), " ".join(above), " ".join(below)])
        found_above += flags[1]
        found_below += flags[2]
    assert found_above >= 39
    assert found_below == 0


def test_near_dedup_clusters_chains_to_the_first_member() -> None:
    words = [f"c{i}" for i in range(100)]
    chain = [words]
    for step in range(3):  # each link changes one word: neighbours are ~0.9 similar
        nxt = list(chain[-1])
        nxt[10 + 30 * step] = f"changed{step}"
        chain.append(nxt)
    dedup = NearDeduper(0.85, 128, 5)
    assert dedup.duplicates([" ".join(c) for c in chain]) == [False, True, True, True]
    assert {dedup.cluster(i) for i in range(4)} == {0}


def test_near_dedup_within_one_batch_keeps_first() -> None:
    text = " ".join(f"t{i}" for i in range(60))
    assert NearDeduper().duplicates([text, text + " extra", "something else entirely"]) == [
        False,
        True,
        False,
    ]


def test_decontamination_by_ngram_overlap() -> None:
    prompt = "how do I reset the password of my nimbus drive account today"
    deco = Decontaminator([prompt], ngram=8)
    hits = deco.contaminated(
        [
            "Question: how do I reset the password of my nimbus drive account? thanks",
            "how do I reset the sync settings on my phone",
        ]
    )
    assert hits == [True, False]


# --- balance --------------------------------------------------------------------------------


def test_balance_labels_and_rebalance_plan() -> None:
    balancer = balance.Balancer(Balance(term_groups={"female": ["she"], "male": ["he", "his"]}))
    assert balancer.label(Record({"text": "She said"})) == "female"
    assert balancer.label(Record({"text": "He and she"})) == "mixed"
    assert balancer.label(Record({"text": "They said"})) == "none"
    counts = Counter({"male": 600, "female": 200, "unspecified": 200})
    keep = balance.plan(counts, {"male": 0.5, "female": 0.5})
    assert keep == {"male": 200, "female": 200, "unspecified": 0}
    keep = balance.plan(counts, {"male": 0.4, "female": 0.3})
    assert keep["female"] == 200 and keep["male"] == 266 and keep["unspecified"] == 200
    labels = ["a"] * 5 + ["b"] * 5
    mask = balance.select(labels, np.linspace(0, 1, 10), {"a": 2, "b": 5})
    assert mask.tolist() == [True, True, False, False, False] + [True] * 5


# --- schema mapping -------------------------------------------------------------------------


def test_instruction_mapping_with_fields() -> None:
    mapper = SchemaMapper("instruction", {"instruction": "q", "output": "a"})
    record = mapper.map({"q": "Why?", "a": "Because."}, "x:1", 0)
    assert isinstance(record, Record)
    assert record.fields == {"instruction": "Why?", "input": "", "output": "Because."}
    bad = mapper.map({"instruction": "Why?"}, "x:2", 0)
    assert isinstance(bad, Malformed) and bad.reason == "missing_field" and "'q'" in bad.detail


def test_chat_mapping_openai_and_sharegpt() -> None:
    mapper = SchemaMapper("chat", role_mapping={"agent": "assistant"})
    openai = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    }
    sharegpt = {
        "conversations": [{"from": "human", "value": "hi"}, {"from": "agent", "value": "yo"}]
    }
    expected = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    for row in (openai, sharegpt):
        record = mapper.map(row, "x", 0)
        assert isinstance(record, Record) and record.fields["messages"] == expected
    unknown = mapper.map({"conversations": [{"from": "robot", "value": "x"}]}, "x", 0)
    assert isinstance(unknown, Malformed) and unknown.reason == "unknown_role"
    no_answer = mapper.map({"messages": [{"role": "user", "content": "hi"}]}, "x", 0)
    assert isinstance(no_answer, Malformed) and no_answer.reason == "no_assistant_turn"


# --- readers and streams --------------------------------------------------------------------


def test_jsonl_reader_counts_bad_lines() -> None:
    data = b'{"text": "a"}\n{broken\n[1, 2]\n\n{"text": "caf\xe9"}\n'
    items = list(read_jsonl(io.BytesIO(data), "f.jsonl"))
    reasons = [i.reason for i in items if isinstance(i, Malformed)]
    assert reasons == ["invalid_json", "not_an_object"]
    texts = [i["text"] for i in items if isinstance(i, dict)]
    assert texts == ["a", "café"]  # the cp1252 byte was repaired


def test_overlong_line_is_skipped_with_bounded_reads() -> None:
    data = b"short\n" + b"x" * 5000 + b"\nafter\n"
    lines = list(read_lines(io.BytesIO(data), max_chars=100))
    assert [getattr(x, "text", None) for x in lines] == ["short", None, "after"]
    assert isinstance(lines[1], BadLine) and lines[1].reason == "too_long"


def test_utf16_with_bom_is_decoded() -> None:
    data = '{"text": "héllo"}\n'.encode("utf-16")
    assert list(read_jsonl(io.BytesIO(data), "f.jsonl")) == [{"text": "héllo"}]


def test_csv_and_text_readers() -> None:
    csv_data = b'text,label\n"a, quoted",x\nonly-one-column\n'
    items = list(read_csv(io.BytesIO(csv_data), "f.csv"))
    assert items[0] == {"text": "a, quoted", "label": "x"}
    assert isinstance(items[1], Malformed) and items[1].reason == "csv_columns"
    text = b"para one\nstill one\n\n\npara two\n"
    assert list(read_text(io.BytesIO(text), "f.txt", "blankLine")) == [
        {"text": "para one\nstill one"},
        {"text": "para two"},
    ]
    assert len(list(read_text(io.BytesIO(text), "f.txt", "line"))) == 3


def test_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubetune_workloads.dataprep import streams

    monkeypatch.setattr(streams, "INFLATION_GRACE_BYTES", 1 << 20)
    bomb = gzip.compress(b"\0" * (20 << 20))
    stream = decompressed(io.BytesIO(bomb), "bomb.jsonl.gz")
    with pytest.raises(WorkloadError, match="compression bomb"):
        list(read_lines(stream))
    honest = gzip.compress(b'{"text": "fine"}\n' * 10)
    assert len(list(read_lines(decompressed(io.BytesIO(honest), "ok.jsonl.gz")))) == 10
