"""The recipe's file-based steps: infer (msame), evaluate (postprocess) and report (parse.py)."""
