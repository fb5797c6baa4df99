#!/usr/bin/env python3
"""Python onnxruntime figure for the embeddings benchmark (for scale only).

The same loop as `benches/embed.rs baseline`, in Python: the `tokenizers`
package on the same tokenizer.json (padding off, truncation at 256, one
encode per text), batches of 32 texts right-padded with zeros to the
batch's longest text, `onnxruntime.InferenceSession` with the same
intra-op threads, mean pooling over the attention mask and L2
normalization in numpy. Run with the test venv (scripts/test-venv):

    .venv/bin/python benches/load/embed_python.py --texts FILE [--threads 2]
        [--batch 32] [--secs 10] [--warmup 1] [--model-dir assets/models/minilm]

The last line is `RESULT texts_per_s=...`.
"""

import argparse
import os
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", required=True)
    p.add_argument("--model-dir", default=os.path.join(ROOT, "assets", "models", "minilm"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--secs", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    a = p.parse_args()

    with open(a.texts) as f:
        texts = [line.rstrip("\n") for line in f if line.strip()]
    tok = Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(
        os.path.join(a.model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in sess.get_inputs()]

    cursor = 0

    def run_batch():
        nonlocal cursor
        batch = [texts[(cursor + i) % len(texts)] for i in range(a.batch)]
        cursor += a.batch
        encs = [tok.encode(t) for t in batch]
        longest = max(len(e.ids) for e in encs)
        arrays = {n: np.zeros((len(encs), longest), dtype=np.int64) for n in names}
        for i, e in enumerate(encs):
            n = len(e.ids)
            arrays["input_ids"][i, :n] = e.ids
            if "attention_mask" in arrays:
                arrays["attention_mask"][i, :n] = e.attention_mask
            if "token_type_ids" in arrays:
                arrays["token_type_ids"][i, :n] = e.type_ids
        hidden = sess.run(None, arrays)[0]
        mask = np.zeros((len(encs), longest, 1), dtype=np.float32)
        for i, e in enumerate(encs):
            mask[i, : len(e.ids)] = 1.0
        pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return len(encs)

    end = time.perf_counter() + a.warmup
    while time.perf_counter() < end:
        run_batch()
    done = 0
    start = time.perf_counter()
    end = start + a.secs
    while time.perf_counter() < end:
        done += run_batch()
    elapsed = time.perf_counter() - start
    print(
        f"# python onnxruntime {ort.__version__}, tokenizers, batch {a.batch}, "
        f"threads {a.threads}: {done} texts in {elapsed:.2f}s"
    )
    print(f"RESULT texts_per_s={done / elapsed:.1f}")


if __name__ == "__main__":
    main()
