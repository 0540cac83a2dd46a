"""A tiny random-weight Llama model for LLM graphs: built here in seconds, nothing downloaded.

``python -m graphs.examples.tiny_llm build`` writes into ``artifacts/tiny-llm/`` a byte-level BPE
tokenizer trained on a few sentences (wrapped in ``transformers.PreTrainedTokenizerFast``, with a
chat template) and a 2-layer ``LlamaForCausalLM`` of hidden size 64 with seeded random weights,
both with ``save_pretrained``: a directory vLLM loads like any Hugging Face model. Its output is
gibberish, but it runs the real engine end to end (tokenize, schedule, sample, detokenize, stream).
The build is deterministic: the same seed writes the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from graphs.validate import PACKAGE_ROOT

ARTIFACTS = os.path.join("artifacts", "tiny-llm")
#: Bump when the builder changes, so ensure_built() rebuilds stale artifacts.
VERSION = 2

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A graph of models serves requests over HTTP.",
    "Routers split traffic between arms; bandits learn which arm is best.",
    "Tokens stream to the client one by one as the engine samples them.",
    "Hello! How are you today? I am fine, thank you.",
    "You are a helpful assistant. Answer briefly and politely.",
    "user: tell me a story. assistant: once upon a time there was a tiny model.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
]

SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"}

#: Jinja chat template (Hugging Face convention): one line per message, then the assistant cue.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build(
    out_dir: str = ARTIFACTS,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 2,
    vocab_size: int = 512,
    max_positions: int = 2048,
) -> dict[str, Any]:
    """Write the tokenizer and the random-weight model into ``out_dir``; returns their sizes."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    os.makedirs(out_dir, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        unk_token=SPECIAL_TOKENS["unk"],
        model_max_length=max_positions,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    shape = {"hidden_size": hidden_size, "layers": layers, "heads": heads}
    with open(os.path.join(out_dir, "servegraph.json"), "w", encoding="utf-8") as f:
        stamp = {"builder": "graphs.examples.tiny_llm", "version": VERSION, "seed": seed}
        json.dump({**stamp, **shape}, f)
    return {
        "vocab": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "path": os.path.abspath(out_dir),
    }


def _is_built(out_dir: str, shape: dict[str, int]) -> bool:
    try:
        with open(os.path.join(out_dir, "servegraph.json"), encoding="utf-8") as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return False
    names = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    same = all(stamp.get(k, DEFAULT_SHAPE[k]) == v for k, v in {**DEFAULT_SHAPE, **shape}.items())
    return (
        stamp.get("version") == VERSION
        and same
        and all(os.path.isfile(os.path.join(out_dir, n)) for n in names)
    )


#: The demo model's shape; ``ensure_built(out_dir, hidden_size=768, layers=12, heads=12)``
#: builds a bigger one (as slow per token as a small real model) for benchmarks.
DEFAULT_SHAPE = {"hidden_size": 64, "layers": 2, "heads": 2}


def ensure_built(out_dir: str | None = None, **shape: int) -> str:
    """Build the model unless ``out_dir`` (default: the repo's artifacts) already holds it
    (with this ``hidden_size``, ``layers`` and ``heads``)."""
    out_dir = out_dir or os.path.join(PACKAGE_ROOT, ARTIFACTS)
    unknown = sorted(set(shape) - set(DEFAULT_SHAPE))
    if unknown:
        raise TypeError(f"unknown model shape keys {unknown} (known: {sorted(DEFAULT_SHAPE)})")
    if not _is_built(out_dir, shape):
        build(out_dir, **shape)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--out", default=os.path.join(PACKAGE_ROOT, ARTIFACTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=DEFAULT_SHAPE["hidden_size"])
    parser.add_argument("--layers", type=int, default=DEFAULT_SHAPE["layers"])
    parser.add_argument("--heads", type=int, default=DEFAULT_SHAPE["heads"])
    args = parser.parse_args(argv)
    shape = {"hidden_size": args.hidden_size, "layers": args.layers, "heads": args.heads}
    print(json.dumps(build(args.out, seed=args.seed, **shape)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
