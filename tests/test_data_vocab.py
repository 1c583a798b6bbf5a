import json

from spanqa.data.vocab import TokenizerSettings, default_vocab_path, resolve_tokenizer, write_tokenizer_files
from spanqa.fileutil import sha256_file


def test_shipped_vocab_is_bert_base_cased(shared_dir):
    sums = dict(
        reversed(line.split(None, 1)) for line in (shared_dir / "data" / "SHA256SUMS").read_text().splitlines() if line.strip()
    )
    assert sha256_file(default_vocab_path()) == sums["vocab/bert-base-cased-vocab.txt"]
    assert len(default_vocab_path().read_text(encoding="utf-8").splitlines()) == 28996


def test_default_is_spanbert_cased(tmp_path):
    assert resolve_tokenizer(tmp_path) == TokenizerSettings(default_vocab_path(), False)


def test_vocab_without_config_guesses_casing(tmp_path, shared_dir):
    (tmp_path / "vocab.txt").write_bytes((shared_dir / "data/vocab/bert-base-uncased-vocab.txt").read_bytes())
    assert resolve_tokenizer(tmp_path).do_lower_case is True
    (tmp_path / "vocab.txt").write_bytes(default_vocab_path().read_bytes())
    assert resolve_tokenizer(tmp_path).do_lower_case is False


def test_config_wins_and_round_trips(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    settings = resolve_tokenizer(tmp_path)
    assert settings == TokenizerSettings(default_vocab_path(), True)
    out = tmp_path / "pkg"
    out.mkdir()
    write_tokenizer_files(settings, out)
    assert resolve_tokenizer(out) == TokenizerSettings(out / "vocab.txt", True)
