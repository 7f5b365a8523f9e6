"""Evaluate step: each metric, interval, comparison and gate on hand-computed cases."""

from __future__ import annotations

import math

import pytest
from kubetune.api.evaluation import EvaluationTemplate, Gate, PromptCase
from kubetune_workloads.evaluate import textmetrics as tm
from kubetune_workloads.evaluate.gates import check_gates
from kubetune_workloads.evaluate.generation import Generation
from kubetune_workloads.evaluate.perplexity import TokenLosses, perplexity
from kubetune_workloads.evaluate.scoring import Scorer
from kubetune_workloads.evaluate.stats import aggregate, bootstrap_interval, by_tag, compare
from kubetune_workloads.lexicon import OffensiveLexicon


@pytest.mark.parametrize(
    ("output", "answer", "normalize", "expected"),
    [
        ("The Cat!", "cat", True, 1.0),  # case, punctuation and articles ignored
        ("The Cat!", "cat", False, 0.0),
        ("  cat ", "cat", False, 1.0),  # surrounding whitespace never counts
        ("a dog", "cat", True, 0.0),
    ],
)
def test_exact_match(output: str, answer: str, normalize: bool, expected: float) -> None:
    assert tm.exact_match(output, [answer], normalize) == expected


def test_exact_match_takes_any_reference() -> None:
    assert tm.exact_match("Paris", ["London", "paris"]) == 1.0


@pytest.mark.parametrize(
    ("output", "answer", "normalize", "expected"),
    [
        ("I think the Cat sat.", "cat sat", True, 1.0),
        ("concatenate", "cat", True, 0.0),  # whole words when normalized
        ("concatenate", "cat", False, 1.0),  # plain substring otherwise
        ("the dog", "cat", True, 0.0),
    ],
)
def test_contains(output: str, answer: str, normalize: bool, expected: float) -> None:
    assert tm.contains(output, [answer], normalize) == expected


def test_regex() -> None:
    assert tm.regex_match("Order #1234 shipped", r"#\d{4}\b") == 1.0
    assert tm.regex_match("Order shipped", r"#\d{4}\b") == 0.0


def test_token_f1_by_hand() -> None:
    # normalized tokens: [cat, sat] vs [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8
    assert tm.token_f1("The cat sat", ["cat sat down"]) == pytest.approx(0.8)
    assert tm.token_f1("", [""]) == 1.0
    assert tm.token_f1("", ["cat"]) == 0.0
    assert tm.token_f1("cat", ["dog", "cat"]) == 1.0


def test_rouge_by_hand() -> None:
    # unigrams: 2 of 3 shared -> F = 2/3; bigrams: "the cat" of 2 -> 1/2; LCS "the cat" -> 2/3
    assert tm.rouge("the cat sat", ["the cat ran"], "rouge1") == pytest.approx(2 / 3)
    assert tm.rouge("the cat sat", ["the cat ran"], "rouge2") == pytest.approx(1 / 2)
    assert tm.rouge("the cat sat", ["the cat ran"], "rougeL") == pytest.approx(2 / 3)
    assert tm.rouge("the cat sat", ["dog", "the cat sat"], "rouge1") == pytest.approx(1.0)


def test_bleu_by_hand() -> None:
    # precisions 3/4, 2/3, 1/2 and a smoothed 0/1 -> 1/2; no brevity penalty
    expected = 100 * (0.75 * (2 / 3) * 0.5 * 0.5) ** 0.25
    assert tm.bleu("a b c d", ["a b c e"]) == pytest.approx(expected)
    assert tm.bleu("x y", ["x y"]) == pytest.approx(100.0)


def test_chrf_by_hand() -> None:
    # char n-grams: 1-grams 2/3 match, 2-grams 1/2, 3-grams 0; P = R -> F = mean
    assert tm.chrf("abc", ["abd"]) == pytest.approx(100 * (2 / 3 + 1 / 2 + 0) / 3)
    assert tm.chrf("abc", ["abc"]) == pytest.approx(100.0)


def _spec(*metrics: str) -> EvaluationTemplate:
    return EvaluationTemplate.model_validate(
        {"prompts": {"inline": [{"prompt": "x"}]}, "metrics": [{"name": m} for m in metrics]}
    )


def test_scorer_length_latency_throughput_and_offensive_rate() -> None:
    lexicon = OffensiveLexicon.load(extra_terms=["frak"])
    scorer = Scorer(_spec("length", "latency", "tokensPerSecond", "offensiveRate"), lexicon)
    case = PromptCase(id="c", prompt="hi")
    generation = Generation("well frak it", 6, 2, 0.5, 40.0)
    result = scorer.score(
        case, generation, ["length", "latency", "tokensPerSecond", "offensiveRate"]
    )
    assert result.scores == {
        "length": 6.0,
        "latency": 0.5,
        "tokensPerSecond": 40.0,
        "offensiveRate": 1.0,
    }
    assert result.offensive_terms == ["frak"]
    clean = scorer.score(case, Generation("well done", 2, 2, 0.5, 4.0), ["offensiveRate"])
    assert clean.scores == {"offensiveRate": 0.0}


def test_scorer_respects_normalize_option() -> None:
    spec = EvaluationTemplate.model_validate(
        {
            "prompts": {"inline": [{"prompt": "x"}]},
            "metrics": [{"name": "exactMatch", "normalize": False}],
        }
    )
    case = PromptCase(id="c", prompt="q", expected="cat")
    assert Scorer(spec).score(case, Generation("Cat.", 1, 1, 1, 1), ["exactMatch"]).scores == {
        "exactMatch": 0.0
    }


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible() -> None:
    values = [0.0, 1.0] * 20
    agg = aggregate(values, samples=500, seed=3)
    assert agg is not None and agg.mean == 0.5 and agg.n == 40
    assert agg.ci_low < 0.5 < agg.ci_high
    assert agg.ci_high - agg.ci_low < 0.5
    assert aggregate(values, samples=500, seed=3) == agg
    assert bootstrap_interval([0.7] * 10, 200, 0) == (pytest.approx(0.7), pytest.approx(0.7))
    assert bootstrap_interval([0.3], 200, 0) == (0.3, 0.3)
    assert aggregate([], 100, 0) is None


def test_by_tag_breakdown() -> None:
    scores = {"a": {"exactMatch": 1.0}, "b": {"exactMatch": 0.0}, "c": {"exactMatch": 1.0}}
    tags = {"a": ["qa"], "b": ["qa", "chat"], "c": []}
    breakdown = by_tag(scores, tags)
    assert breakdown["qa"]["exactMatch"].mean == 0.5
    assert breakdown["chat"]["exactMatch"].mean == 0.0
    assert breakdown["untagged"]["exactMatch"].mean == 1.0


def test_compare_counts_wins_ties_losses_by_direction() -> None:
    cand = {
        "a": {"exactMatch": 1.0, "latency": 1.0},
        "b": {"exactMatch": 0.0, "latency": 3.0},
        "c": {"exactMatch": 1.0, "latency": 2.0},
    }
    base = {
        "a": {"exactMatch": 0.0, "latency": 2.0},
        "b": {"exactMatch": 1.0, "latency": 2.0},
        "c": {"exactMatch": 1.0, "latency": 2.0},
    }
    result = compare(cand, base, samples=100, seed=0)
    em = result["exactMatch"]
    assert (em.wins, em.ties, em.losses, em.n) == (1, 1, 1, 3)
    assert em.delta == pytest.approx(0.0)
    lat = result["latency"]  # lower latency is better
    assert (lat.wins, lat.ties, lat.losses) == (1, 1, 1)
    assert lat.ci_low <= lat.delta <= lat.ci_high


def test_gates_min_max_and_regression() -> None:
    gates = [
        Gate(metric="exactMatch", min=0.8),
        Gate(metric="latency", max=2.0),
        Gate(metric="tokenF1", max_regression=0.05),
        Gate(metric="perplexity", max_regression=1.0),
    ]
    cand = {"exactMatch": 0.75, "latency": 1.5, "tokenF1": 0.70, "perplexity": 12.5}
    base = {"exactMatch": 0.5, "latency": 1.0, "tokenF1": 0.74, "perplexity": 12.0}
    results = {g.name: g for g in check_gates(gates, cand, base)}
    assert not results["exactMatch>=0.8"].passed
    assert results["latency<=2"].passed
    assert results["tokenF1:maxRegression=0.05"].passed  # 0.04 worse
    assert results["perplexity:maxRegression=1"].passed  # lower is better: 0.5 worse
    worse = check_gates([Gate(metric="tokenF1", max_regression=0.01)], cand, base)[0]
    assert not worse.passed and "regression 0.04" in worse.message


def test_gate_on_a_missing_metric_fails() -> None:
    result = check_gates([Gate(metric="judge", min=5)], {"exactMatch": 1.0}, None)[0]
    assert not result.passed and "no value" in result.message


def test_perplexity_by_hand() -> None:
    losses = TokenLosses(nll=[2.0, 4.0], tokens=[2, 2])  # mean NLL 1.5 per token
    agg = perplexity(losses, samples=100, seed=0)
    assert agg.mean == pytest.approx(math.exp(1.5))
    assert agg.ci_low <= agg.mean <= agg.ci_high
