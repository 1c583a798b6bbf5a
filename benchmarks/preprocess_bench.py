"""Full-dev-set SQuAD preprocessing: spanqa (Rust WordPiece) against the slow pure-Python
reference of reference/squad_reference.py, timed side by side in one run.

    python benchmarks/preprocess_bench.py [--dataset ../shared/data/squad/dev-v1.1.json]
        [--repeats 3] [--uncased] [--json out.json]

Rows (medians over --repeats runs, interleaved so drift hits all rows alike):
  spanqa build_features     read_squad + build_features, tokenizer already built
  spanqa cold               the same, in-process tokenizer cache cleared (builds the Rust
                            tokenizer and its Unicode tables, about 1 s)
  spanqa write (bin, bs=1)  write_features of those features (the recipe's 3 x N files)
  reference (run_squad)     reading + run_squad.py's convert_examples_to_features with the
                            pure-Python tokenizer, every word of every question's context
                            tokenised again, as run_squad.py does
  reference (memo words)    the same with the per-word memo the tests use
Every run's features are checked equal to the reference's before timing is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "reference"))

import squad_reference as R  # noqa: E402

from spanqa.data import tokenization  # noqa: E402
from spanqa.data.features import build_features  # noqa: E402
from spanqa.data.folders import write_features  # noqa: E402
from spanqa.data.squad import read_squad  # noqa: E402
from spanqa.data.vocab import TokenizerSettings, default_vocab_path  # noqa: E402
from spanqa.settings import FeatureSettings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "squad" / "dev-v1.1.json")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--uncased", action="store_true", help="bert-base-uncased vocab, lower-cased")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    if args.uncased:
        vocab = ROOT.parent / "shared" / "data" / "vocab" / "bert-base-uncased-vocab.txt"
    else:
        vocab = default_vocab_path()
    tok = TokenizerSettings(vocab, args.uncased)
    s = FeatureSettings(512, 128, 64)

    def spanqa_warm():
        return build_features(read_squad(args.dataset), tok, s)

    def spanqa_cold():
        tokenization._cached.cache_clear()
        tokenization._patterns.cache_clear()
        return build_features(read_squad(args.dataset), tok, s)

    def reference(memo: bool):
        def run():
            ref_tok = R.reference_tokenizer(vocab, args.uncased)
            if not memo:
                ref_tok.tokenize_word = ref_tok.tokenize
            examples = R.read_squad_examples(args.dataset)
            return R.convert_examples_to_features([(q, d) for _, q, d in examples], ref_tok, 512, 128, 64)

        return run

    features = spanqa_warm()  # warm-up: builds the tokenizer once
    tmp = Path(tempfile.mkdtemp(prefix="spanqa-bench-"))

    def write():
        write_features(features, tmp / "features", batch_size=1, fmt="bin")

    rows = {
        "spanqa build_features": spanqa_warm,
        "spanqa cold": spanqa_cold,
        "spanqa write (bin, bs=1)": write,
        "reference (run_squad)": reference(memo=False),
        "reference (memo words)": reference(memo=True),
    }
    times: dict[str, list[float]] = {k: [] for k in rows}
    ref_features = None
    for _ in range(args.repeats):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            if name.startswith("reference"):
                ref_features = out
            elif name != "spanqa write (bin, bs=1)":
                features = out
        problems = R.mismatches(features, ref_features)
        if problems:
            raise SystemExit("features differ from the reference: " + "; ".join(problems))

    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["spanqa build_features"]
    print(
        f"dataset {args.dataset.name}: {len(features)} features, "
        f"{'uncased' if args.uncased else 'cased'}, 512/128/64; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        f"median of {args.repeats}"
    )
    print(f"{'step':28s} {'median s':>9s} {'vs spanqa':>10s}")
    for name, m in med.items():
        print(f"{name:28s} {m:9.2f} {m / base:9.1f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"features": len(features), "uncased": args.uncased, "repeats": args.repeats, "times": times, "median": med},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
