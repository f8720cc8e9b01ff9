"""Tiny offline stand-ins for tests: a byte-level BPE tokenizer trained in memory and a random Llama.

Importable from subprocesses (the resume test) as well as from fixtures; nothing happens at import.
"""
from __future__ import annotations

from functools import lru_cache

CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@lru_cache(maxsize=1)
def tiny_tokenizer():
    from pydoc_data.topics import topics
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [topics[k][:2000] for k in sorted(topics)][:40] + ["The grass is green. The sky is blue."] * 5
    tok.train_from_iterator(corpus, trainer)
    t = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    t.chat_template = CHAT_TEMPLATE
    return t


def tiny_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=vocab_size,  # real SmolLM2: 576 / 30 / 9 / 3 / 1536 / 49152
                      max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    model.config._attn_implementation = "sdpa"
    return model


def tiny_load(device: str | None = None):
    """``(model, tokenizer)`` on ``device``: the loader a data-parallel run's workers call (picklable)."""
    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    return (model.to(device) if device else model), tok
