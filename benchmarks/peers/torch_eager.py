"""PyTorch eager, batched 384: BertForQuestionAnswering (the project's transformers, default
attention), fast tokenizer windows of 384 / stride 128 padded to 384, 8 rows a batch, n-best 20,
answers <= 30 tokens."""

from __future__ import annotations

from .base import Context, Meter, System, set_torch_threads


def load(ctx: Context, meter: Meter, batch_size: int = 8, max_len: int = 384, stride: int = 128):
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    set_torch_threads(ctx.threads)
    model = AutoModelForQuestionAnswering.from_pretrained(ctx.hf_dir).eval()
    tok = AutoTokenizer.from_pretrained(ctx.hf_dir)
    meter.wrap_forward(model)

    def answer(items):
        enc = tok(
            [q for _, q, _ in items],
            [c for _, _, c in items],
            truncation="only_second",
            max_length=max_len,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
            return_tensors="np",
        )
        n = enc["input_ids"].shape[0]
        starts, ends = np.empty((n, max_len), np.float32), np.empty((n, max_len), np.float32)
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                out = model(
                    input_ids=torch.from_numpy(enc["input_ids"][lo : lo + batch_size]),
                    token_type_ids=torch.from_numpy(enc["token_type_ids"][lo : lo + batch_size]),
                    attention_mask=torch.from_numpy(enc["attention_mask"][lo : lo + batch_size]),
                )
                starts[lo : lo + batch_size] = out.start_logits.numpy()
                ends[lo : lo + batch_size] = out.end_logits.numpy()
        best: dict[int, tuple[float, str]] = {}
        for f in range(n):
            ex = int(enc["overflow_to_sample_mapping"][f])
            context = items[ex][2]
            offsets = enc["offset_mapping"][f]
            in_context = np.array([s == 1 for s in enc.sequence_ids(f)])
            cand = best_span(starts[f], ends[f], in_context)
            if cand is not None and (ex not in best or cand[0] > best[ex][0]):
                s, e = cand[1], cand[2]
                best[ex] = (cand[0], context[offsets[s][0] : offsets[e][1]])
        return {qid: best.get(i, (0.0, ""))[1] for i, (qid, _, _) in enumerate(items)}

    return answer, {
        "transformers": transformers.__version__,
        "attention": model.config._attn_implementation,
        "batch_size": batch_size,
    }


def best_span(start, end, in_context, n_best: int = 20, max_answer: int = 30):
    """Highest start+end logit span inside the context among the n-best starts and ends."""
    import numpy as np

    idx = np.flatnonzero(in_context)
    if idx.size == 0:
        return None
    s_top = idx[np.argsort(-start[idx], kind="stable")[:n_best]]
    e_top = idx[np.argsort(-end[idx], kind="stable")[:n_best]]
    score = start[s_top][:, None] + end[e_top][None, :]
    length = e_top[None, :] - s_top[:, None]
    score = np.where((length >= 0) & (length < max_answer), score, -np.inf)
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    if not np.isfinite(score[i, j]):
        return None
    return float(score[i, j]), int(s_top[i]), int(e_top[j])


def systems() -> list[System]:
    return [System("PyTorch eager, batched 384", "fp32", load)]
