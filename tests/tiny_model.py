"""A tiny random Qwen2 with a byte-level BPE tokenizer trained on the spot: trainer and generation tests need a
real model and no hub access."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def make_tiny_model(path: Path, corpus: Iterable[str], vocab_size: int = 300, **config: Any) -> tuple[Any, Any]:
    """Train a tokenizer on `corpus`, build a random Qwen2 (overrides in `config`), save both to `path`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(list(corpus), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                                           pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"])
    hf_tokenizer.chat_template = CHAT_TEMPLATE
    hf_tokenizer.padding_side = "left"
    hf_tokenizer.save_pretrained(path)
    settings = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "max_position_embeddings": 4096} | config
    model_config = Qwen2Config(vocab_size=len(hf_tokenizer), tie_word_embeddings=True,
                               eos_token_id=hf_tokenizer.eos_token_id, pad_token_id=hf_tokenizer.pad_token_id,
                               **settings)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(model_config)
    model.generation_config.eos_token_id = hf_tokenizer.eos_token_id
    model.generation_config.pad_token_id = hf_tokenizer.pad_token_id
    model.save_pretrained(path)
    return model, hf_tokenizer
