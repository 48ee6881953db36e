"""Tiny local models for tests (this plugin's and other plugins').

:func:`tiny_chat_model` writes a randomly initialised Llama-architecture chat model
of a few thousand parameters, with a small byte-level BPE tokenizer and a ChatML
chat template, into a directory: generation and fine-tuning with it take
milliseconds, and it exercises the same code paths as a real model. Nothing is
downloaded.

Use it as the agents' ``model_name`` with ``text_backend.name: transformers``::

    path = tiny_chat_model(tmp_path / "tiny")
    hyper_params = HyperParameters(..., agents={"_default": {"model_name": str(path)}})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CHATML_TEMPLATE", "tiny_chat_model", "tiny_tokenizer"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""The ChatML template (as SmolLM2's, without its default system prompt)."""

_CORPUS = (
    "You are the verifier. You are the prover. The claim is: the number is even. "
    "Decision: accept. Decision: reject. Question: is the last digit even? "
    "Answer: the last digit is 0, 2, 4, 6 or 8, so the number is even. "
    "It is odd because 1, 3, 5, 7 and 9 are odd digits. What is 3 plus 3? It is 6. "
    "Say something about rivers. Tell a story. Hello. Write a long essay. "
    "The solution is correct. The code has a bug in the loop. yes no maybe "
)


def tiny_tokenizer(vocab_size: int = 384, chat_template: str | None = CHATML_TEMPLATE):
    """A byte-level BPE tokenizer trained on a few sentences, with ChatML special
    tokens (``<|im_start|>``, ``<|im_end|>`` the end token, ``<|endoftext|>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    if chat_template is not None:
        wrapped.chat_template = chat_template
    return wrapped


def tiny_chat_model(
    path: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    chat_template: str | None = CHATML_TEMPLATE,
    tokenizer: Any = None,
) -> Path:
    """Write a tiny random Llama chat model and its tokenizer into ``path``.

    Parameters
    ----------
    path : str | Path
        The directory to write (created).
    seed : int
        The seed of the random weights.
    hidden_size, num_layers : int
        The model's width and depth.
    chat_template : str | None
        The tokenizer's chat template; ``None`` writes a model without one.
    tokenizer : optional
        A tokenizer to use instead of :func:`tiny_tokenizer`.

    Returns
    -------
    Path
        ``path``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    if tokenizer is None:
        tokenizer = tiny_tokenizer(chat_template=chat_template)
    elif chat_template is None:
        tokenizer.chat_template = None
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # wide enough embeddings that a frozen output head can still express
        # peaked distributions (LoRA does not train the embeddings)
        initializer_range=0.2,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path
