"""Compiling exported models for targets into model packages (the recipe's .om step)."""
