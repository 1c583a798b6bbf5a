"""Logits to answers (run_squad's extraction), official SQuAD scores, result directories."""
