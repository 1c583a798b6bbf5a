"""Data only: SQuAD reading, WordPiece tokenization, run_squad features, the recipe's folders."""
