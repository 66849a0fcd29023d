"""The Arrow tokenizer: exact tokens, long documents cut without loss, counts and LineSentence output."""

from __future__ import annotations

import collections
import re

import pyarrow as pa
import pytest

from shards.errors import ConfigError
from shards.tokenize import TokenizerConfig, count_words, to_lines, tokenize


def reference(text: str, config: TokenizerConfig) -> list[str]:
    """An independent, per-document Python tokenizer with the default pattern's semantics."""
    text = text.lower() if config.lowercase else text
    tokens = re.findall(r"[^\W\d_]+", text)
    return [t for t in tokens if config.min_token_len <= len(t) <= config.max_token_len]


def test_tokens_match_an_independent_reference() -> None:
    docs = ["Hello, World! 42 times", "naïve café — résumé", "snake_case and CamelCase", "a bb ccc", "日本語 Привет"]
    config = TokenizerConfig()
    assert tokenize(pa.array(docs), config).to_pylist() == [reference(d, config) for d in docs]


def test_null_empty_and_tokenless_documents_vanish() -> None:
    result = tokenize(pa.array([None, "", "   ", "12 34 !!", "ok then"]), TokenizerConfig())
    assert result.to_pylist() == [["ok", "then"]]


def test_options_change_the_tokens() -> None:
    docs = pa.array(["Ünïcödé Words go here"])
    assert tokenize(docs, TokenizerConfig(lowercase=False)).to_pylist() == [["Ünïcödé", "Words", "go", "here"]]
    assert tokenize(docs, TokenizerConfig(deaccent=True)).to_pylist() == [["unicode", "words", "go", "here"]]
    assert tokenize(docs, TokenizerConfig(min_token_len=3, max_token_len=5)).to_pylist() == [["words", "here"]]
    digits = TokenizerConfig(token_pattern=r"[a-z0-9]+")
    assert tokenize(pa.array(["ab1 c2d, x"]), digits).to_pylist() == [["ab1", "c2d"]]


def test_long_documents_are_cut_into_equal_pieces_without_losing_a_token() -> None:
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" for i in range(25_003)]
    config = TokenizerConfig(token_pattern=r"[a-z]+")
    words = [w.replace("w", "z") for w in words]
    docs = [" ".join(words), "short doc", " ".join(words[:10_000]), " ".join(words[:9_999])]
    result = tokenize(pa.array(docs), config).to_pylist()
    assert [len(s) for s in result] == [8_335, 8_334, 8_334, 2, 5_000, 5_000, 9_999]
    assert [t for s in result[:3] for t in s] == words
    assert [t for s in result[4:6] for t in s] == words[:10_000]


def test_whitespace_a_pattern_matches_is_stripped_from_its_tokens() -> None:
    """gensim's reader splits at whitespace: a token holding some would be trained as several words."""
    docs = pa.array(["ab\tcd ef\ngh kl\u3000mn", "op\u00a0qr"])
    result = tokenize(docs, TokenizerConfig(token_pattern=r"\w+\s\w+|\w+\x{3000}\w+|\w+\x{a0}\w+")).to_pylist()
    assert result == [["abcd", "efgh", "klmn"], ["opqr"]]


def test_counts_and_lines_agree_with_the_sentences() -> None:
    sentences = tokenize(pa.array(["the cat saw the dog", None, "the end"]), TokenizerConfig())
    counts = count_words(sentences).to_pydict()
    assert dict(zip(counts["word"], counts["count"], strict=True)) == {"the": 3, "cat": 1, "saw": 1, "dog": 1, "end": 1}
    assert to_lines(sentences) == b"the cat saw the dog\nthe end\n"
    assert to_lines(sentences.slice(1)) == b"the end\n"
    assert to_lines(sentences.slice(0, 0)) == b""


def test_many_scripts_and_emoji() -> None:
    text = "Привет мир مرحبا بالعالم 日本語 😀 naïve e\u0301cole"
    tokens = tokenize(pa.array([text]), TokenizerConfig()).to_pylist()[0]
    assert tokens == ["привет", "мир", "مرحبا", "بالعالم", "日本語", "naïve", "e\u0301cole"]
    assert collections.Counter(tokens)["мир"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_token_len": 0}, "min_token_len"),
        ({"min_token_len": 5, "max_token_len": 3}, "max_token_len"),
        ({"max_sentence_tokens": 10_000}, "max_sentence_tokens"),
        ({"token_pattern": "[a-"}, "not a valid RE2 regex"),
    ],
)
def test_invalid_config_is_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TokenizerConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), pa.string_view()])
def test_every_arrow_text_type_tokenizes_alike(kind: pa.DataType) -> None:
    docs = ["Hello, World! Hello", None, "naïve café"]
    sentences = tokenize(pa.array(docs, kind), TokenizerConfig())
    assert sentences.to_pylist() == [["hello", "world", "hello"], ["naïve", "café"]]
    assert to_lines(sentences) == "hello world hello\nnaïve café\n".encode()
    counts = count_words(sentences)
    assert counts.schema.field("word").type == pa.string()
    assert dict(zip(*counts.to_pydict().values(), strict=True)) == {"hello": 2, "world": 1, "naïve": 1, "café": 1}
