"""Features laid out by hand (run_squad's windowing over chosen word pieces) and hand-made
logits: the answer-extraction and evaluate tests know exactly which answer each should give."""

from __future__ import annotations

import numpy as np

from spanqa.data.features import Features
from spanqa.data.squad import Example
from spanqa.settings import FeatureSettings


def _is_max_context(spans, cur, position):
    best_score, best = None, None
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        s = min(position - start, end - position) + 0.01 * length
        if best_score is None or s > best_score:
            best_score, best = s, i
    return cur == best


def hand_features(examples, wordpiece, *, do_lower_case, max_seq_length=64, doc_stride=128, query_len=3):
    """run_squad-style features of ``examples``: ``wordpiece(word)`` gives each word's pieces, the
    question is ``query_len`` "q" pieces; input ids are 1 on real tokens (no model reads them)."""
    tokens, t2o, ctx, ex_idx, span_idx = [], [], [], [], []
    for e_i, ex in enumerate(examples):
        query = ["q"] * query_len
        tok_to_orig, all_doc = [], []
        for i, w in enumerate(ex.doc_tokens):
            for p in wordpiece(w):
                tok_to_orig.append(i)
                all_doc.append(p)
        max_doc = max_seq_length - len(query) - 3
        spans, start = [], 0
        while start < len(all_doc):
            length = min(len(all_doc) - start, max_doc)
            spans.append((start, length))
            if start + length == len(all_doc):
                break
            start += min(length, doc_stride)
        for s_i, (start, length) in enumerate(spans):
            toks, m, c = ["[CLS]", *query, "[SEP]"], {}, {}
            for k in range(length):
                m[len(toks)] = tok_to_orig[start + k]
                c[len(toks)] = _is_max_context(spans, s_i, start + k)
                toks.append(all_doc[start + k])
            toks.append("[SEP]")
            tokens.append(toks)
            t2o.append(m)
            ctx.append(c)
            ex_idx.append(e_i)
            span_idx.append(s_i)
    n = len(tokens)
    mask = np.zeros((n, max_seq_length), dtype=np.int64)
    for i, t in enumerate(tokens):
        mask[i, : len(t)] = 1
    return Features(
        settings=FeatureSettings(max_seq_length=max_seq_length, doc_stride=doc_stride, do_lower_case=do_lower_case),
        input_ids=mask.copy(),
        input_mask=mask,
        segment_ids=np.zeros_like(mask),
        example_index=np.array(ex_idx, dtype=np.int64),
        span_index=np.array(span_idx, dtype=np.int64),
        tokens=tokens,
        token_to_orig_map=t2o,
        token_is_max_context=ctx,
        examples=examples,
    )


def peaked(features, starts: dict, ends: dict, width=None, base=-10.0):
    """Logits at ``base`` everywhere except {(feature, position): value}."""
    width = width or features.settings.max_seq_length
    s = np.full((len(features), width), base, dtype=np.float32)
    e = np.full((len(features), width), base, dtype=np.float32)
    for (f, p), v in starts.items():
        s[f, p] = v
    for (f, p), v in ends.items():
        e[f, p] = v
    return s, e


def position(features, f, piece, nth=0):
    hits = [i for i, t in enumerate(features.tokens[f]) if t == piece and i in features.token_to_orig_map[f]]
    return hits[nth]


def example(words, qid="q1", answers_=()):
    return Example(qas_id=qid, question_text="q?", doc_tokens=words.split(" "), answers=list(answers_))


def pieces(table: dict):
    """A word-piece function: ``table``'s pieces for the words it names, the word itself otherwise."""
    return lambda w: table.get(w, [w])
