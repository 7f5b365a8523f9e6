"""The `Dataset` kind: curate, clean, de-duplicate, redact, balance, tokenize, split, version."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from kubetune.api.base import KubeModel
from kubetune.api.common import (
    SOURCE_SCHEMES,
    ArtifactRef,
    ArtifactURI,
    CommonStatus,
    RunSettings,
    SourceURI,
    check_uri,
)

SourceFormat = Literal["jsonl", "json", "csv", "parquet", "text"]
RecordSchema = Literal["text", "instruction", "chat", "preference"]
PiiKind = Literal["email", "phone", "ip", "creditCard", "iban", "secret"]
PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "ip", "creditCard", "iban", "secret")
# Map pods of one Dataset run (spec.parallelism).
MAX_PARALLELISM = 1024


class DataSource(KubeModel):
    """One input of the dataset."""

    uri: SourceURI = Field(
        description="file:// or pvc:// path (file, directory or glob), http(s)://, s3://, "
        "or hf://datasets/ORG/NAME[@REVISION]."
    )
    format: SourceFormat = Field("jsonl", description="File format of the source.")
    weight: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Mixing weight: a weight w keeps about w times the source's records "
        "(below 1 down-samples, above 1 repeats).",
    )
    fields: dict[str, str] | None = Field(
        None,
        description="Map from the record schema's field names (text, instruction, input, "
        "output, messages) to the source's column names.",
    )
    text_split: Literal["file", "blankLine", "line"] = Field(
        "blankLine",
        description="For format text: one document per file, per blank-line block or per line.",
    )
    split: str | None = Field(None, description="For hf:// datasets: the split to read.")

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return check_uri(v, SOURCE_SCHEMES)


class Curation(KubeModel):
    """Keep what is relevant to the domain."""

    include_keywords: list[str] | None = Field(
        None, description="Keep records matching at least `minRelevance` of these terms."
    )
    exclude_keywords: list[str] | None = Field(None, description="Drop records matching any.")
    include_regexes: list[str] | None = Field(
        None, description="Keep records matching any of these regexes (counted as relevance)."
    )
    exclude_regexes: list[str] | None = Field(None, description="Drop records matching any.")
    matching: Literal["exact", "stem", "lemma"] = Field(
        "stem",
        description="How keywords match tokens: exact, Snowball stem, or lemma (simplemma).",
    )
    min_relevance: int = Field(
        1, ge=0, description="Minimum number of distinct include terms/regexes matched."
    )
    languages: list[str] | None = Field(
        None, description="ISO 639-1 languages to keep (offline detection), e.g. [en]."
    )


class QualityFilter(KubeModel):
    """Gopher/C4-style heuristics; each bound can be turned off by leaving it unset."""

    enabled: bool = Field(True, description="Apply the quality heuristics.")
    min_mean_word_length: float | None = Field(2.5, ge=0, description="Mean word length floor.")
    max_mean_word_length: float | None = Field(12.0, ge=0, description="Mean word length cap.")
    max_symbol_ratio: float | None = Field(
        0.1, ge=0, le=1, description="Max ratio of '#' and '...' symbols to words."
    )
    max_duplicate_line_fraction: float | None = Field(
        0.3, ge=0, le=1, description="Max fraction of lines that repeat another line."
    )
    max_top_ngram_fraction: float | None = Field(
        0.3, ge=0, le=1, description="Max fraction of characters in the most frequent 3-gram."
    )
    min_alpha_word_fraction: float | None = Field(
        0.6, ge=0, le=1, description="Min fraction of words holding an alphabetic character."
    )
    max_boilerplate_line_fraction: float | None = Field(
        0.5,
        ge=0,
        le=1,
        description="Max fraction of boilerplate lines (cookie notices, 'click here', ...).",
    )
    require_terminal_punctuation: bool = Field(
        False, description="Drop documents whose lines mostly lack terminal punctuation."
    )


class NearDedup(KubeModel):
    """MinHash LSH near-duplicate removal."""

    enabled: bool = Field(True, description="Remove near-duplicates.")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity threshold.")
    ngram: int = Field(5, ge=1, le=32, description="Shingle size in words.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")


class Cleaning(KubeModel):
    """Normalize text and drop low-quality and duplicate records."""

    normalize_unicode: bool = Field(True, description="NFC + mojibake repair (ftfy).")
    strip_html: bool = Field(True, description="Strip HTML/markup and unescape entities.")
    normalize_whitespace: bool = Field(True, description="Collapse runs of spaces/blank lines.")
    min_chars: int | None = Field(None, ge=0, description="Minimum characters per record.")
    max_chars: int | None = Field(None, ge=1, description="Maximum characters per record.")
    min_words: int | None = Field(None, ge=0, description="Minimum words per record.")
    max_words: int | None = Field(None, ge=1, description="Maximum words per record.")
    quality: QualityFilter = Field(default_factory=QualityFilter, description="Heuristics.")
    exact_dedup: bool = Field(True, description="Drop exact duplicates (normalized hash).")
    near_dedup: NearDedup = Field(default_factory=NearDedup, description="Near-dup removal.")
    decontaminate: list[ArtifactURI] | None = Field(
        None,
        description="Evaluation prompt sets (JSONL URIs) whose n-grams must not appear "
        "in training data.",
    )
    decontamination_ngram: int = Field(
        8, ge=3, le=50, description="n-gram size (words) for decontamination."
    )

    __cel_rules__ = (
        {
            "rule": "!has(self.minChars) || !has(self.maxChars) || self.minChars <= self.maxChars",
            "message": "minChars must not exceed maxChars",
        },
        {
            "rule": "!has(self.minWords) || !has(self.maxWords) || self.minWords <= self.maxWords",
            "message": "minWords must not exceed maxWords",
        },
    )


class PiiRedaction(KubeModel):
    """Replace personal data with typed placeholders like <EMAIL>."""

    enabled: bool = Field(True, description="Redact PII.")
    kinds: list[PiiKind] = Field(
        default_factory=lambda: list(PII_KINDS),
        description="Kinds of PII to redact.",
    )


class OffensiveFilter(KubeModel):
    """Offensive-content filter over a bundled lexicon (whole words, leetspeak-aware)."""

    enabled: bool = Field(True, description="Filter offensive content.")
    mode: Literal["drop", "redact"] = Field("drop", description="Drop the record or mask terms.")
    extra_terms: list[str] | None = Field(None, description="Terms added to the lexicon.")
    allow_terms: list[str] | None = Field(None, description="Lexicon terms to ignore.")


class Balance(KubeModel):
    """Report (and optionally correct) how records spread over groups."""

    field: str | None = Field(None, description="Record field whose values form the groups.")
    term_groups: dict[str, list[str]] | None = Field(
        None, description="Groups defined by terms, e.g. {female: [she, her], male: [he, his]}."
    )
    targets: dict[str, float] | None = Field(
        None, description="Target proportion per group (sums to at most 1)."
    )
    rebalance: bool = Field(
        False, description="Down-sample over-represented groups to the targets."
    )

    __cel_rules__ = (
        {
            "rule": "has(self.field) != has(self.termGroups)",
            "message": "set exactly one of field or termGroups",
        },
        {
            "rule": "!self.rebalance || has(self.targets)",
            "message": "rebalance needs targets",
            "fieldPath": ".targets",
        },
    )


class Safety(KubeModel):
    """PII, offensive content and balance."""

    pii: PiiRedaction = Field(default_factory=PiiRedaction, description="PII redaction.")
    offensive: OffensiveFilter = Field(
        default_factory=OffensiveFilter, description="Offensive-content filter."
    )
    balance: Balance | None = Field(None, description="Balance report and rebalancing.")


class TokenizerTraining(KubeModel):
    """Train a tokenizer on the prepared data and ship it with the dataset."""

    type: Literal["bpe", "char"] = Field("bpe", description="Byte-level BPE or characters.")
    vocab_size: int = Field(4096, ge=64, le=262144, description="Vocabulary size (BPE).")


class TokenizerSpec(KubeModel):
    """The tokenizer used to count and bound tokens."""

    model: ArtifactRef | None = Field(
        None, description="Take the tokenizer of this model (a URI or a FinetuneJob output)."
    )
    train: TokenizerTraining | None = Field(None, description="Train a tokenizer instead.")
    max_tokens: int | None = Field(None, ge=1, description="Maximum tokens per record.")
    over_length: Literal["drop", "truncate"] = Field(
        "drop", description="What to do with records over maxTokens."
    )

    __cel_rules__ = (
        {
            "rule": "!(has(self.model) && has(self.train))",
            "message": "set at most one of model or train",
        },
    )


class Split(KubeModel):
    """Deterministic train/validation split."""

    validation_fraction: float = Field(
        0.1, ge=0, le=0.5, description="Fraction of records for validation."
    )
    seed: int = Field(42, ge=0, description="Seed of the split and of any sampling.")


class DatasetSpec(RunSettings):
    """Desired state of a Dataset."""

    sources: list[DataSource] = Field(
        min_length=1, max_length=64, description="Inputs, mixed by weight."
    )
    record_schema: RecordSchema = Field(
        "text",
        alias="schema",
        description="Record shape: text, instruction, chat or preference (prompt or messages "
        "with chosen and rejected; or completion and label for KTO).",
    )
    role_mapping: dict[str, str] | None = Field(
        None, description="Chat: map source roles (human, gpt...) to user/assistant/system."
    )
    max_error_ratio: float = Field(
        0.05, ge=0, le=1, description="Fail when more than this fraction of records is malformed."
    )
    curation: Curation | None = Field(None, description="Domain relevance filters.")
    cleaning: Cleaning = Field(default_factory=Cleaning, description="Cleaning and dedup.")
    safety: Safety = Field(default_factory=Safety, description="PII, offensive content, balance.")
    tokenizer: TokenizerSpec | None = Field(None, description="Token counting and bounds.")
    split: Split = Field(default_factory=Split, description="Train/validation split.")
    output_format: Literal["jsonl", "parquet"] = Field("jsonl", description="Output file format.")
    # Unset means 1 (one pod), and stays out of the spec: runs and step specs of Datasets that
    # do not set it are exactly what they were before the field existed.
    parallelism: int | None = Field(
        None,
        ge=1,
        le=MAX_PARALLELISM,
        description="Map tasks (pods) of a run, default 1. Above 1 the per-record stages run "
        "as one Indexed Job of this many pods writing shards, then a reduce Job merges them "
        "into the versioned artifact (the same output and version as with 1).",
    )

    @field_validator("parallelism")
    @classmethod
    def _one_is_unset(cls, v: int | None) -> int | None:
        return None if v == 1 else v  # one pod is the default run, whichever way it is said

    __cel_rules__ = (
        {
            "rule": "!has(self.parallelism) || self.parallelism == 1 || !has(self.resources)"
            " || !has(self.resources.nodes) || self.resources.nodes == 1",
            "message": "a Dataset scales out with parallelism (map pods); resources.nodes "
            "must stay 1 when parallelism is above 1",
            "fieldPath": ".parallelism",
        },
    )


StagePhase = Literal["NotStarted", "Pending", "Running", "Succeeded", "Failed", "Suspended"]


class StageStatus(KubeModel):
    """One stage of a parallel run (spec.parallelism above 1), read from its Job."""

    name: Literal["map", "reduce"] = Field(description="The stage: map (Indexed Job) or reduce.")
    phase: StagePhase = Field(description="Where the stage's Job stands.")
    completed: int = Field(0, description="Pods (map tasks) of the stage that succeeded.")
    total: int = Field(1, description="Pods (map tasks) the stage runs.")
    failed: int = Field(0, description="Pod failures so far (a failed task is retried alone).")
    job: str | None = Field(None, description="The stage's Job.")


class DatasetStatus(CommonStatus):
    """Observed state of a Dataset."""

    version: str | None = Field(None, description="Content hash of the prepared data.")
    records: int | None = Field(None, description="Records in the prepared dataset.")
    tokens: int | None = Field(None, description="Tokens in the prepared dataset.")
    stage_counts: dict[str, int] | None = Field(
        None, description="Records removed per stage and reason."
    )
    stages: list[StageStatus] | None = Field(
        None, description="Stages of a parallel run (spec.parallelism above 1), in order."
    )
