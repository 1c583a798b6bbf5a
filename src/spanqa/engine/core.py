"""``Engine``: a loaded model answering questions, the one path from strings to answers."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from spanqa.engine.batching import LogitsCollector, gather, plan_batches
from spanqa.engine.types import Answer, Evaluation, Prediction, Question, examples_from_questions
from spanqa.errors import InferenceError, UsageError
from spanqa.settings import EngineSettings, FeatureSettings


class Engine:
    """A loaded model answering questions, made from an open model package; close it (or use
    ``with``) to free the runtime. ``spanqa.Engine`` adds ``load`` (a package, a .onnx, or a
    checkpoint and a target: ``engine.loading``), which builds through the guard, itself
    answered by this class: loading sits above it."""

    def __init__(
        self,
        package,
        *,
        threads: int | None = None,
        settings: EngineSettings = EngineSettings(),
        runtime=None,
        throughput: bool = False,
    ):
        """``throughput``: keep several batches in flight (whole datasets: more questions/s, each
        batch slower) instead of one batch at a time on every thread (one question: least latency)."""
        from spanqa.runtimes import RuntimeOptions, open_runtime
        from spanqa.sysinfo import default_threads

        self.package = package
        self.threads = threads or default_threads()
        if runtime is None:
            runtime = open_runtime(package, RuntimeOptions(threads=self.threads, throughput=throughput))
        self.runtime = runtime
        from spanqa.answers.squad2 import resolve_version_2

        # A package built for SQuAD 2.0 answers "no answer" unless the settings say otherwise.
        answers = resolve_version_2(settings.answers, package=package)
        self.settings = replace(settings, features=self._fit_features(settings.features), answers=answers)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        close = getattr(self.runtime, "close", None)
        if callable(close):
            close()

    # ----------------------------------------------------------------------------------------
    # Settings that fit the model

    @property
    def max_positions(self) -> int:
        return self.package.max_positions

    def _fit_features(self, features: FeatureSettings | None) -> FeatureSettings:
        """Feature settings the model can run: a fixed-shape model's own length when none was
        asked for; a one-line error when the asked length cannot run on it."""
        fixed = self.runtime.seq_len
        if features is None:
            return FeatureSettings.for_model(fixed, self.max_positions)
        length = features.max_seq_length
        if fixed is not None and length > fixed:
            raise UsageError(
                f"--max-seq-length {length}: {self.package.root} was compiled for {fixed}-token inputs; "
                f"use --max-seq-length {fixed} (or less), or compile the model with --seq-len {length}"
            )
        if length > self.max_positions:
            raise UsageError(
                f"--max-seq-length {length}: the model has only {self.max_positions} positions; use at most {self.max_positions}"
            )
        return features

    def with_settings(self, settings: EngineSettings) -> Engine:
        """This engine with other feature/answer settings, sharing its loaded runtime."""
        return type(self)(self.package, threads=self.threads, settings=settings, runtime=self.runtime)

    @property
    def tokenizer(self):
        return self.package.tokenizer

    # ----------------------------------------------------------------------------------------
    # The stages

    def features(self, examples: Sequence) -> Any:
        from spanqa.data.features import build_features

        return build_features(examples, self.tokenizer, self.settings.features)

    def plan(self, features) -> list:
        return plan_batches(
            features.lengths,
            self.settings.batching,
            max_seq_length=features.settings.max_seq_length,
            fixed_batch=self.runtime.batch_size,
            fixed_seq=self.runtime.seq_len,
            batch_size=self.settings.batch_size,
        )

    def logits(self, features, desc: str = "infer", warmup: int | None = None, stats=None, bar=None):
        """Start/end logits [features, max_seq_length] and the timing statistics (added to
        ``stats`` when given; ``bar`` a progress bar to advance per batch). Positions the model
        did not compute (past a batch's padded length) hold -inf."""
        from spanqa.runtimes.loop import Batch, run_batches

        width = features.settings.max_seq_length
        if self.runtime.seq_len is not None and width > self.runtime.seq_len:
            raise InferenceError(
                f"features are {width} tokens long but the model takes {self.runtime.seq_len}; "
                f"rebuild them with --max-seq-length {self.runtime.seq_len}"
            )
        batches = self.plan(features)
        collector = LogitsCollector(len(features), width)
        by_key = {}

        def items():
            for i, plan in enumerate(batches):
                by_key[str(i)] = plan
                yield Batch(str(i), *gather(features.input_ids, features.segment_ids, features.input_mask, plan))

        def sink(batch, start, end):
            collector.add(by_key.pop(batch.key), start, end)

        warm = self.settings.warmup if warmup is None else warmup
        stats = run_batches(
            self.runtime, items(), warmup=warm, on_output=sink, total=len(batches), desc=desc, stats=stats, bar=bar
        )
        return collector.start, collector.end, stats

    def predict(self, examples: Sequence, desc: str = "infer", spans: bool = False) -> Prediction:
        """Answers to parsed examples (all in memory; ``stream`` bounds memory). More than
        ``settings.stream_questions`` examples run as a pipeline of chunks: the next chunk is
        tokenised and the last one's answers extracted while the model runs (``overlap``)."""
        from spanqa.answers.extraction import predict_answers

        if len(examples) > self.settings.stream_questions:
            from spanqa.engine.overlap import predict_overlapped

            return predict_overlapped(self, examples, desc, spans, self.settings.stream_questions)
        t0 = time.perf_counter()
        features = self.features(examples)
        t1 = time.perf_counter()
        start, end, stats = self.logits(features, desc=desc)
        t2 = time.perf_counter()
        a = predict_answers(features, start, end, self.settings.answers, spans=spans)
        t3 = time.perf_counter()
        timings = {"preprocess_s": t1 - t0, "inference_s": t2 - t1, "answers_s": t3 - t2, "wall_s": t3 - t0}
        return Prediction(a.predictions, a.nbest, features, start, end, stats, timings, a.null_odds, a.best_spans)

    def evaluate(self, examples: Sequence, desc: str = "infer") -> Evaluation:
        """``predict`` plus the official SQuAD scores against the examples' gold answers (the
        2.0 metrics for a 2.0 dataset or when the null answer is on)."""
        from spanqa.answers import squad2
        from spanqa.answers.scoring import score

        p = self.predict(examples, desc=desc)
        t0 = time.perf_counter()
        if p.null_odds is not None or squad2.is_squad2(examples):
            scores = squad2.score_examples(examples, p.predictions, p.null_odds, p.best_spans)
        else:
            scores = score(examples, p.predictions)
        p.timings["score_s"] = time.perf_counter() - t0
        return Evaluation(**vars(p), scores=scores)

    # ----------------------------------------------------------------------------------------
    # Strings in, answers out

    def answer(
        self, question: str, context: str, top_k: int = 1, handle_impossible_answer: bool | None = None
    ) -> Answer | list[Answer]:
        """The best answer (``top_k=1``) or the ``top_k`` best, as Hugging Face's pipeline does.
        ``handle_impossible_answer`` (as the pipeline's) turns the null answer on or off; None
        keeps the engine's setting (on for a package built for SQuAD 2.0)."""
        result = self.answer_many([Question(question, context, "0")], top_k, handle_impossible_answer)[0]
        return result[0] if top_k == 1 else result

    def answer_many(
        self, questions: Iterable, top_k: int = 1, handle_impossible_answer: bool | None = None
    ) -> list[list[Answer]]:
        """The ``top_k`` best answers of each question (Question, (question, context) or dict),
        with length-aware batching across all of them. The first is "" (start = end = 0) when
        the null answer is on and the model says there is no answer."""
        examples = examples_from_questions(questions)
        return self._answers(examples, top_k, desc="answer", version_2=handle_impossible_answer)

    def stream(self, questions: Iterable, top_k: int = 1, chunk: int | None = None) -> Iterator[list[tuple[Any, list[Answer]]]]:
        """Answers for any number of questions with bounded memory: questions are taken
        ``chunk`` at a time (features, logits and answers of one chunk at a time) and each
        chunk yields ``[(example, answers), ...]`` in input order."""
        size = chunk or self.settings.stream_questions
        buffer: list = []
        index = 0
        for item in questions:
            buffer.append(item)
            if len(buffer) >= size:
                yield self._chunk(buffer, index, top_k)
                index += len(buffer)
                buffer = []
        if buffer:
            yield self._chunk(buffer, index, top_k)

    def _chunk(self, items: list, index: int, top_k: int):
        from spanqa.data.squad import Example

        if all(isinstance(x, Example) for x in items):
            examples = items
        else:
            examples = examples_from_questions(items, start=index)
        return list(zip(examples, self._answers(examples, top_k, desc="answer")))

    def _answers(self, examples: list, top_k: int, desc: str, version_2: bool | None = None) -> list[list[Answer]]:
        if top_k < 1:
            raise UsageError(f"top_k {top_k}: must be at least 1")
        if not examples:
            return []
        settings = self.settings.answers
        if settings.n_best_size < top_k:
            settings = replace(settings, n_best_size=top_k)
        if version_2 is not None and version_2 != settings.version_2_with_negative:
            settings = replace(settings, version_2_with_negative=version_2)
        engine = self if settings is self.settings.answers else self.with_settings(replace(self.settings, answers=settings))
        p = engine.predict(examples, desc=desc, spans=True)
        out = []
        for ex in examples:
            nbest = p.nbest[ex.qas_id]
            odds = None
            if p.null_odds is not None:
                # The decision (odds against the threshold) leads, then the rest by score.
                odds = p.null_odds[ex.qas_id]
                lead = next((c for c in nbest if c["text"] == p.predictions[ex.qas_id]), nbest[0])
                nbest = [lead, *(c for c in nbest if c is not lead)]
            out.append([span_answer(ex, cand, odds) for cand in nbest[:top_k]])
        return out

    def info(self) -> dict:
        from spanqa.runtimes import runtime_info

        return {
            "model": str(self.package.root),
            "target": self.package.target,
            "precision": self.package.precision,
            "runtime": runtime_info(self.runtime),
            "threads": self.threads,
            "max_seq_length": self.settings.features.max_seq_length,
        }


def span_answer(example, cand: dict, null_odds: float | None = None) -> Answer:
    """An Answer whose offsets slice the example's context to its text."""
    start = end = 0
    text = ""  # no span fits (run_squad's "empty" placeholder, or the null answer)
    words = cand.get("orig_words")
    if words is not None and example.context is not None and example.word_starts is not None:
        first, last = words
        lo, hi = cand["orig_chars"]  # within " ".join(doc_tokens[first:last + 1])
        start = _context_offset(example, first, last, lo)
        end = _context_offset(example, first, last, hi - 1) + 1
        text = example.context[start:end]
    return Answer(
        example.qas_id,
        text,
        float(cand["probability"]),
        start,
        end,
        float(cand["start_logit"]),
        float(cand["end_logit"]),
        null_odds,
    )


def _context_offset(example, first: int, last: int, pos: int) -> int:
    """The context offset of character ``pos`` of the words first..last joined by single spaces."""
    for k in range(first, last + 1):
        n = len(example.doc_tokens[k])
        if pos < n:
            return example.word_starts[k] + pos
        pos -= n + 1  # the word and the space after it
    last_word = example.doc_tokens[last]
    return example.word_starts[last] + len(last_word) - 1
