"""WordPiece through Hugging Face ``tokenizers``, configured to match BERT's reference tokenizer.

The reference is Google BERT's ``BasicTokenizer`` + ``WordpieceTokenizer`` (the same code
SpanBERT's run_squad.py uses), run on this Python's ``unicodedata``:

* drop NUL, U+FFFD and every character whose category starts with "C" (controls, format,
  private use, surrogates *and unassigned code points*) except tab, CR and LF;
* turn tab/CR/LF and category Zs into spaces, split on whitespace;
* put spaces around CJK ideographs;
* uncased only: lower-case, then NFD and drop category Mn (no NFC step before, ever);
* split off every punctuation character (ASCII symbols and category P*) as its own word;
* greedy longest-match-first WordPiece, ``##`` continuations, ``[UNK]`` for a word of more
  than 100 characters or one that cannot be pieced.

The stock Rust ``BertNormalizer`` + ``BertPreTokenizer`` get almost all of that, but their
Unicode tables are not Python's: they keep unassigned code points, miss punctuation added
since Unicode 9 (and still split two characters that are no longer punctuation), and their
CJK table lacks U+2B820..U+2B91F. So the character classes below are built from
``unicodedata`` itself and handed to the Rust normaliser / pre-tokeniser as regexes; the
Rust code still does all the work per character.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from spanqa.data.vocab import TokenizerSettings

if TYPE_CHECKING:
    import numpy as np
from spanqa.errors import DatasetError

UNK, CLS, SEP = "[UNK]", "[CLS]", "[SEP]"
MAX_INPUT_CHARS_PER_WORD = 100

# BERT's _is_chinese_char ranges (tokenization.py in Google BERT and SpanBERT).
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


# Lone surrogates (possible in a Python str, e.g. from a JSON "\\ud800" escape) cannot cross into
# Rust. BERT's _clean_text drops them anyway (category Cs), and does so before anything else.
_SURROGATES = re.compile("[\ud800-\udfff]")


def _is_removed(cp: int) -> bool:
    """BERT's _clean_text drops these (NUL, U+FFFD, _is_control)."""
    if cp in (0, 0xFFFD):
        return True
    if cp in (0x09, 0x0A, 0x0D):
        return False
    return unicodedata.category(chr(cp)).startswith("C")


def _is_punctuation(cp: int) -> bool:
    """BERT's _is_punctuation: all non-alphanumeric ASCII printables, plus category P*."""
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(chr(cp)).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def _ranges(predicate) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = None
    for cp in range(sys.maxunicode + 2):
        hit = cp <= sys.maxunicode and not (0xD800 <= cp <= 0xDFFF) and predicate(cp)
        if hit and start is None:
            start = cp
        elif not hit and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def _char_class(ranges: list[tuple[int, int]]) -> str:
    parts = []
    for lo, hi in ranges:
        parts.append(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}")
    return "[" + "".join(parts) + "]"


# Bump when a predicate above changes: the classes cached on disk are keyed by it.
CLASSES_VERSION = 1


@functools.lru_cache(maxsize=1)
def _patterns() -> tuple[str, str, str, str]:
    """Regex classes: removed characters, characters that stand alone as a word, CJK
    ideographs, and non-spacing marks (category Mn, stripped when uncased).

    Building them is one pass over all code points (about 3 s), so every command that
    tokenises would start 3 s late: they are kept in the spanqa cache, keyed by this Python's
    Unicode version, and rebuilt when that file is missing or unreadable.
    """
    import json
    import os

    from spanqa.paths import cache_home

    path = cache_home() / "unicode" / f"classes-{unicodedata.unidata_version}-{sys.maxunicode}-v{CLASSES_VERSION}.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, list) and len(cached) == 4 and all(isinstance(c, str) for c in cached):
            return tuple(cached)
    except (OSError, ValueError):
        pass
    removed = _char_class(_ranges(_is_removed))
    alone = _char_class(_ranges(lambda cp: _is_punctuation(cp) or _is_cjk(cp)))
    cjk = _char_class(list(CJK_RANGES))
    marks = _char_class(_ranges(lambda cp: unicodedata.category(chr(cp)) == "Mn"))
    try:  # a cache that cannot be written costs time, never the answer
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps([removed, alone, cjk, marks]), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
    return removed, alone, cjk, marks


def read_vocab_tokens(vocab_path: Path) -> list[str]:
    """The vocab's lines, index = id (as BERT's load_vocab reads them)."""
    with open(vocab_path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


class BasicTokenizer:
    """BERT's BasicTokenizer (cleaning, CJK, casing, punctuation splits) on the Rust library,
    with character classes from this Python's ``unicodedata``. WordPiece runs on top of it;
    answer extraction's final-text alignment uses it alone."""

    def __init__(self, do_lower_case: bool):
        from tokenizers import Regex, normalizers, pre_tokenizers

        self.do_lower_case = bool(do_lower_case)
        removed, alone, cjk, marks = _patterns()
        # Up to (not including) lower-casing: BERT's _clean_text + _tokenize_chinese_chars.
        cleaning = [
            normalizers.Replace(Regex(removed), ""),
            normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False),
        ]
        casing = []
        if self.do_lower_case:
            # BERT lower-cases first, then NFD and drops Mn; BertNormalizer does it the other
            # way round and with an older Mn table.
            casing = [
                normalizers.Lowercase(),
                normalizers.NFD(),
                normalizers.Replace(Regex(marks), ""),
            ]
        self.cleaner = normalizers.Sequence(cleaning)
        self.normalizer = normalizers.Sequence(cleaning + casing)
        self.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(alone), behavior="isolated")]
        )
        # Python's str.lower() is context-sensitive in one place: a capital sigma that ends a
        # word becomes final sigma. Rust lower-cases char by char. Texts with a capital sigma
        # (rare) are cut into BERT's whitespace tokens and lower-cased by Python first.
        self.segmenter = None
        if self.do_lower_case:
            seg_pre = pre_tokenizers.Sequence(
                [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(cjk), behavior="isolated")]
            )
            self.segmenter = (self.cleaner, seg_pre)

    def python_lowered(self, text: str) -> list[str]:
        norm, pre = self.segmenter
        return [piece.lower() for piece, _ in pre.pre_tokenize_str(norm.normalize_str(text))]

    def clean(self, text: str) -> str:
        """BERT's _clean_text + _tokenize_chinese_chars: what whitespace splitting sees."""
        text = _SURROGATES.sub("", text) if _SURROGATES.search(text) else text
        return self.cleaner.normalize_str(text)

    def _split(self, text: str) -> list[str]:
        return [t for t, _ in self.pre_tokenizer.pre_tokenize_str(self.normalizer.normalize_str(text))]

    def tokenize(self, text: str) -> list[str]:
        """BasicTokenizer(do_lower_case).tokenize(text)."""
        text = _SURROGATES.sub("", text) if _SURROGATES.search(text) else text
        if self.segmenter is not None and "\u03a3" in text:
            return [t for piece in self.python_lowered(text) for t in self._split(piece)]
        return self._split(text)


@functools.lru_cache(maxsize=2)
def basic_tokenizer(do_lower_case: bool) -> BasicTokenizer:
    return BasicTokenizer(bool(do_lower_case))


class WordPiece:
    """BERT's reference tokenizer, run by the Rust ``tokenizers`` library.

    ``encode_texts`` tokenises whole texts (questions); ``encode_words`` tokenises lists of
    words, each word on its own, and says which word every piece came from (contexts).
    Both return word pieces without [CLS]/[SEP]: the caller lays those out. A literal "[SEP]"
    in text is split like any punctuation, as Google BERT's tokenizer does.
    """

    def __init__(self, settings: TokenizerSettings):
        from tokenizers import Tokenizer, models

        self.settings = settings
        path = Path(settings.vocab_path)
        try:
            self.vocab_tokens = read_vocab_tokens(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: cannot read the vocab ({exc}); pass a WordPiece vocab.txt") from None
        # Same token -> id mapping as BERT's load_vocab (a repeated line: the last id wins).
        vocab = {tok: i for i, tok in enumerate(self.vocab_tokens)}
        missing = [t for t in (UNK, CLS, SEP) if t not in vocab]
        if missing:
            raise DatasetError(f"{path}: not a BERT WordPiece vocab (no {', '.join(missing)}); pass the model's vocab.txt")
        self.vocab = vocab
        self.do_lower_case = bool(settings.do_lower_case)
        self.basic = basic_tokenizer(self.do_lower_case)
        tok = Tokenizer(models.WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
        tok.normalizer = self.basic.normalizer
        tok.pre_tokenizer = self.basic.pre_tokenizer
        self.tokenizer = tok
        self.cls_id = vocab[CLS]
        self.sep_id = vocab[SEP]
        self._segmenter = self.basic.segmenter

    def _python_lowered(self, text: str) -> list[str]:
        return self.basic.python_lowered(text)

    def encode_vocabulary(self, words: Iterable[str], chunk: int = 2048, on_chunk=None) -> WordTable:
        """Word pieces of each distinct word, each word tokenised on its own.

        Plain words go to Rust in parallel chunks (each chunk one pre-tokenised sequence);
        the rare word with a lone surrogate or (uncased) a capital sigma is prepared in Python
        first, as the module docstring explains.
        """
        import numpy as np

        unique = list(dict.fromkeys(words))
        plain: list[str] = []
        special: list[tuple[str, list[str]]] = []
        for word in unique:
            clean = _SURROGATES.sub("", word) if _SURROGATES.search(word) else word
            if self._segmenter is not None and "\u03a3" in clean:
                special.append((word, self._python_lowered(clean)))
            elif clean is not word:
                special.append((word, [clean]))
            else:
                plain.append(word)

        ids: list[list[int]] = []
        tokens: list[str] = []
        counts: list[np.ndarray] = []
        batches = [plain[i : i + chunk] for i in range(0, len(plain), chunk)]
        # A few chunks per encode_batch call: parallel in Rust, progress in between.
        for b in range(0, len(batches), 8):
            group = batches[b : b + 8]
            for part, enc in zip(
                group,
                self.tokenizer.encode_batch(group, is_pretokenized=True, add_special_tokens=False),
            ):
                ids.append(enc.ids)
                tokens.extend(enc.tokens)
                counts.append(np.bincount(np.asarray(enc.word_ids, dtype=np.int64), minlength=len(part)))
            if on_chunk is not None:
                on_chunk(sum(len(p) for p in group))
        for _, pieces in special:
            enc = self.tokenizer.encode(pieces, is_pretokenized=True, add_special_tokens=False)
            ids.append(enc.ids)
            tokens.extend(enc.tokens)
            counts.append(np.array([len(enc.ids)], dtype=np.int64))
        order = plain + [w for w, _ in special]
        count = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        flat_ids = np.fromiter((i for part in ids for i in part), dtype=np.int64, count=int(count.sum()))
        start = np.cumsum(count) - count
        return WordTable({w: i for i, w in enumerate(order)}, flat_ids, tokens, start, count)

    def encode_words(self, word_lists: list[list[str]]) -> list[tuple[np.ndarray, list[str], np.ndarray]]:
        """(ids, pieces, word index of each piece) of each list of words; every word is
        tokenised on its own, as run_squad.py does."""
        table = self.encode_vocabulary(w for words in word_lists for w in words)
        return [table.lookup(words) for words in word_lists]

    def encode_texts(self, texts: list[str]) -> list[tuple[np.ndarray, list[str]]]:
        """(ids, pieces) of each text, tokenised as a whole.

        Cutting a text at space, tab, CR, LF and U+202F first changes nothing (BERT splits
        there too and no token spans them), and lets texts share the per-word work.
        """
        word_lists = [split_words(t) for t in texts]
        out = []
        for ids, toks, _ in self.encode_words(word_lists):
            out.append((ids, toks))
        return out

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of one text."""
        return self.encode_texts([text])[0][1]


class WordTable:
    """Word pieces of a set of distinct words, stored flat."""

    def __init__(self, index, ids, tokens, start, count):
        self.index: dict[str, int] = index  # word -> row
        self.ids = ids  # int64, all words' piece ids back to back
        self.tokens: list[str] = tokens  # the same, as strings
        self.start = start  # int64 [words]: first piece of each word
        self.count = count  # int64 [words]: number of pieces of each word

    def lookup(self, words: list[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(ids, pieces, word index of each piece) of a list of words in this table."""
        import numpy as np

        rows = np.fromiter((self.index[w] for w in words), dtype=np.int64, count=len(words))
        count = self.count[rows]
        total = int(count.sum())
        word_ids = np.repeat(np.arange(len(words), dtype=np.int64), count)
        # Position k of the output is piece (k - first output of its word) of that word.
        first_out = np.cumsum(count) - count
        flat = np.repeat(self.start[rows] - first_out, count) + np.arange(total, dtype=np.int64)
        tokens = self.tokens
        return self.ids[flat], [tokens[i] for i in flat.tolist()], word_ids


_RUN_SQUAD_WORD = re.compile("[^ \t\r\n\u202f]+")


def split_words(text: str) -> list[str]:
    """run_squad.py's words: maximal runs of characters other than space, tab, CR, LF, U+202F."""
    return _RUN_SQUAD_WORD.findall(text)


def word_spans(text: str) -> tuple[list[str], list[int]]:
    """``split_words(text)`` and the character offset of each word in ``text``."""
    matches = list(_RUN_SQUAD_WORD.finditer(text))
    return [m.group() for m in matches], [m.start() for m in matches]


@functools.lru_cache(maxsize=8)
def _cached(vocab_path: str, do_lower_case: bool, _mtime_ns: int) -> WordPiece:
    return WordPiece(TokenizerSettings(Path(vocab_path), do_lower_case))


def make_tokenizer(settings: TokenizerSettings) -> WordPiece:
    """The (cached) tokenizer for these settings."""
    path = Path(settings.vocab_path)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise DatasetError(f"{path}: vocab not found ({exc.strerror}); pass an existing vocab.txt") from None
    return _cached(str(path.resolve()), bool(settings.do_lower_case), mtime)
