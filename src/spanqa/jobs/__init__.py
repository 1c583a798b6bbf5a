"""Front ends that run whole jobs on the engine: ``run`` (the recipe's eval_acc_perf.sh)."""
