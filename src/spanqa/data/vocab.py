"""Tokenizer settings that travel with a model: which WordPiece vocab, and whether to lower-case.

SpanBERT's fine-tuned checkpoints carry no vocab: they use the bert-base-cased vocab with
do_lower_case=False, which ships inside this package. A checkpoint or model package directory
that holds ``vocab.txt`` (and optionally ``tokenizer_config.json``) overrides that.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from spanqa.errors import CheckpointError

DEFAULT_VOCAB_NAME = "bert-base-cased-vocab.txt"


def default_vocab_path() -> Path:
    """The bert-base-cased vocab SpanBERT uses (28,996 tokens), shipped as package data."""
    return Path(str(resources.files("spanqa") / "data" / DEFAULT_VOCAB_NAME))


@dataclass(frozen=True)
class TokenizerSettings:
    vocab_path: Path
    do_lower_case: bool

    def to_json(self) -> dict:
        return {"vocab_file": self.vocab_path.name, "do_lower_case": self.do_lower_case}


def _vocab_is_cased(vocab_path: Path) -> bool:
    # An uncased vocab has no ASCII capitals (symbols such as "ℝ" count as upper case in
    # Unicode, so only A-Z decide); a cased one has thousands of words like "The".
    with open(vocab_path, encoding="utf-8") as f:
        return any("A" <= line[:1] <= "Z" for line in f)


def resolve_tokenizer(model_dir: str | Path, strict: bool = False) -> TokenizerSettings:
    """Tokenizer settings for a checkpoint or model package directory (or a file inside one).

    Without its own vocab.txt a checkpoint uses SpanBERT's (cased). ``strict`` refuses a
    directory that is neither a checkpoint nor a model package (a features folder, an empty
    folder), where that fallback would silently pick the wrong vocab.
    """
    model_dir = Path(model_dir)
    if model_dir.is_file():
        model_dir = model_dir.parent
    if strict and not any((model_dir / name).is_file() for name in ("vocab.txt", "config.json", "manifest.json")):
        raise CheckpointError(
            f"{model_dir}: neither a checkpoint (config.json) nor a model package (vocab.txt, manifest.json); "
            "pass the model's directory, or --vocab"
        )
    if strict and (model_dir / "manifest.json").is_file() and not (model_dir / "vocab.txt").is_file():
        raise CheckpointError(f"{model_dir}: holds no vocab.txt (a features folder?); pass the model's directory, or --vocab")
    vocab = model_dir / "vocab.txt"
    config = model_dir / "tokenizer_config.json"
    lower: bool | None = None
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("do_lower_case")
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise CheckpointError(f"{config}: not a readable JSON object ({exc}); fix or delete it") from None
        if value is not None:
            lower = bool(value)
    if vocab.is_file():
        if lower is None:
            lower = not _vocab_is_cased(vocab)
        return TokenizerSettings(vocab, lower)
    return TokenizerSettings(default_vocab_path(), False if lower is None else lower)


def write_tokenizer_files(settings: TokenizerSettings, out_dir: str | Path) -> None:
    """Copy the vocab and write tokenizer_config.json into a model package directory."""
    out_dir = Path(out_dir)
    if settings.vocab_path.resolve() != (out_dir / "vocab.txt").resolve():
        shutil.copyfile(settings.vocab_path, out_dir / "vocab.txt")
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": settings.do_lower_case, "tokenizer_class": "BertTokenizer"}, indent=2) + "\n",
        encoding="utf-8",
    )
