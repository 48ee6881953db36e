"""Batched, seeded generation with a Hugging Face causal language model.

Chats become prompts through the tokenizer's chat template; prompts of one batch
are left-padded, with an attention mask, so every row's last token is the one whose
next token is sampled. Each row samples with its own repetition penalty,
temperature, top-p, token limit and seed:

- a repetition penalty ``p`` other than 1 first divides the positive logits (and
  multiplies the negative ones) of every token already in the row, prompt and
  completion so far, by ``p`` (the usual CTRL penalty; the padding does not count);

- sampling is the Gumbel-max trick: temperature and top-p shape the logits, noise
  drawn from the row's own ``torch.Generator`` is added, and the arg-max is taken
  (transformers runs the loop greedily). That draws exactly from the tempered,
  nucleus-truncated distribution, and a row's draws depend on its seed only, not
  on which other requests share its batch; temperature 0 is greedy decoding;
- a row that reaches its token limit is made to emit its end token, so the batch
  stops as soon as every row is done, and the row reports ``finish_reason``
  ``"length"``; a row that ends by itself reports ``"stop"``;
- a row with stop strings is made to emit its end token once its completion so
  far holds one of them (the backend cuts the text before it).

Requests are sorted by prompt length before they are cut into batches (less
padding), and answered in their original order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from nip_core.seeding import derive_seed

__all__ = ["Row", "RowResult", "generate_rows", "sampling_seed"]


@attrs.frozen(kw_only=True)
class Row:
    """One completion to sample: a prompt (token ids) and how to sample it."""

    prompt_ids: tuple[int, ...]
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class RowResult:
    """A sampled completion: its tokens (without the end token) and why it ended."""

    token_ids: tuple[int, ...]
    finish_reason: str


def sampling_seed(seed: int | None, choice: int) -> int:
    """The seed of choice ``choice`` of a request seeded ``seed`` (``None``: a fresh
    random seed)."""
    if seed is None:
        import secrets

        return secrets.randbits(63)
    return derive_seed(int(seed), f"transformers/choice/{choice}")


class _RowSampler:
    """A logits processor: per-row temperature, top-p and token limit, then Gumbel
    noise from per-row generators (see the module docstring)."""

    def __init__(
        self,
        rows: Sequence[Row],
        prompt_length: int,
        end_token_id: int,
        device: Any,
        decode: Callable[[list[int]], str] | None = None,
    ):
        import torch

        self.prompt_length = prompt_length
        # rows that end at a stop string: the text so far is decoded each step
        self.decode = decode
        # (a stop string is found the step its last token comes, within the last
        # tokens that hold its bytes, and 2 more: a token holds a byte at least,
        # and the window's first ones may decode differently alone; a stop found
        # late is still cut by the backend)
        self.stops = [
            (b, r.stop, max(len(s.encode("utf-8")) for s in r.stop) + 2)
            for b, r in enumerate(rows)
            if r.stop
        ]
        self.stopped = torch.zeros(len(rows), dtype=torch.bool, device=device)
        self.end_token_id = end_token_id
        self.temperature = torch.tensor(
            [r.temperature for r in rows], dtype=torch.float32, device=device
        )
        self.top_p = torch.tensor(
            [r.top_p for r in rows], dtype=torch.float32, device=device
        )
        self.limit = torch.tensor(
            [r.max_new_tokens for r in rows], dtype=torch.long, device=device
        )
        self.sampled = self.temperature > 0
        # (row, where its prompt starts in the left-padded batch, penalty)
        self.penalised = [
            (b, prompt_length - len(r.prompt_ids), float(r.repetition_penalty))
            for b, r in enumerate(rows)
            if float(r.repetition_penalty) != 1.0
        ]
        self.nucleus = bool(((self.top_p < 1) & self.sampled).any())
        self.generators = []
        for row in rows:
            generator = torch.Generator(device=device)
            generator.manual_seed(row.seed % (2**63))
            self.generators.append(generator)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float()
        step = input_ids.shape[1] - self.prompt_length
        if self.penalised:
            scores = scores.clone()
            for b, start, penalty in self.penalised:
                seen = input_ids[b, start:]
                values = scores[b].gather(0, seen)
                values = torch.where(values > 0, values / penalty, values * penalty)
                scores[b].scatter_(0, seen, values)
        if bool(self.sampled.any()):
            tempered = scores / self.temperature.clamp_min(1e-6).unsqueeze(1)
            if self.nucleus:
                tempered = self._top_p(tempered)
            noise = torch.stack(
                [
                    torch.rand(
                        scores.shape[1],
                        generator=generator,
                        device=scores.device,
                    )
                    for generator in self.generators
                ]
            )
            gumbel = -torch.log(-torch.log(noise.clamp(1e-20, 1.0 - 1e-7)))
            scores = torch.where(self.sampled.unsqueeze(1), tempered + gumbel, scores)
        if self.stops and self.decode is not None and step > 0:
            for b, stops, window in self.stops:
                if bool(self.stopped[b]):
                    continue
                start = max(self.prompt_length, input_ids.shape[1] - window)
                text = self.decode(input_ids[b, start:].tolist())
                if any(stop in text for stop in stops):
                    self.stopped[b] = True
        done = (self.limit <= step) | self.stopped
        if bool(done.any()):
            forced = torch.full_like(scores, -math.inf)
            forced[:, self.end_token_id] = 0.0
            scores = torch.where(done.unsqueeze(1), forced, scores)
        return scores

    def _top_p(self, scores: Any) -> Any:
        import torch

        ordered, order = torch.sort(scores, descending=True, dim=-1)
        mass = ordered.softmax(dim=-1).cumsum(dim=-1)
        # drop a token once the mass before it reaches top_p (the top one stays)
        drop = (mass - ordered.softmax(dim=-1)) >= self.top_p.unsqueeze(1)
        drop &= self.sampled.unsqueeze(1)
        drop = drop.scatter(1, order, drop)
        return scores.masked_fill(drop, -math.inf)


def _end_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    for value in (
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
        tokenizer.eos_token_id,
    ):
        if value is None:
            continue
        for token in value if isinstance(value, (list, tuple)) else [value]:
            if int(token) not in ids:
                ids.append(int(token))
    if not ids:
        raise ValueError("the model and its tokenizer define no end-of-sequence token")
    return ids


def _generation_config(max_new_tokens: int, end_ids: list[int], pad_id: int) -> Any:
    from transformers import GenerationConfig

    # Every option the model's own generation_config.json could set is given here,
    # so a model's defaults (repetition penalties, top-k) never change the sampling
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        do_sample=False,
        num_beams=1,
        temperature=1.0,
        top_p=1.0,
        top_k=50,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        eos_token_id=end_ids,
        pad_token_id=pad_id,
        use_cache=True,
        return_dict_in_generate=False,
    )


def generate_rows(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Row],
    batch_size: int,
    on_batch: Callable[[Sequence[int]], None] | None = None,
) -> list[RowResult]:
    """Sample every row, ``batch_size`` rows per forward batch.

    Parameters
    ----------
    model, tokenizer
        A causal language model (in eval mode) and its tokenizer.
    rows : Sequence[Row]
        What to sample.
    batch_size : int
        Rows per batch.
    on_batch : Callable[[Sequence[int]], None], optional
        Called with the indices of the rows of each finished batch.

    Returns
    -------
    list[RowResult]
        One per row, in order.
    """
    import torch

    end_ids = _end_token_ids(model, tokenizer)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0]
    )
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].prompt_ids))
    results: list[RowResult | None] = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = [rows[i] for i in indices]
        width = max(len(r.prompt_ids) for r in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for b, row in enumerate(batch):
            n = len(row.prompt_ids)
            input_ids[b, width - n :] = torch.tensor(row.prompt_ids, dtype=torch.long)
            attention[b, width - n :] = 1
        limit = max(r.max_new_tokens for r in batch)
        sampler = _RowSampler(
            batch,
            width,
            end_ids[0],
            device,
            decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        )
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=_generation_config(limit + 1, end_ids, pad_id),
                logits_processor=[sampler],
            )
        generated = output[:, width:].tolist()
        ends = set(end_ids)
        for b, row in enumerate(batch):
            tokens = generated[b]
            stop = next((k for k, t in enumerate(tokens) if t in ends), len(tokens))
            if stop < row.max_new_tokens:
                results[indices[b]] = RowResult(
                    token_ids=tuple(tokens[:stop]), finish_reason="stop"
                )
            else:
                results[indices[b]] = RowResult(
                    token_ids=tuple(tokens[: row.max_new_tokens]),
                    finish_reason="length",
                )
        if on_batch is not None:
            on_batch(indices)
    return [r for r in results if r is not None]
