"""An independent, slow reference for SQuAD preprocessing.

Pure Python throughout: the tokenizer is transformers 5's ``BertTokenizerLegacy`` (the
pure-Python BasicTokenizer + WordpieceTokenizer; transformers' ``BertTokenizer`` runs on the
same Rust ``tokenizers`` as spanqa and would check nothing), and the reading / windowing /
max-context algorithm is written out below after SpanBERT's (and Google BERT's) run_squad.py.

Two deliberate departures from the legacy class, both towards run_squad.py:
* its BasicTokenizer NFC-normalises text before splitting; SpanBERT's never does (they differ
  on decomposed accents such as "cafe" + U+0301), so that step is taken out here;
* its ``tokenize()`` protects special tokens such as "[SEP]" found in text; Google BERT's
  BasicTokenizer has no such list, so the basic and wordpiece tokenizers are called directly.

Only the per-word result of the tokenizer is memoised (a pure function of the word), to keep
the whole dev set affordable in CI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


def reference_tokenizer(vocab_file, do_lower_case: bool):
    from transformers.models.bert.tokenization_bert_legacy import (
        BasicTokenizer,
        BertTokenizerLegacy,
        whitespace_tokenize,
    )

    class BasicTokenizerNoNFC(BasicTokenizer):
        # BasicTokenizer.tokenize minus the NFC step (and no never_split, as in Google BERT).
        def tokenize(self, text, never_split=None):
            text = self._clean_text(text)
            if self.tokenize_chinese_chars:
                text = self._tokenize_chinese_chars(text)
            orig_tokens = whitespace_tokenize(text)
            split_tokens = []
            for token in orig_tokens:
                if self.do_lower_case:
                    token = token.lower()
                    if self.strip_accents is not False:
                        token = self._run_strip_accents(token)
                elif self.strip_accents:
                    token = self._run_strip_accents(token)
                split_tokens.extend(self._run_split_on_punc(token))
            return whitespace_tokenize(" ".join(split_tokens))

    legacy = BertTokenizerLegacy(str(vocab_file), do_lower_case=do_lower_case)
    return RefTokenizer(
        vocab=legacy.vocab,
        basic=BasicTokenizerNoNFC(do_lower_case=do_lower_case, tokenize_chinese_chars=True),
        wordpiece=legacy.wordpiece_tokenizer,
        legacy=legacy,
    )


@dataclass
class RefTokenizer:
    vocab: dict
    basic: object
    wordpiece: object
    legacy: object  # kept to show the NFC trap in tests
    cache: dict = field(default_factory=dict)

    def tokenize(self, text: str) -> list[str]:
        out = []
        for token in self.basic.tokenize(text):
            out.extend(self.wordpiece.tokenize(token))
        return out

    def tokenize_word(self, word: str) -> list[str]:
        pieces = self.cache.get(word)
        if pieces is None:
            pieces = self.cache[word] = self.tokenize(word)
        return pieces

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[t] for t in tokens]


# --- run_squad.py, written out -----------------------------------------------------------------


def is_whitespace(c):
    return c == " " or c == "\t" or c == "\r" or c == "\n" or ord(c) == 0x202F


def split_doc(paragraph_text):
    doc_tokens = []
    prev_is_whitespace = True
    for c in paragraph_text:
        if is_whitespace(c):
            prev_is_whitespace = True
        else:
            if prev_is_whitespace:
                doc_tokens.append(c)
            else:
                doc_tokens[-1] += c
            prev_is_whitespace = False
    return doc_tokens


def read_squad_examples(input_file):
    """(qas_id, question_text, doc_tokens) of every question."""
    with open(input_file, encoding="utf-8") as reader:
        input_data = json.load(reader)["data"]
    examples = []
    for entry in input_data:
        for paragraph in entry["paragraphs"]:
            doc_tokens = split_doc(paragraph["context"])
            for qa in paragraph["qas"]:
                examples.append((qa["id"], qa["question"], doc_tokens))
    return examples


def _check_is_max_context(doc_spans, cur_span_index, position):
    best_score = None
    best_span_index = None
    for span_index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start:
            continue
        if position > end:
            continue
        num_left_context = position - start
        num_right_context = end - position
        score = min(num_left_context, num_right_context) + 0.01 * length
        if best_score is None or score > best_score:
            best_score = score
            best_span_index = span_index
    return cur_span_index == best_span_index


@dataclass
class RefFeature:
    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list
    token_to_orig_map: dict
    token_is_max_context: dict
    input_ids: list
    input_mask: list
    segment_ids: list


def convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length):
    """``examples``: (question_text, doc_tokens) pairs."""
    unique_id = 1000000000
    features = []
    for example_index, (question_text, doc_words) in enumerate(examples):
        query_tokens = tokenizer.tokenize(question_text)
        if len(query_tokens) > max_query_length:
            query_tokens = query_tokens[0:max_query_length]

        tok_to_orig_index = []
        all_doc_tokens = []
        for i, token in enumerate(doc_words):
            sub_tokens = tokenizer.tokenize_word(token)
            for sub_token in sub_tokens:
                tok_to_orig_index.append(i)
                all_doc_tokens.append(sub_token)

        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3
        doc_spans = []
        start_offset = 0
        while start_offset < len(all_doc_tokens):
            length = len(all_doc_tokens) - start_offset
            if length > max_tokens_for_doc:
                length = max_tokens_for_doc
            doc_spans.append((start_offset, length))
            if start_offset + length == len(all_doc_tokens):
                break
            start_offset += min(length, doc_stride)

        for doc_span_index, (span_start, span_length) in enumerate(doc_spans):
            tokens = []
            token_to_orig_map = {}
            token_is_max_context = {}
            segment_ids = []
            tokens.append("[CLS]")
            segment_ids.append(0)
            for token in query_tokens:
                tokens.append(token)
                segment_ids.append(0)
            tokens.append("[SEP]")
            segment_ids.append(0)

            for i in range(span_length):
                split_token_index = span_start + i
                token_to_orig_map[len(tokens)] = tok_to_orig_index[split_token_index]
                is_max_context = _check_is_max_context(doc_spans, doc_span_index, split_token_index)
                token_is_max_context[len(tokens)] = is_max_context
                tokens.append(all_doc_tokens[split_token_index])
                segment_ids.append(1)
            tokens.append("[SEP]")
            segment_ids.append(1)

            input_ids = tokenizer.convert_tokens_to_ids(tokens)
            input_mask = [1] * len(input_ids)
            while len(input_ids) < max_seq_length:
                input_ids.append(0)
                input_mask.append(0)
                segment_ids.append(0)
            assert len(input_ids) == max_seq_length

            features.append(
                RefFeature(
                    unique_id=unique_id,
                    example_index=example_index,
                    doc_span_index=doc_span_index,
                    tokens=tokens,
                    token_to_orig_map=token_to_orig_map,
                    token_is_max_context=token_is_max_context,
                    input_ids=input_ids,
                    input_mask=input_mask,
                    segment_ids=segment_ids,
                )
            )
            unique_id += 1
    return features


def mismatches(features, ref_features, limit: int = 5) -> list[str]:
    """Human-readable differences between spanqa Features and the reference (empty if equal)."""
    out = []
    if len(features) != len(ref_features):
        out.append(f"{len(features)} features, reference has {len(ref_features)}")
    unique_ids = features.unique_ids.tolist()
    for i, ref in enumerate(ref_features[: len(features)]):
        checks = {
            "unique_id": (unique_ids[i], ref.unique_id),
            "example_index": (int(features.example_index[i]), ref.example_index),
            "span_index": (int(features.span_index[i]), ref.doc_span_index),
            "tokens": (features.tokens[i], ref.tokens),
            "input_ids": (features.input_ids[i].tolist(), ref.input_ids),
            "input_mask": (features.input_mask[i].tolist(), ref.input_mask),
            "segment_ids": (features.segment_ids[i].tolist(), ref.segment_ids),
            "token_to_orig_map": (features.token_to_orig_map[i], ref.token_to_orig_map),
            "token_is_max_context": (features.token_is_max_context[i], ref.token_is_max_context),
        }
        for name, (got, want) in checks.items():
            if got != want:
                out.append(f"feature {i} {name}: got {str(got)[:200]} want {str(want)[:200]}")
        if len(out) >= limit:
            break
    return out
