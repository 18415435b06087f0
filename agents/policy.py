"""Language-model policies: sampling with per-token log-probs, and differentiable re-scoring.

An :class:`LMPolicy` wraps a transformers causal LM and its tokenizer. :meth:`LMPolicy.generate`
runs its own decode loop over the KV cache (rather than ``model.generate``) because the trainer
needs, for every sampled token, its log-probability under the distribution it was actually drawn
from (after temperature and top-p) and that distribution's entropy. For Llama-family models
(``tiny``, SmolLM2) the loop runs over :class:`rewardgym.agents.decoding.StaticCacheDecoder`
(a preallocated cache, shared prompt work, finished rows dropped); other models use their own
``forward`` step by step.
:meth:`LMPolicy.sequence_logprobs` recomputes the same log-probs with gradients for the
policy-gradient loss.

Layout of a batch: prompts are left-padded and completions right-padded, so every completion
starts at the same column and only the last ``T + 1`` positions need logits.

Example:
    >>> policy = load_policy("tiny", task="translate")
    >>> gen = policy.generate(["translate: the dog sees a cat =>"], greedy=True)
    >>> gen.completions[0], gen.finished[0]
    ('dogi kato-n vidi-ta', True)
"""

from __future__ import annotations

import copy as _copy
import inspect
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewardgym.agents.decoding import (
    DynamicCacheDecoder,
    FastPathOptions,
    StaticCacheDecoder,
    supports,
)
from rewardgym.agents.meters.compute import count_params
from rewardgym.agents.padding import pad_ids
from rewardgym.agents.scoring import completion_logits
from rewardgym.errors import ConfigError, ModelLoadError, UnknownNameError

__all__ = [
    "DTYPES",
    "Generation",
    "LMPolicy",
    "SequenceLogprobs",
    "resolve_device",
    "resolve_dtype",
]

BITS_PER_NAT = 1.0 / math.log(2.0)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
POLICY_OPTIONS = "rewardgym_policy.json"


@dataclass
class Generation:
    """What one call of :meth:`LMPolicy.generate` produced, one entry per prompt.

    Attributes:
        completions: decoded text without special tokens (no eos), stripped of outer whitespace.
        token_ids: generated ids, up to and including eos when the sequence finished.
        logprobs: per generated token, its log-prob (nats) under the sampling distribution
            (after temperature and top-p; for greedy decoding, under ``softmax(logits / T)``).
        entropy_bits: per generated token, the entropy of that distribution in bits.
        finished: True where eos was produced within ``max_new_tokens`` (and the token budget).
        prompt_ids: the prompt's token ids as the model saw them (chat template, bos included).
        wall_s: seconds the whole call took.
        positions: positions the model computed: ``prompt`` (a shared prompt prefix counted
            once), ``new`` (decode steps, one per row still in the batch) and how many of each
            carried only padding (``prompt_padding``, ``new_padding``).

    Example:
        >>> gen = policy.generate(["translate: a cat =>"], max_new_tokens=8, seed=0)
        >>> gen.n_tokens
        [4]
    """

    completions: list[str]
    token_ids: list[list[int]]
    logprobs: list[np.ndarray]
    entropy_bits: list[np.ndarray]
    finished: list[bool]
    prompt_ids: list[list[int]]
    wall_s: float
    positions: dict[str, int] = field(default_factory=dict)

    @property
    def n_tokens(self) -> list[int]:
        """Number of generated tokens per sample (eos included when produced)."""
        return [len(ids) for ids in self.token_ids]

    def __len__(self) -> int:
        return len(self.completions)


@dataclass
class SequenceLogprobs:
    """Differentiable per-token log-probs of given completions, from :meth:`sequence_logprobs`.

    Tensors are ``[B, T]`` with ``T`` the longest completion; column ``t`` is completion token
    ``t`` and ``mask`` marks real (non-padding) tokens.

    Attributes:
        logprobs: log-prob (nats) of each completion token under the scaled distribution.
        entropy: entropy (nats) of that distribution, or None unless ``with_entropy``.
        mask: float ``[B, T]``, 1.0 on real completion tokens.
        n_positions: positions the forward pass computed, padding included: ``B × (P + T)``,
            or ``U × P + B × T`` when only the ``U`` distinct prompts were computed.
        n_padding: how many of those positions were padding.
        real_positions_per_sample: each sample's real positions; a prompt computed once for
            several samples is split evenly between them.
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor | None
    mask: torch.Tensor
    n_positions: int
    n_padding: int
    real_positions_per_sample: list[float] = field(default_factory=list)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CUDA when available and nothing was asked for, else the named device.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device: {exc}") from None


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map ``"float32"``, ``"bfloat16"`` or ``"float16"`` (or a torch dtype) to a torch dtype.

    Example:
        >>> resolve_dtype("bfloat16")
        torch.bfloat16
    """
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise UnknownNameError("dtype", str(dtype), DTYPES)
    if dtype not in DTYPES:
        raise UnknownNameError("dtype", dtype, DTYPES)
    return DTYPES[dtype]


def _check_sampling(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool):
        raise ConfigError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)):
        raise ConfigError(f"temperature must be a finite number > 0, got {temperature!r}")
    if temperature <= 0:
        raise ConfigError(
            f"temperature must be > 0, got {temperature}; use greedy=True for argmax decoding"
        )
    if not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")


def scaled_log_softmax(
    logits: torch.Tensor, temperature: float, top_p: float, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Log-probs of the sampling distribution: ``logits / temperature``, then top-p truncation.

    Tokens outside the nucleus get ``-inf``. Computed in float32 whatever the model dtype.

    Args:
        logits: ``[..., V]``.
        temperature: the softmax temperature (> 0).
        top_p: the nucleus size; 1.0 keeps every token.
        keep: optional ``[...]`` token ids, one per row, that stay in the nucleus whatever their
            mass: re-scoring passes the tokens it scores. A sampled token was in the sampler's
            nucleus, but the re-scoring forward pass rounds differently, and a later epoch or
            the KL reference model is another distribution: there it may fall just outside,
            and its ``-inf`` log-prob has no gradient and turns the loss into NaN. On fresh
            samples the nucleus is then the sampler's again, so the importance ratio stays 1.

    Example:
        >>> scaled_log_softmax(torch.tensor([[0.0, 0.0]]), 1.0, 1.0).exp()
        tensor([[0.5000, 0.5000]])
        >>> logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
        >>> scaled_log_softmax(logits, 1.0, 0.5, keep=torch.tensor([2])).exp()
        tensor([[0.8750, 0.0000, 0.1250]])
    """
    logits = logits.float()
    # x / 1.0 == x exactly, so skipping the division changes no bit and saves a pass
    logp = torch.log_softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)
    if top_p >= 1.0:
        return logp
    sorted_logp, order = logp.sort(dim=-1, descending=True)
    # Keep a token when the mass strictly before it is < top_p (the top token always stays).
    before = sorted_logp.exp().cumsum(dim=-1) - sorted_logp.exp()
    drop_sorted = before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    if keep is not None:
        drop = drop.scatter(-1, keep[..., None], False)
    return torch.log_softmax(logp.masked_fill(drop, float("-inf")), dim=-1)


def entropy_nats(logp: torch.Tensor) -> torch.Tensor:
    """Entropy of each row of log-probs (``-inf`` entries contribute 0), with finite gradients.

    Re-scoring differentiates it (the entropy bonus). The log-prob of a zero probability is
    replaced by 0 before the product rather than the NaN product afterwards: the backward pass
    of ``0 * -inf`` is NaN even where the forward value is set to 0.

    Example:
        >>> entropy_nats(torch.log(torch.tensor([[0.5, 0.5]]))) * BITS_PER_NAT
        tensor([1.])
    """
    probs = logp.exp()
    return -(probs * logp.masked_fill(probs == 0, 0.0)).sum(dim=-1)


def entropy_from(probs: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """:func:`entropy_nats` when ``probs == logp.exp()`` is already at hand (one pass fewer),
    for the decode loop, which takes no gradient.

    A zero probability contributes 0 (``0 * -inf`` is NaN, set to 0; ``0 * finite`` is 0).

    Example:
        >>> logp = torch.log(torch.tensor([[0.5, 0.5, 0.0]]))
        >>> entropy_from(logp.exp(), logp) * BITS_PER_NAT
        tensor([1.])
    """
    return -(probs * logp).nan_to_num_(nan=0.0).sum(dim=-1)


def sample_categorical(
    probs: torch.Tensor, generator: torch.Generator | None, block: int = 256
) -> torch.Tensor:
    """One draw per row of ``probs`` (``[B, V]``, rows need not sum to 1) by inverting the CDF.

    Equivalent in distribution to ``torch.multinomial(probs, 1)`` but far faster on CPU for a
    50k vocabulary (``benchmarks/generation.py`` times it). The inversion runs in two levels so
    no float64 copy of the whole row is made: the row is cut into blocks of ``block`` tokens,
    one uniform number per row (from ``generator``; None: torch's global generator) picks a
    block by its mass, then a token inside it. Zero-probability tokens are never drawn.

    Block masses are summed in the input dtype and only their ``[B, V / block]`` CDF is float64:
    a float64 sum first copies the whole ``[B, V]`` input to float64, which in the decode loop
    at ``[64, 49152]`` made a draw take 9-13 ms instead of 1.6 ms.

    Example:
        >>> sample_categorical(torch.tensor([[0.0, 1.0, 0.0]]), None)
        tensor([1])
    """
    rows, vocab = probs.shape
    padded = torch.nn.functional.pad(probs, (0, (-vocab) % block))
    blocks = padded.view(rows, -1, block)
    block_cdf = blocks.sum(dim=-1).to(torch.float64).cumsum(dim=-1)
    u = torch.rand((rows, 1), generator=generator, dtype=torch.float64, device=probs.device)
    u = u * block_cdf[:, -1:]
    chosen = _invert(block_cdf, u)
    start = torch.where(chosen > 0, block_cdf.gather(-1, (chosen - 1).clamp(min=0)), 0.0)
    inside = blocks.gather(1, chosen[:, :, None].expand(-1, 1, block)).squeeze(1)
    cdf = inside.cumsum(dim=-1, dtype=torch.float64)
    return chosen.squeeze(-1) * block + _invert(cdf, u - start).squeeze(-1)


def draw_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    greedy: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One decode step's choice: a token per row of ``logits`` (``[B, V]``), its log-prob and
    the entropy (nats) of the distribution it was drawn from (after temperature and top-p).

    With top-p truncation it goes through :func:`scaled_log_softmax`. Over the whole
    distribution (``top_p == 1``) it makes no log-prob table: one exponential pass gives the
    unnormalised weights ``w = exp(x - max)`` that the draw takes as they are
    (:func:`sample_categorical` needs no normalisation), the chosen token's log-prob is
    ``x - max - log Z`` and the entropy ``log Z - sum(w (x - max)) / Z`` with ``Z = sum(w)``:
    the same quantities with one exponential and several passes over ``[B, V]`` fewer
    (``benchmarks/generation.py`` times both heads).

    Example:
        >>> tokens, logp, entropy = draw_tokens(torch.zeros(1, 4), 1.0, 1.0, True, None)
        >>> tokens.tolist(), round(float(logp), 4), round(float(entropy), 4)
        ([0], -1.3863, 1.3863)
    """
    if top_p < 1.0:
        return draw_tokens_from_table(logits, temperature, top_p, greedy, generator)
    x = logits.float()
    if temperature != 1.0:
        x = x / temperature
    shifted = x - x.amax(dim=-1, keepdim=True)
    weights = shifted.exp()
    total = weights.sum(dim=-1)
    log_total = total.log()
    tokens = shifted.argmax(dim=-1) if greedy else sample_categorical(weights, generator)
    chosen = shifted.gather(-1, tokens[:, None]).squeeze(-1) - log_total
    # A -inf logit has weight 0: its 0 * -inf term is NaN and contributes 0.
    spread = (weights * shifted).nan_to_num_(nan=0.0).sum(dim=-1)
    return tokens, chosen, log_total - spread / total


def draw_tokens_from_table(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    greedy: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`draw_tokens` through the full log-prob table of :func:`scaled_log_softmax` (the
    path top-p truncation needs, and the reference the fused path is tested against)."""
    logp = scaled_log_softmax(logits, temperature, top_p)
    probs = logp.exp()  # once, for both the draw and the entropy
    tokens = logp.argmax(dim=-1) if greedy else sample_categorical(probs, generator)
    chosen = logp.gather(-1, tokens[:, None]).squeeze(-1)
    return tokens, chosen, entropy_from(probs, logp)


def _invert(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``[B, 1]`` index of the first ``cdf`` entry above ``u``; where rounding put ``u`` at or
    past the total, the last entry with mass instead (never a zero-probability one)."""
    index = torch.searchsorted(cdf, u, right=True)
    over = index >= cdf.shape[-1]
    if bool(over.any()):  # rare: only then find each row's last step up of the CDF
        mass = cdf.diff(dim=-1, prepend=torch.zeros_like(cdf[:, :1])) > 0
        last = cdf.shape[-1] - 1 - mass.flip(-1).to(torch.int8).argmax(dim=-1, keepdim=True)
        index = torch.where(over, last, index)
    return index


class LMPolicy:
    """A causal LM with its tokenizer, as a policy that maps prompts to completions.

    Attributes:
        model: the transformers ``PreTrainedModel``.
        tokenizer: the matching ``PreTrainedTokenizerFast``.
        name: the spec it was loaded from (``"tiny"``, ``"smollm2-135m"`` or a directory).
        device: where the model lives.
        chat: whether prompts go through the tokenizer's chat template.
        add_bos: whether the bos token is prepended to prompts (tiny models).
        completion_prefix: text between prompt and answer in training data (``" "`` for tiny).
        info: free-form facts about how it was built (train log, cache dir).
        fast_path: switches of the generation and re-scoring fast paths
            (:class:`rewardgym.agents.decoding.FastPathOptions`).

    Example:
        >>> policy = load_policy("tiny", task="translate")
        >>> policy.generate(["translate: a dog =>"], greedy=True).completions
        ['dogi']
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "model",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float32",
        chat: bool = False,
        add_bos: bool = False,
        completion_prefix: str = "",
        info: dict | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.chat = chat
        self.add_bos = add_bos
        self.completion_prefix = completion_prefix
        self.info = dict(info or {})
        self.fast_path = FastPathOptions()
        if tokenizer.eos_token_id is None:
            raise ConfigError(
                f"the tokenizer of {name!r} has no eos token; set tokenizer.eos_token"
            )
        self.eos_id = int(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self._n_params = count_params(self.model)
        params = inspect.signature(self.model.forward).parameters
        # transformers 5.x renamed past_key_values to cache; older versions lack logits_to_keep.
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = "logits_to_keep" in params

    # ----------------------------------------------------------------- basics
    @property
    def n_params(self) -> int:
        """Unique parameters (a tied embedding / output projection counted once)."""
        return self._n_params

    def __repr__(self) -> str:
        return (
            f"LMPolicy(name={self.name!r}, n_params={self.n_params:,}, device={self.device}, "
            f"dtype={str(self.dtype).removeprefix('torch.')})"
        )

    def format_prompt(self, prompt: str) -> str:
        """The text the model sees for ``prompt``: the chat template for instruct models.

        Example:
            >>> load_policy("tiny").format_prompt("translate: a dog =>")
            'translate: a dog =>'
        """
        if not self.chat:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of the formatted prompt (bos prepended for models trained that way).

        Example:
            >>> policy.encode_prompt("translate: a dog =>")[0] == policy.tokenizer.bos_token_id
            True
        """
        return self.encode_prompts([prompt])[0]

    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode_prompt` for a batch (one tokenizer call, much faster)."""
        if not prompts:
            return []
        texts = [self.format_prompt(p) for p in prompts]
        batch = self.tokenizer(texts, add_special_tokens=False).input_ids
        bos = self.tokenizer.bos_token_id
        if self.add_bos and bos is not None:
            return [ids if ids[:1] == [bos] else [int(bos), *ids] for ids in batch]
        return [list(ids) for ids in batch]

    def encode_completion(self, text: str, *, eos: bool = True) -> list[int]:
        """Token ids of a target completion as the model should produce it (eos appended).

        Example:
            >>> policy.encode_completion("dogi")[-1] == policy.eos_id
            True
        """
        return self.encode_completions([text], eos=eos)[0]

    def encode_completions(self, texts: Sequence[str], *, eos: bool = True) -> list[list[int]]:
        """:meth:`encode_completion` for a batch."""
        if not texts:
            return []
        batch = self.tokenizer(
            [self.completion_prefix + t for t in texts], add_special_tokens=False
        ).input_ids
        return [[*ids, self.eos_id] if eos else list(ids) for ids in batch]

    def decode(self, ids: Sequence[int]) -> str:
        """Completion text of generated ids: special tokens dropped, outer whitespace stripped."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    # ------------------------------------------------------------- generation
    def _left_pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, real = pad_ids(seqs, self.pad_id, side="left")
        return ids.to(self.device), real.long().to(self.device)

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        keep: int,
        cache: Any = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Any]:
        """Logits of the last ``keep`` positions and the KV cache, across transformers versions."""
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": positions,
            "use_cache": use_cache,
        }
        if cache is not None:
            kwargs[self._cache_kw] = cache
        if self._keep_kw:
            kwargs["logits_to_keep"] = keep
        out = self.model(**kwargs)
        logits = out.logits if self._keep_kw else out.logits[:, -keep:]
        new_cache = None
        if use_cache:
            new_cache = out["cache"] if "cache" in out else out["past_key_values"]
        return logits, new_cache

    @staticmethod
    def _positions(mask: torch.Tensor) -> torch.Tensor:
        # Left padding: real tokens get positions 0, 1, ... as if unpadded.
        return (mask.cumsum(dim=-1) - 1).clamp(min=0)

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 48,
        temperature: float = 1.0,
        top_p: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
        token_budget: int | None = None,
    ) -> Generation:
        """Answer a batch of prompts, recording per-token log-probs and entropy.

        Args:
            prompts: raw prompts (``format_prompt`` is applied here).
            max_new_tokens: generation limit per sample.
            temperature: softmax temperature of the sampling distribution (> 0).
            top_p: nucleus size; 1.0 samples from the whole distribution.
            greedy: take the argmax instead of sampling.
            seed: seeds a private ``torch.Generator``: the same seed gives the same outputs.
                None draws from torch's global generator.
            token_budget: stop the whole batch once this many tokens were generated in total;
                samples cut off this way are not ``finished``.

        Returns:
            A :class:`Generation`.

        Example:
            >>> gen = policy.generate(["translate: a dog =>"] * 4, temperature=0.7, seed=1)
            >>> len(gen.completions), all(len(l) == n for l, n in zip(gen.logprobs, gen.n_tokens))
            (4, True)
        """
        start = time.perf_counter()
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        _check_sampling(max_new_tokens, temperature, top_p)
        if token_budget is not None and token_budget < 1:
            raise ConfigError(f"token_budget must be >= 1 or None, got {token_budget!r}")
        prompt_ids = self.encode_prompts(prompts)
        if not prompts:
            return Generation([], [], [], [], [], [], time.perf_counter() - start)
        empty = [i for i, ids in enumerate(prompt_ids) if not ids]
        if empty:
            raise ConfigError(
                f"prompt {empty[0]} encodes to no tokens and this model adds no bos token; "
                "pass a non-empty prompt"
            )
        with torch.inference_mode():
            tokens, logps, ents, done, positions = self._decode(
                prompt_ids, max_new_tokens, temperature, top_p, greedy, seed, token_budget
            )
        token_ids, logprobs, entropy = [], [], []
        for row in range(len(prompts)):
            n = int((tokens[row] >= 0).sum())  # a row's tokens are contiguous from column 0
            token_ids.append(tokens[row, :n].tolist())
            logprobs.append(logps[row, :n].numpy().astype(np.float64))
            entropy.append((ents[row, :n] * BITS_PER_NAT).numpy().astype(np.float64))
        finished = [bool(f) for f in done]
        completions = [
            self.decode(ids[:-1] if f else ids) for ids, f in zip(token_ids, finished, strict=True)
        ]
        return Generation(
            completions,
            token_ids,
            logprobs,
            entropy,
            finished,
            prompt_ids,
            time.perf_counter() - start,
            positions,
        )

    def _decoder(self, prompt_ids: list[list[int]], max_new_tokens: int) -> Any:
        options = self.fast_path
        if options.static_cache and supports(self.model):
            return StaticCacheDecoder(self.model, prompt_ids, max_new_tokens, self.pad_id, options)
        return DynamicCacheDecoder(self, prompt_ids)

    def _decode(
        self,
        prompt_ids: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        greedy: bool,
        seed: int | None,
        token_budget: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, int]]:
        """The decode loop. Returns tokens (-1 after a row stopped), log-probs, entropies (nats)
        on the CPU, whether each row produced eos, and the positions the model computed."""
        batch = len(prompt_ids)
        generator = None
        if seed is not None and not greedy:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        decoder = self._decoder(prompt_ids, max_new_tokens)
        logits = decoder.prefill()
        positions = {
            "prompt": decoder.prompt_positions,
            "prompt_padding": decoder.prompt_padding,
            "new": 0,
            "new_padding": 0,
        }
        tokens = torch.full((batch, max_new_tokens), -1, dtype=torch.long)
        logps = torch.zeros((batch, max_new_tokens), dtype=torch.float32)
        ents = torch.zeros((batch, max_new_tokens), dtype=torch.float32)
        done = torch.zeros(batch, dtype=torch.bool)
        rows = torch.arange(batch)  # the original batch index of each row the decoder runs
        alive = torch.ones(batch, dtype=torch.bool, device=self.device)
        generated = 0
        for step in range(max_new_tokens):
            nxt, chosen, entropy = draw_tokens(logits, temperature, top_p, greedy, generator)
            alive_cpu = alive.cpu()
            live = rows[alive_cpu]
            tokens[live, step] = nxt.cpu()[alive_cpu]
            logps[live, step] = chosen.cpu()[alive_cpu]
            ents[live, step] = entropy.cpu()[alive_cpu]
            generated += len(live)
            hit_eos = alive & (nxt == self.eos_id)
            done[rows[hit_eos.cpu()]] = True
            alive = alive & ~hit_eos
            n_alive = int(alive.sum())
            if n_alive == 0 or step + 1 == max_new_tokens:
                break
            if token_budget is not None and generated >= token_budget:
                break
            if self._drop_now(decoder, n_alive, len(alive)):
                order = decoder.drop_finished(alive)
                rows, nxt, alive = rows[order.cpu()], nxt[order], alive[order]
            positions["new"] += len(alive)
            positions["new_padding"] += len(alive) - n_alive
            logits = decoder.step(torch.where(alive, nxt, torch.full_like(nxt, self.pad_id)))
        return tokens, logps, ents, done, positions

    def _drop_now(self, decoder: Any, n_alive: int, rows: int) -> bool:
        """Whether the decode loop drops the finished rows from the batch now."""
        finished_share = 1.0 - n_alive / rows
        return decoder.can_drop and n_alive < rows and finished_share >= self.fast_path.compact_at

    # -------------------------------------------------------------- re-scoring
    def sequence_logprobs(
        self,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        temperature: float = 1.0,
        top_p: float = 1.0,
        with_entropy: bool = False,
    ) -> SequenceLogprobs:
        """Differentiable log-probs of each completion token given its prompt.

        Runs one forward pass over ``[left-padded prompt | right-padded completion]`` and
        computes logits only for the completion positions; when prompts repeat (GRPO groups)
        and the model is Llama-family, each distinct prompt is computed once
        (:mod:`rewardgym.agents.scoring`). Gradients flow unless the caller wraps the call in
        ``torch.no_grad()``.

        Args:
            prompt_ids: prompt token ids per sample (as in ``Generation.prompt_ids``).
            completion_ids: completion token ids per sample (as in ``Generation.token_ids``).
            temperature: the temperature the completions were sampled at.
            top_p: the nucleus size they were sampled with. Each scored token counts as inside
                the nucleus (``keep`` of :func:`scaled_log_softmax`), so its log-prob is finite.
            with_entropy: also return the per-token entropy (nats) of the distribution.

        Returns:
            A :class:`SequenceLogprobs` with ``[B, T]`` tensors.

        Example:
            >>> gen = policy.generate(["translate: a dog =>"], seed=0)
            >>> out = policy.sequence_logprobs(gen.prompt_ids, gen.token_ids)
            >>> torch.allclose(out.logprobs[0], torch.tensor(gen.logprobs[0]).float(), atol=1e-4)
            True
        """
        _check_sampling(1, temperature, top_p)
        if len(prompt_ids) != len(completion_ids):
            raise ConfigError(
                f"got {len(prompt_ids)} prompts but {len(completion_ids)} completions; "
                "pass one completion per prompt"
            )
        if not prompt_ids:
            raise ConfigError("sequence_logprobs needs at least one (prompt, completion) pair")
        if any(len(p) == 0 for p in prompt_ids):
            raise ConfigError("every prompt needs at least one token (a bos token will do)")
        batch = len(prompt_ids)
        prompt, prompt_real = pad_ids(prompt_ids, self.pad_id, side="left")
        completion, completion_real = pad_ids(completion_ids, self.pad_id, side="right")
        width_p, width_c = prompt.shape[1], completion.shape[1]
        ids = torch.cat([prompt, completion], dim=1).to(self.device)
        attn = torch.cat([prompt_real, completion_real], dim=1).long().to(self.device)
        comp_mask = attn[:, width_p:].float()
        real = [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
        n_pos = batch * (width_p + width_c)
        if width_c == 0:
            empty = torch.zeros((batch, 0), device=self.device)
            return SequenceLogprobs(empty, empty if with_entropy else None, empty, 0, 0, real)
        shared = self.fast_path.share_prompts and supports(self.model)
        if shared and len(set(map(tuple, prompt_ids))) < batch:
            # Repeated prompts (a GRPO group): each distinct prompt is computed once.
            logits, counts = completion_logits(self.model, prompt_ids, completion_ids, self.pad_id)
            n_pos, n_pad, real = counts.positions, counts.padding, counts.per_sample
        else:
            logits, _ = self._forward(ids, attn, self._positions(attn), width_c + 1)
            logits, n_pad = logits[:, :-1, :], n_pos - sum(real)
        targets = ids[:, width_p:]
        logp = scaled_log_softmax(logits, temperature, top_p, keep=targets)
        # Padding positions are selected away, not multiplied by 0: a -inf there times 0 is NaN.
        real_token = comp_mask.bool()
        chosen = logp.gather(-1, targets[..., None]).squeeze(-1).masked_fill(~real_token, 0.0)
        entropy = entropy_nats(logp).masked_fill(~real_token, 0.0) if with_entropy else None
        return SequenceLogprobs(chosen, entropy, comp_mask, n_pos, n_pad, real)

    # ------------------------------------------------------------------ copies
    def copy(self) -> LMPolicy:
        """An independent, trainable deep copy (weights and tokenizer state).

        Example:
            >>> clone = policy.copy(); clone.model is policy.model
            False
        """
        clone = _copy.copy(self)
        clone.model = _copy.deepcopy(self.model)
        clone.info = dict(self.info)
        return clone

    def frozen_copy(self) -> LMPolicy:
        """A deep copy with gradients off and in eval mode: the KL reference model.

        Example:
            >>> ref = policy.frozen_copy()
            >>> any(p.requires_grad for p in ref.model.parameters())
            False
        """
        clone = self.copy()
        clone.model.eval()
        clone.model.requires_grad_(False)
        return clone

    def save(self, directory: str | os.PathLike) -> Path:
        """Write safetensors weights, ``config.json`` and the tokenizer files to ``directory``.

        The result loads back with ``load_policy(directory)``.

        Example:
            >>> policy.save("/tmp/my_policy")
            PosixPath('/tmp/my_policy')
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        options = {
            "chat": self.chat,
            "add_bos": self.add_bos,
            "completion_prefix": self.completion_prefix,
        }
        (path / POLICY_OPTIONS).write_text(json.dumps(options, indent=2))
        return path


def read_policy_options(directory: str | os.PathLike) -> dict[str, Any]:
    """The prompt-format options :meth:`LMPolicy.save` wrote (empty for other directories).

    Example:
        >>> read_policy_options(policy.save("/tmp/p"))["add_bos"]
        True
    """
    path = Path(directory) / POLICY_OPTIONS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object, got {type(data).__name__}")
    options = {}
    for key, kind in (("chat", bool), ("add_bos", bool), ("completion_prefix", str)):
        if key in data:
            if not isinstance(data[key], kind):
                raise ModelLoadError(
                    f"{path}: {key!r} must be a {kind.__name__}, got {data[key]!r}"
                )
            options[key] = data[key]
    return options
