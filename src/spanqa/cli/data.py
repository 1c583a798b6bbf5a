"""CLI commands (data)."""

from __future__ import annotations

from pathlib import Path

import click

from spanqa.cli._common import input_path, output_path, overwrite_option, quiet_option, setting
from spanqa.settings import FeatureSettings


@click.command("preprocess")
@click.argument("dataset", type=input_path("squad", exists=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=output_path("features"),
    help="Features directory to write (a new or empty one; --overwrite replaces a features directory).",
)
@click.option(
    "--model",
    type=input_path("model", exists=True),
    help="Checkpoint or model package directory whose vocab and casing to use.",
)
@click.option(
    "--vocab",
    type=input_path("file", exists=True, dir_okay=False),
    help="A WordPiece vocab.txt (cased unless --lower-case).",
)
@click.option("--lower-case", is_flag=True, help="Lower-case and strip accents (only with --vocab).")
@setting(FeatureSettings, "max_seq_length", "--max-seq-length", type=click.IntRange(min=4))
@setting(
    FeatureSettings,
    "doc_stride",
    "--doc-stride",
    type=click.IntRange(min=1),
    help="How far each context window's start advances (a step, not an overlap).",
)
@setting(FeatureSettings, "max_query_length", "--max-query-length", type=click.IntRange(min=0))
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Rows per input file (the last one padded with zero rows).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["bin", "npy"]),
    default="bin",
    show_default=True,
    help="bin: raw int64 (msame); npy: NumPy files (ais_bench).",
)
@click.option(
    "--version-2-with-negative/--no-version-2-with-negative",
    "version_2",
    default=None,
    help="Record that these features are for SQuAD 2.0 answers ('spanqa evaluate' then lets the model answer "
    '"") [default: on for a 2.0 dataset or a --model built for 2.0]. The features themselves are the same.',
)
@overwrite_option
@quiet_option
def preprocess(
    dataset: Path,
    out_dir: Path,
    model: Path | None,
    vocab: Path | None,
    lower_case: bool,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    batch_size: int,
    fmt: str,
    version_2: bool | None,
    overwrite: bool,
) -> None:
    """Turn a SQuAD DATASET.json into the recipe's input folders plus feature metadata.

    Tokenizer: the --model's vocab and casing, or --vocab [--lower-case], or by default
    SpanBERT's (bert-base-cased vocab, no lower-casing).
    """
    from spanqa.data.folders import preprocess as run_preprocess
    from spanqa.data.vocab import TokenizerSettings, default_vocab_path, resolve_tokenizer

    if model is not None and vocab is not None:
        raise click.UsageError("give either --model or --vocab, not both")
    if lower_case and vocab is None:
        raise click.UsageError("--lower-case goes with --vocab (a --model carries its own casing)")
    if model is not None:
        tokenizer = resolve_tokenizer(model, strict=True)
    elif vocab is not None:
        tokenizer = TokenizerSettings(vocab, lower_case)
    else:
        tokenizer = TokenizerSettings(default_vocab_path(), False)
    settings = FeatureSettings(
        max_seq_length=max_seq_length,
        doc_stride=doc_stride,
        max_query_length=max_query_length,
        do_lower_case=tokenizer.do_lower_case,
    )
    settings.check()
    if version_2 is None and model is not None and _model_squad_version(model) == 2:
        version_2 = True
    features, manifest = run_preprocess(
        dataset, out_dir, tokenizer, settings, batch_size, fmt, overwrite=overwrite, version_2_with_negative=version_2
    )
    click.echo(
        f"{manifest['num_features']} features for {manifest['num_examples']} questions "
        f"({'uncased' if tokenizer.do_lower_case else 'cased'}, {tokenizer.vocab_path.name}) -> "
        f"{out_dir}: {manifest['num_batches']} batches of {batch_size} ({fmt}), "
        f"{manifest['num_padding_rows']} padding rows"
    )


def _model_squad_version(model: Path) -> int | None:
    from spanqa.answers.squad2 import detect_squad_version, package_squad_version
    from spanqa.models.manifest import MANIFEST_NAME
    from spanqa.models.package import open_package

    if (model / MANIFEST_NAME).is_file():
        return package_squad_version(open_package(model))
    return detect_squad_version(model)


COMMANDS: list[click.Command] = [preprocess]
