"""Training data of fine-tune jobs, in the formats TRL's trainers take.

Supervised jobs train on whole chats but only on the assistant's messages: each chat
is rendered with the model's chat template, tokenized, and every token that belongs
to an assistant message (its text and the end-of-turn tokens after it, so the model
learns to stop) is marked in ``assistant_masks``. The assistant spans are found by
rendering the chat up to each assistant message (with the generation prompt) and up
to its end: the text between the two is the message as the template writes it. This
works for any template that renders a chat's prefix as a prefix of the whole chat,
which chat templates do; one that does not gets a clear error.

Preference (DPO) jobs use TRL's conversational preference format (``prompt``,
``chosen``, ``rejected``); TRL applies the chat template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["preference_rows", "supervised_rows", "tokenize_chat"]


def _render(tokenizer: Any, messages: Sequence[Mapping[str, str]], prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=prompt
    )


def tokenize_chat(
    tokenizer: Any, chat: Sequence[Mapping[str, str]]
) -> dict[str, list[int]]:
    """Token ids of a whole chat and the mask of its assistant tokens.

    Raises
    ------
    ValueError
        When the chat has no assistant message, or the template renders a prefix of
        the chat differently from the start of the whole chat.
    """
    messages = [{"role": m["role"], "content": m["content"]} for m in chat]
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("a supervised example has no assistant message to train on")
    text = _render(tokenizer, messages, prompt=False)
    spans: list[tuple[int, int]] = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:k], prompt=True) if k else ""
        through = _render(tokenizer, messages[: k + 1], prompt=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise ValueError(
                "the chat template does not render the start of a chat as the start "
                "of the whole chat, so the assistant messages cannot be located; "
                "give a template that does (transformers_backend.chat_template)"
            )
        spans.append((len(before), len(through)))
    encoding = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )
    mask = []
    for start, end in encoding["offset_mapping"]:
        inside = any(
            s <= start < e or (start == end and s < end <= e) for s, e in spans
        )
        mask.append(1 if inside else 0)
    return {"input_ids": list(encoding["input_ids"]), "assistant_masks": mask}


def supervised_rows(
    tokenizer: Any, chats: Sequence[Sequence[Mapping[str, str]]]
) -> list[dict[str, list[int]]]:
    """The pre-tokenized rows of a supervised job (``input_ids``,
    ``assistant_masks``)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "supervised fine-tuning needs a fast tokenizer (tokenizer.json) to map "
            "the assistant messages onto tokens"
        )
    return [tokenize_chat(tokenizer, chat) for chat in chats]


def preference_rows(examples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a DPO job in TRL's conversational preference format."""
    return [
        {
            "prompt": [
                {"role": m["role"], "content": m["content"]} for m in example["prompt"]
            ],
            "chosen": [{"role": "assistant", "content": example["chosen"]}],
            "rejected": [{"role": "assistant", "content": example["rejected"]}],
        }
        for example in examples
    ]
