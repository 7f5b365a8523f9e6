"""Train small tokenizers locally (byte-level BPE or characters), as HF fast tokenizers.

Used by the dataprep step (``tokenizer.train``), by the finetune step when a model designed
from scratch has no tokenizer, and by tests to build tiny models without any download.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}
# A minimal ChatML-style template, used when a tokenizer has none.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def train_tokenizer(
    texts: Iterable[str],
    kind: Literal["bpe", "char"] = "bpe",
    vocab_size: int = 4096,
    min_frequency: int = 2,
) -> Any:
    """A ``PreTrainedTokenizerFast`` trained on ``texts``.

    ``bpe`` is byte-level BPE (never produces unknown tokens); ``char`` has one token per
    character seen (plus the special tokens), for character-level models.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    if kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
    elif kind == "char":
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        vocab = {token: i for i, token in enumerate(specials)}
        for ch in sorted(chars):
            vocab.setdefault(ch, len(vocab))
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
        tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
        tok.decoder = decoders.Fuse()
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected bpe or char")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.chat_template = DEFAULT_CHAT_TEMPLATE
    return fast


def ensure_special_tokens(tokenizer: Any) -> Any:
    """Give a tokenizer a pad token (eos) and a chat template when it lacks them."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return tokenizer
