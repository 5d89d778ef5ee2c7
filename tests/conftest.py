"""Fixtures: a tiny random-init Llama with a tiny byte-level BPE tokenizer, built in code."""

from __future__ import annotations

import pytest
import torch

from prototokens import load_model

CORPUS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
    "Alice was beginning to get very tired of sitting by her sister on the bank.",
    "Of Man's first disobedience, and the fruit of that forbidden tree.",
    "All the world's a stage, and all the men and women merely players.",
]


def build_tiny(folder, seed: int = 0, hidden: int = 64) -> str:
    """Save a tiny Llama (2 layers) and its tokenizer to ``folder``; return the folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, bos_token_id=0, eos_token_id=1, pad_token_id=1,
                         tie_word_embeddings=False, initializer_range=0.1)
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> str:
    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def other_tiny_path(tmp_path_factory) -> str:
    return build_tiny(tmp_path_factory.mktemp("other"), seed=1)


@pytest.fixture(scope="session")
def tiny(tiny_path):
    torch.set_num_threads(1)
    return load_model(tiny_path, device="cpu")
