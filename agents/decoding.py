"""The fast rollout path: a static KV cache for Llama-family models, with a shared prompt prefix.

:meth:`rewardgym.agents.policy.LMPolicy.generate` uses :class:`StaticCacheDecoder` whenever
:func:`supports` says the model is a Llama-family transformers model (``tiny`` and SmolLM2 are);
other architectures keep the generic path through the model's own ``forward``.

What it saves over calling the Hugging Face model step by step (measured in
``benchmarks/generation.py``):

* **No cache growth.** Keys and values go into one tensor allocated for prompt plus completion;
  the per-step concatenation of a dynamic cache, and the mask rebuilt from scratch every step,
  are gone.
* **Shared prompt work.** Chat prompts begin with the same system text and GRPO groups repeat the
  same prompt. The common prefix of the batch is run once (batch 1) and each distinct prompt
  once; rows are expanded afterwards by indexing the cache.
* **Finished rows leave the batch.** As soon as a row has produced eos, live rows from the end of
  the batch move into its place in the cache (only their written columns are copied), so later
  steps do no work for it.
* **The shared prefix is attended once.** Its keys are the same in every row, so a decode step
  scores all rows' queries against them in one matrix product, and reads only each row's own
  columns per row; ``scaled_dot_product_attention`` would read the prefix once per row.
* **No work for prompt padding.** Prompts of different lengths are padded for attention, but
  the norms, projections and MLP of the prompt pass run on the real positions only.
* **Float32 keys.** Attention scores stay in float32, as in transformers' own attention (a bf16
  batched product on CPU rounds them to bf16); values, and the layers themselves, stay in the
  model's dtype.
* **Prepacked weights on CPU, where they measured faster.** For models of ``PACK_MIN_PARAMS``
  or more, the linear layers' weights can be reordered once per rollout into oneDNN's blocked
  layout (:class:`PackedWeights`). On an AMD EPYC that made fp32 rollouts 1.44x faster than
  PyTorch's default CPU product (MKL); on an Intel Xeon it made them slower. So by default
  (``packed_weights=None``) :func:`choose_linear` times one decode step's linear layers both
  ways on the model's own weights at first use, per dtype and batch bucket, and the choice is
  cached per CPU model and library versions (:mod:`rewardgym.agents.kernels`).

Each can be switched off alone with :class:`FastPathOptions`, which the benchmark's ablation
does to measure what it buys.

The layers' own modules (norms, projections, MLP, rotary embedding) are called as they are, and
attention goes through ``scaled_dot_product_attention`` with the same grouped-query handling as
transformers' ``sdpa`` attention, so fp32 greedy outputs match ``model.generate`` (the benchmark
and ``tests/test_decoding.py`` check it). Layout of the cache columns::

    [ common prefix | padding | rest of prompt (right-aligned) | completion tokens ... ]

Example:
    >>> decoder = StaticCacheDecoder(model, [[1, 5, 6], [1, 5, 7, 8]], max_new_tokens=4, pad_id=0)
    >>> logits = decoder.prefill()                  # [2, vocab]: next-token logits per prompt
    >>> logits = decoder.step(logits.argmax(-1))    # one decode step for every live row
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, rotate_half

from rewardgym.agents import kernels
from rewardgym.agents.meters.compute import count_params
from rewardgym.agents.padding import pad_ids

__all__ = [
    "FastPathOptions",
    "CompiledStep",
    "DynamicCacheDecoder",
    "LinearChoice",
    "PackedWeights",
    "StaticCacheDecoder",
    "attention",
    "choose_linear",
    "compiler_available",
    "decode_attention",
    "distinct_rows",
    "mlp",
    "plain_linear",
    "project_qkv",
    "supports",
    "time_linear_kernels",
]

SUPPORTED_MODEL_TYPES = ("llama",)
# Below this many parameters the products are so small that oneDNN's set-up for each new batch
# shape costs more than packed weights save: on `tiny` (0.77 M), 150 rollouts of 1-64 rows took
# 8.9-10.2 s packed against 6.8-7.6 s unpacked, and 300 MB more memory.
PACK_MIN_PARAMS = 10_000_000
# The measured choice packs only when packing is at least this much faster: packing costs one
# more copy of the weights while a rollout runs, and a tie is within timing noise.
PACKED_MIN_GAIN = 1.03
# Wall-clock budget of timing one choice (after one warm-up call of each option); at least
# MIN_KERNEL_REPEATS alternated calls of each option are timed whatever the budget.
KERNEL_TIMING_BUDGET_S = 1.0
MIN_KERNEL_REPEATS = 2
MAX_KERNEL_REPEATS = 8
# Sharing a prefix costs one extra forward call; below this many tokens it does not pay.
MIN_SHARED_PREFIX = 4


@dataclass(frozen=True)
class FastPathOptions:
    """Switches of the fast paths for Llama models. All on by default; benchmarks turn them off
    one at a time to measure what each buys (``benchmarks/generation.py``, ``training.py``).
    Greedy outputs and log-probs stay within float rounding either way; sampled outputs for one
    seed are the same only under the same options, because the sampler draws one number per
    row still in the batch, so compaction changes which draw each row gets.

    Attributes:
        static_cache: use :class:`StaticCacheDecoder` for Llama models (False: the generic
            :class:`DynamicCacheDecoder`).
        share_prompts: generation runs the batch's common prefix once and each distinct prompt
            once; re-scoring (:mod:`rewardgym.agents.scoring`) each distinct prompt once.
        compact_at: drop finished rows once this share of the rows in the batch has finished
            (0: as soon as one has, which costs copying only the rows moved into their places;
            above 1: never).
        float32_keys: keep the cached keys in float32 whatever the model dtype, so attention
            scores stay in float32 (values are kept in the model's dtype either way).
        packed_weights: on CPU, run the linear layers of models with at least
            ``PACK_MIN_PARAMS`` parameters through oneDNN over weights packed once per rollout
            (:class:`PackedWeights`). True: always there; False: never (the model's own
            layers); None (default): where :func:`choose_linear` measured it faster on this
            machine for the model's shapes, dtype and batch bucket.
        skip_prompt_padding: the prompt pass runs norms, projections and MLP on the real
            prompt positions only (:class:`RealPositions`); False: on the padded batch.
        prefix_attention: decode steps attend to the shared prefix with one product for all
            rows (:func:`decode_attention`); False: ``scaled_dot_product_attention`` over each
            row's whole cache.
        compile_step: decode steps run each layer's per-position work (norms, projections,
            rotary embedding, residual adds, MLP) through ``torch.compile`` graphs
            (:class:`CompiledStep`), one pair of graphs for every layer and rollout of a model
            shape. Off by default: on the Xeon it was measured on, steps ran 0.60x (fp32) and
            0.91x (bf16) as fast as eager with packed weights, about as fast without them, and
            the first compile costs seconds (``benchmarks/compile_decode.py``;
            docs/performance.md).
            Where no C++ compiler is found, or compiling fails, it warns once and runs eager.

    Example:
        >>> FastPathOptions(compact_at=2.0).share_prompts
        True
    """

    static_cache: bool = True
    share_prompts: bool = True
    compact_at: float = 0.0
    float32_keys: bool = True
    packed_weights: bool | None = None
    skip_prompt_padding: bool = True
    prefix_attention: bool = True
    compile_step: bool = False


def supports(model: Any) -> bool:
    """Whether :class:`StaticCacheDecoder` can run ``model`` (a Llama-family causal LM).

    Example:
        >>> supports(load_policy("tiny").model)
        True
    """
    config = getattr(model, "config", None)
    inner = getattr(model, "model", None)
    return (
        getattr(config, "model_type", None) in SUPPORTED_MODEL_TYPES
        and hasattr(inner, "layers")
        and hasattr(inner, "rotary_emb")
        and hasattr(model, "lm_head")
    )


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix every sequence shares.

    Example:
        >>> common_prefix_length([[1, 2, 3], [1, 2, 4]])
        2
    """
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != first[i] for s in seqs):
            return i
    return n


def distinct_rows(seqs: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[int]]:
    """The distinct sequences in first-seen order, and the index of each input among them.

    Example:
        >>> distinct_rows([[1, 2], [3], [1, 2]])
        ([[1, 2], [3]], [0, 1, 0])
    """
    seen: dict[tuple[int, ...], int] = {}
    index = [seen.setdefault(tuple(s), len(seen)) for s in seqs]
    return [list(s) for s in seen], index


class StaticCacheDecoder:
    """Prefill and decode steps for one batch of prompts over a preallocated KV cache.

    Args:
        model: a transformers Llama-family causal LM (see :func:`supports`), in eval mode.
        prompt_ids: token ids of each prompt (each non-empty).
        max_new_tokens: completion tokens to make room for.
        pad_id: id fed for padding columns (never attended to).
        options: which optimisations are on (all by default; off only for ablations).

    Attributes:
        prefix_len: prompt tokens shared by the whole batch, run once.
        distinct: the distinct prompts, each run once.
        prompt_positions: positions the prompt pass computes (the shared prefix counted once).
        prompt_padding: how many of those carry padding.
    """

    can_drop = True

    def __init__(
        self,
        model: Any,
        prompt_ids: Sequence[Sequence[int]],
        max_new_tokens: int,
        pad_id: int,
        options: FastPathOptions | None = None,
    ) -> None:
        options = options or FastPathOptions()
        self.model = model
        self.pad_id = pad_id
        config = model.config
        weight = model.lm_head.weight
        self.device, self.dtype = weight.device, weight.dtype

        self.prompts = [list(p) for p in prompt_ids]
        shared = min(common_prefix_length(self.prompts), min(map(len, self.prompts)) - 1)
        share = options.share_prompts and shared >= MIN_SHARED_PREFIX
        self.prefix_len = shared if share else 0
        self.prompt_width = max(map(len, self.prompts))
        self.length = self.prompt_width + max_new_tokens

        # Distinct prompts are computed once; `self.expand` maps each batch row to its prompt.
        if options.share_prompts:
            self.distinct, expand = distinct_rows(self.prompts)
        else:
            self.distinct, expand = self.prompts, list(range(len(self.prompts)))
        self.expand = torch.tensor(expand, device=self.device)

        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        shape = (
            config.num_hidden_layers,
            len(self.distinct),
            config.num_key_value_heads,
            self.length,
            head_dim,
        )
        # Keys in float32 whatever the model dtype, so attention scores stay in float32 (a bf16
        # batched product on CPU rounds them to bf16). Values in the model dtype: like
        # transformers' CPU attention, the probabilities are rounded to it before they weight
        # the values, and reading half the bytes makes those products faster.
        self.key_dtype = torch.float32 if options.float32_keys else self.dtype
        self.prefix_attention = options.prefix_attention
        self.skip_prompt_padding = options.skip_prompt_padding
        self.kernel_choice = choose_linear(model, len(self.prompts), options.packed_weights)
        self.linear: Linear = PackedWeights(model) if self.kernel_choice.packed else plain_linear
        self.compiled = CompiledStep.for_model(model) if options.compile_step else None
        self.keys = torch.zeros(shape, dtype=self.key_dtype, device=self.device)
        self.values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.mask = torch.zeros(
            (len(self.distinct), self.length), dtype=torch.bool, device=self.device
        )
        self.next_position = torch.zeros(len(self.distinct), dtype=torch.long, device=self.device)
        self.filled = 0  # cache columns written so far
        width = self.prompt_width - self.prefix_len
        self.prompt_positions = self.prefix_len + len(self.distinct) * width
        self.prompt_padding = sum(width - (len(p) - self.prefix_len) for p in self.distinct)
        if self.skip_prompt_padding:
            self.prompt_positions -= self.prompt_padding
            self.prompt_padding = 0

    # ------------------------------------------------------------------ phases
    def prefill(self) -> torch.Tensor:
        """Run every prompt; returns the next-token logits ``[batch, vocab]`` of each row."""
        if self.prefix_len:
            prefix = torch.tensor([self.distinct[0][: self.prefix_len]], device=self.device)
            positions = torch.arange(self.prefix_len, device=self.device)[None]
            causal = torch.ones(
                (self.prefix_len, self.prefix_len), dtype=torch.bool, device=self.device
            ).tril()[None, None]
            self.mask[:, : self.prefix_len] = True
            self._forward(prefix, positions, 0, causal)

        width = self.prompt_width - self.prefix_len
        rests = [prompt[self.prefix_len :] for prompt in self.distinct]
        ids, real = pad_ids(rests, self.pad_id, side="left", width=width)
        ids, real = ids.to(self.device), real.to(self.device)
        positions = self.prefix_len + (real.long().cumsum(-1) - 1).clamp(min=0)
        self.mask[:, self.prefix_len : self.prompt_width] = real
        # Query i sees the prefix and the real suffix columns up to itself; a padding query
        # sees itself, so no softmax row is empty (an empty one would put NaN into the cache).
        causal = torch.ones((width, width), dtype=torch.bool, device=self.device).tril()
        suffix = causal[None] & real[:, None, :]
        suffix |= torch.eye(width, dtype=torch.bool, device=self.device)[None]
        prefix = self.mask[:, None, : self.prefix_len].expand(-1, width, -1)
        attend = torch.cat([prefix, suffix], dim=-1)[:, None]
        padded = real if self.skip_prompt_padding and not bool(real.all()) else None
        logits = self._forward(ids, positions, self.prefix_len, attend, padded)
        self.next_position = positions[:, -1] + 1

        if len(self.distinct) < len(self.prompts):
            self.take(self.expand)
            logits = logits[self.expand]
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per live row; returns the next-token logits ``[live rows, vocab]``."""
        column = self.filled
        self.mask[:, column] = True
        positions = self.next_position[:, None]
        attend = self.mask[:, None, None, : column + 1]
        logits = self._forward(tokens[:, None], positions, column, attend)
        self.next_position = self.next_position + 1
        return logits

    def take(self, index: torch.Tensor) -> None:
        """Keep (or repeat) the cache rows ``index``, in that order; later steps run only those
        rows. Copies the whole cache: the prompt pass uses it to give each batch row its
        prompt's row."""
        self.keys = self.keys[:, index]
        self.values = self.values[:, index]
        self.mask = self.mask[index]
        self.next_position = self.next_position[index]

    def drop_finished(self, alive: torch.Tensor) -> torch.Tensor:
        """Drop the rows where ``alive`` is False; later steps run only the others.

        Live rows from the end of the batch move into the finished rows' places, so only the
        moved rows' written columns are copied (not the shared prefix, when decode attention
        reads it from row 0), and the cache keeps its storage: later steps use a view of its
        first rows. Returns the new order: row ``i`` now holds what row ``order[i]`` held.
        """
        n = int(alive.sum())
        order = torch.arange(n, device=alive.device)
        holes = (~alive[:n]).nonzero().squeeze(1)
        movers = alive[n:].nonzero().squeeze(1) + n
        order[holes] = movers
        if len(holes):
            start = self.prefix_len if self.prefix_attention else 0
            for cache in (self.keys, self.values):
                cache[:, holes, :, start : self.filled] = cache[:, movers, :, start : self.filled]
        self.keys, self.values = self.keys[:, :n], self.values[:, :n]
        self.mask = self.mask[order]
        self.next_position = self.next_position[order]
        return order

    # --------------------------------------------------------------- internals
    def _forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        column: int,
        attend: torch.Tensor,
        real: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the layers on ``ids`` written at cache column ``column`` onwards; last logits.

        With ``real`` (``[rows, width]``, False at padding; each row's last column real) the
        per-position work (norms, projections, MLP) runs on the real positions only, packed
        into one row; attention alone sees the padded layout.
        """
        inner = self.model.model
        layout = None
        if real is not None:
            layout = RealPositions(real)
            ids, positions = layout.pack(ids), layout.pack(positions)
        hidden = inner.embed_tokens(ids)
        rotary = inner.rotary_emb(hidden, positions)
        if self.compiled is not None and layout is None and ids.shape[1] == 1:
            # A decode step: each layer's per-position work in two compiled graphs.
            for index, layer in enumerate(inner.layers):
                query, key, value = self.compiled.pre_attention(index, hidden, rotary)
                out = self._cached_attention(
                    layer.self_attn, query, key, value, index, column, attend, _unprojected
                )
                hidden = self.compiled.post_attention(index, hidden, out)
        else:
            for index, layer in enumerate(inner.layers):
                normed = layer.input_layernorm(hidden)
                hidden = hidden + self._attention(
                    layer.self_attn, normed, rotary, index, column, attend, layout
                )
                hidden = hidden + mlp(
                    layer.mlp, layer.post_attention_layernorm(hidden), self.linear
                )
        self.filled = max(self.filled, column + attend.shape[2])
        last = hidden[:, -1:] if layout is None else hidden[0, layout.last_of_row, None]
        return self.linear(self.model.lm_head, inner.norm(last))[:, -1]

    def _attention(
        self,
        attn: Any,
        hidden: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        layer: int,
        column: int,
        attend: torch.Tensor,
        layout: RealPositions | None = None,
    ) -> torch.Tensor:
        query, key, value = project_qkv(attn, hidden, rotary, self.linear)
        if layout is not None:
            query, key, value = (layout.unpack_heads(x) for x in (query, key, value))
        return self._cached_attention(
            attn, query, key, value, layer, column, attend, self.linear, layout
        )

    def _cached_attention(
        self,
        attn: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        layer: int,
        column: int,
        attend: torch.Tensor,
        linear: Linear,
        layout: RealPositions | None = None,
    ) -> torch.Tensor:
        """Write ``key``/``value`` at cache column ``column`` onwards, attend, and project the
        heads with ``linear`` (:func:`_unprojected` leaves them for the caller to project)."""
        end = column + query.shape[2]
        self.keys[layer, :, :, column:end] = key
        self.values[layer, :, :, column:end] = value
        query = query.to(self.key_dtype)
        if self.prefix_attention and query.shape[2] == 1:  # one query per row
            # Every row's prefix columns hold the same keys: row 0's stand for all.
            shared, own = slice(0, self.prefix_len), slice(self.prefix_len, end)
            return decode_attention(
                attn,
                query,
                (self.keys[layer, 0, :, shared], self.values[layer, 0, :, shared]),
                (self.keys[layer, :, :, own], self.values[layer, :, :, own]),
                self.mask[:, own],
                linear,
            )
        keys = self.keys[layer, : attend.shape[0], :, : attend.shape[-1]]
        values = self.values[layer, : attend.shape[0], :, : attend.shape[-1]]
        return attention(attn, query, keys, values.to(query.dtype), attend, linear, layout)


class RealPositions:
    """The real positions of a right-aligned padded batch ``[rows, width]``, packed into one row.

    Example:
        >>> layout = RealPositions(torch.tensor([[False, True], [True, True]]))
        >>> layout.pack(torch.tensor([[0, 7], [8, 9]]))
        tensor([[7, 8, 9]])
    """

    def __init__(self, real: torch.Tensor) -> None:
        self.rows, self.width = real.shape
        self.index = real.flatten().nonzero().squeeze(1)  # into the flattened [rows * width]
        self.last_of_row = real.sum(-1).cumsum(0) - 1  # into the packed row

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``[rows, width, ...]`` -> ``[1, real positions, ...]``."""
        return x.flatten(0, 1)[self.index][None]

    def unpack_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[1, heads, real positions, dim]`` -> ``[rows, heads, width, dim]``, zero at padding."""
        heads, dim = x.shape[1], x.shape[3]
        out = x.new_zeros(self.rows * self.width, heads, dim)
        out[self.index] = x[0].transpose(0, 1)
        return out.view(self.rows, self.width, heads, dim).transpose(1, 2)


Linear = Callable[[torch.nn.Linear, torch.Tensor], torch.Tensor]


def plain_linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``: the layer as the model runs it (differentiable)."""
    return module(x)


def _unprojected(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``x`` as it is: attention's heads left for a compiled graph to output-project."""
    return x


# ------------------------------------------------------------ compiled decode step
# The graphs torch.compile makes of the two functions below, made once per process, and why
# compiling was given up (None while it has not been). Cleared by reset_compiled().
_COMPILE: dict[str, Any] = {"graphs": {}, "failed": None}
COMPILE_BACKEND = "inductor"


def compiler_available() -> bool:
    """Whether inductor finds a C++ compiler here (its CPU code generation needs one).

    Example:
        >>> compiler_available()   # gcc or clang installed
        True
    """
    try:
        from torch._inductor import cpp_builder

        compiler = cpp_builder.get_cpp_compiler()
    except Exception:  # noqa: BLE001 - any failure to find one means: none
        return False
    return bool(shutil.which(compiler) or os.path.isfile(compiler))


def reset_compiled() -> None:
    """Forget the compiled graphs and any earlier failure (tests, and benchmarks timing the
    first compile)."""
    _COMPILE["graphs"].clear()
    _COMPILE["failed"] = None
    torch._dynamo.reset()


def _give_up(reason: str) -> None:
    """Turn compiling off for this process, with one warning."""
    if _COMPILE["failed"] is None:
        _COMPILE["failed"] = reason
        warnings.warn(
            f"torch.compile of the decode step is off for this process ({reason}); "
            "decode steps run eager, as with FastPathOptions(compile_step=False)",
            RuntimeWarning,
            stacklevel=3,
        )


def _run_compiled(fn: Callable[..., Any], batched: int, *args: Any) -> Any:
    """``fn(*args)`` through its compiled graph, the first ``batched`` arguments' dimension 0
    being the batch; eager once compiling has failed (an error that is not the compiler's then
    raises from the eager call, as it would have without it)."""
    if _COMPILE["failed"] is None:
        graph = _COMPILE["graphs"].get(fn.__name__)
        if graph is None:
            graph = torch.compile(fn, backend=COMPILE_BACKEND, fullgraph=True)
            _COMPILE["graphs"][fn.__name__] = graph
        if args[0].shape[0] > 1:
            # The batch shrinks as rows finish: one graph for every batch size, not one each.
            for tensor in args[:batched]:
                torch._dynamo.maybe_mark_dynamic(tensor, 0)
        try:
            return graph(*args)
        except Exception as error:  # noqa: BLE001 - any compile failure falls back to eager
            _give_up(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    return fn(*args)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm's arithmetic."""
    dtype = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def _pre_attention(
    hidden: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    norm: torch.Tensor,
    eps: float,
    head_dim: int,
    wq: torch.Tensor,
    bq: torch.Tensor | None,
    wk: torch.Tensor,
    bk: torch.Tensor | None,
    wv: torch.Tensor,
    bv: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input norm, query/key/value projections and rotary embedding of one decode step:
    ``[batch, heads, 1, head_dim]`` each."""
    normed = _rms_norm(hidden, norm, eps)
    shape = (*hidden.shape[:2], -1, head_dim)
    query = F.linear(normed, wq, bq).view(shape).transpose(1, 2)
    key = F.linear(normed, wk, bk).view(shape).transpose(1, 2)
    value = F.linear(normed, wv, bv).view(shape).transpose(1, 2)
    query, key = apply_rotary_pos_emb(query, key, cos, sin)
    return query, key, value


def _post_attention(
    hidden: torch.Tensor,
    heads: torch.Tensor,
    norm: torch.Tensor,
    eps: float,
    wo: torch.Tensor,
    bo: torch.Tensor | None,
    wg: torch.Tensor,
    bg: torch.Tensor | None,
    wu: torch.Tensor,
    bu: torch.Tensor | None,
    wd: torch.Tensor,
    bd: torch.Tensor | None,
) -> torch.Tensor:
    """Output projection and residual, post-attention norm, SiLU MLP and residual."""
    hidden = hidden + F.linear(heads, wo, bo)
    normed = _rms_norm(hidden, norm, eps)
    gate = F.silu(F.linear(normed, wg, bg))
    return hidden + F.linear(gate * F.linear(normed, wu, bu), wd, bd)


class CompiledStep:
    """A decode step's per-layer work (everything but the cache write and attention) as two
    ``torch.compile`` graphs, :func:`_pre_attention` and :func:`_post_attention`.

    The layers' weights are arguments, not constants, so one pair of graphs serves every layer
    of every model of the same shapes, and weights updated in place between rollouts need no
    recompiling; the batch dimension is marked dynamic, so compaction (the batch shrinking as
    rows finish) does not recompile either (``tests/test_compile.py`` counts the compiles).
    The cache write and attention stay eager (their key length grows every step).

    Built by :meth:`for_model`, which returns None (eager) where the model's layers are not
    plain Llama layers (LoRA-wrapped projections, an activation other than SiLU), where no
    C++ compiler is found on CPU, or once compiling has failed in this process.

    Example:
        >>> step = CompiledStep.for_model(model)
        >>> query, key, value = step.pre_attention(0, hidden, rotary)
    """

    def __init__(self, model: Any) -> None:
        self.layers = []
        for layer in model.model.layers:
            attn, block = layer.self_attn, layer.mlp
            self.layers.append(
                (
                    (
                        layer.input_layernorm.weight,
                        layer.input_layernorm.variance_epsilon,
                        attn.head_dim,
                        *_weight_and_bias(attn.q_proj),
                        *_weight_and_bias(attn.k_proj),
                        *_weight_and_bias(attn.v_proj),
                    ),
                    (
                        layer.post_attention_layernorm.weight,
                        layer.post_attention_layernorm.variance_epsilon,
                        *_weight_and_bias(attn.o_proj),
                        *_weight_and_bias(block.gate_proj),
                        *_weight_and_bias(block.up_proj),
                        *_weight_and_bias(block.down_proj),
                    ),
                )
            )

    @staticmethod
    def unsupported(model: Any) -> str | None:
        """Why the compiled step cannot run ``model``'s layers; None when it can."""
        if getattr(model.config, "hidden_act", None) != "silu":
            return "activation is not SiLU"
        for layer in model.model.layers:
            attn, block = layer.self_attn, layer.mlp
            projections = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj)
            projections += (block.gate_proj, block.up_proj, block.down_proj)
            if not all(type(p) is torch.nn.Linear for p in projections):
                return "projections are wrapped (an adapter)"
            norms = (layer.input_layernorm, layer.post_attention_layernorm)
            if not all(hasattr(n, "variance_epsilon") for n in norms):
                return "norms are not RMSNorm"
        return None

    @classmethod
    def for_model(cls, model: Any) -> CompiledStep | None:
        """The compiled step for ``model``, or None where decode steps must run eager."""
        if cls.unsupported(model) is not None:
            return None
        if model.lm_head.weight.device.type == "cpu" and not compiler_available():
            _give_up("no C++ compiler found for inductor's CPU code")
        if _COMPILE["failed"] is not None:
            return None
        return cls(model)

    def pre_attention(
        self, layer: int, hidden: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer ``layer``'s input norm, q/k/v projections and rotary embedding."""
        return _run_compiled(_pre_attention, 3, hidden, *rotary, *self.layers[layer][0])

    def post_attention(self, layer: int, hidden: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s output projection of ``heads``, residuals, norm and MLP."""
        return _run_compiled(_post_attention, 2, hidden, heads, *self.layers[layer][1])


def _weight_and_bias(layer: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    return layer.weight, layer.bias


@dataclass(frozen=True)
class LinearChoice:
    """How a rollout runs its linear layers, and why.

    Attributes:
        packed: through :class:`PackedWeights` (else the model's own layers).
        reason: ``"option"`` (``FastPathOptions.packed_weights`` said so), ``"unavailable"``
            (oneDNN cannot run these weights here, or the model is below ``PACK_MIN_PARAMS``)
            or ``"measured"`` (the timing of :func:`time_linear_kernels` decided).
        measured: the measurement (timings, and whether it was timed now or read from the
            cache) when ``reason`` is ``"measured"``.
    """

    packed: bool
    reason: str
    measured: kernels.Measured | None = None

    def describe(self) -> str:
        """One line for benchmark output.

        Example:
            >>> LinearChoice(False, "unavailable").describe()
            'plain (unavailable)'
        """
        if self.measured is not None:
            return self.measured.describe()
        return f"{'packed' if self.packed else 'plain'} ({self.reason})"


def choose_linear(model: Any, rows: int, packed_weights: bool | None = None) -> LinearChoice:
    """Whether a rollout of ``rows`` prompts on ``model`` runs its linear layers through
    packed oneDNN weights: ``packed_weights`` when it is True or False, else measured.

    The measurement (:func:`time_linear_kernels`, about a second for SmolLM2-135M) runs once
    per machine key (:func:`rewardgym.agents.kernels.machine_key`), dtype, batch bucket
    (:func:`rewardgym.agents.kernels.rows_bucket`) and set of layer shapes; packed wins only
    if at least ``PACKED_MIN_GAIN`` times faster. Models below ``PACK_MIN_PARAMS`` and weights
    oneDNN cannot run here are never packed, and never timed.

    Example:
        >>> choose_linear(load_policy("tiny").model, 8).describe()
        'plain (unavailable)'
    """
    if packed_weights is False:
        return LinearChoice(False, "option")
    if not PackedWeights.pays_for(model):
        return LinearChoice(False, "unavailable")
    if packed_weights is True:
        return LinearChoice(True, "option")
    bucket = kernels.rows_bucket(rows)
    weight = model.get_output_embeddings().weight
    shapes = sorted(
        (tuple(m.weight.shape), m.bias is not None)
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    )
    digest = hashlib.sha256(repr(shapes).encode()).hexdigest()[:12]
    question = f"packed_weights/{str(weight.dtype).removeprefix('torch.')}/rows{bucket}/{digest}"

    def choose(seconds: dict[str, float]) -> str:
        return "packed" if seconds["plain"] >= PACKED_MIN_GAIN * seconds["packed"] else "plain"

    measured = kernels.measured_choice(
        question, lambda: time_linear_kernels(model, bucket), choose=choose
    )
    return LinearChoice(measured.choice == "packed", "measured", measured)


def time_linear_kernels(
    model: Any, rows: int, budget_s: float = KERNEL_TIMING_BUDGET_S
) -> dict[str, float]:
    """Seconds of one decode step's linear layers for ``rows`` rows, both ways: ``"packed"``
    (:class:`PackedWeights`, packed q/k/v included) and ``"plain"`` (each layer's own forward).

    Every layer's real weights are used, so the weights come from memory as in a real decode
    step, not from a cache that a repeated small layer would sit in. One untimed call of each
    (oneDNN builds its kernels for a new shape on the first), then alternated calls until
    ``budget_s`` is spent (between ``MIN_KERNEL_REPEATS`` and ``MAX_KERNEL_REPEATS`` each);
    the fastest call of each counts, as the machine's capability rather than its neighbours'.

    Example:
        >>> sorted(time_linear_kernels(model, 8))
        ['packed', 'plain']
    """
    packed = PackedWeights(model)
    dtype = model.get_output_embeddings().weight.dtype
    gen = torch.Generator().manual_seed(0)
    inputs: dict[int, torch.Tensor] = {}

    def x(width: int) -> torch.Tensor:
        if width not in inputs:
            inputs[width] = torch.randn(rows, 1, width, generator=gen).to(dtype)
        return inputs[width]

    plain_layers = [m for m in model.modules() if _packable(m) and m not in _adapter_parts(model)]

    def run_packed() -> None:
        for attn in packed._fused:
            packed.qkv(attn, x(attn.q_proj.in_features))
        for module in packed._weights:
            packed(module, x(_base(module).in_features))

    def run_plain() -> None:
        for module in plain_layers:
            module(x(_base(module).in_features))

    options = {"packed": run_packed, "plain": run_plain}
    best = dict.fromkeys(options, float("inf"))
    with torch.inference_mode():
        for fn in options.values():
            fn()
        start = time.perf_counter()
        for repeat in range(MAX_KERNEL_REPEATS):
            if repeat >= MIN_KERNEL_REPEATS and time.perf_counter() - start > budget_s:
                break
            for name, fn in options.items():
                began = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - began)
    return best


class PackedWeights:
    """A model's linear-layer weights reordered into oneDNN's blocked layout, for no-grad use.

    Called as ``packed(module, x)`` it computes ``module(x)`` through oneDNN. An attention
    module's query, key and value projections are packed as one weight instead (:meth:`qkv`):
    for SmolLM2 one product of 960 rows runs faster than three of 576, 192 and 192 rows (bf16
    rollouts at batch 64 ran 6-7 % faster in two A/B runs, fp32 ones no faster). Weights change
    between rollouts (training), so the decoder packs them when it is built: about 0.1 s for
    SmolLM2-135M, and one more copy of the weights in memory while the rollout runs. The
    results differ from ``module(x)`` only by float rounding (another summation order).

    Example:
        >>> packed = PackedWeights(model)
        >>> packed(model.lm_head, hidden)   # == model.lm_head(hidden), up to rounding
        >>> packed.qkv(model.model.layers[0].self_attn, hidden)  # == cat of q, k and v
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self._fused: dict[Any, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for module in model.modules():
            projections = _qkv_projections(module)
            if projections:
                weight = torch.cat([_merged_weight(p) for p in projections])
                biases = [_base(p).bias for p in projections]
                bias = None if biases[0] is None else torch.cat(biases).detach()
                self._fused[module] = (_pack(weight), bias)
        skip = {p for attn in self._fused for p in _qkv_projections(attn)} | _adapter_parts(model)
        self._weights = {
            module: _pack(_merged_weight(module))
            for module in model.modules()
            if _packable(module) and module not in skip
        }

    @staticmethod
    def pays_for(model: torch.nn.Module) -> bool:
        """Whether packing ``model`` is possible here and large enough to pay off."""
        weight = model.get_output_embeddings().weight
        return PackedWeights.available(weight) and count_params(model) >= PACK_MIN_PARAMS

    @staticmethod
    def available(weight: torch.Tensor) -> bool:
        """Whether oneDNN can run weights like ``weight`` here: CPU, float32, or bfloat16 on a
        CPU with bf16 support."""
        if weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
            return False
        if weight.dtype == torch.bfloat16:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return weight.dtype == torch.float32

    def __call__(self, module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if module not in self._weights:  # an adapter peft cannot merge runs as it is
            return module(x)
        bias = _base(module).bias
        bias = None if bias is None else bias.detach()
        return _packed_linear(x, self._weights[module], bias)

    def qkv(self, attn: Any, x: torch.Tensor) -> torch.Tensor | None:
        """``cat([q_proj(x), k_proj(x), v_proj(x)], -1)`` as one product; None when ``attn``'s
        projections were not packed together."""
        if attn not in self._fused:
            return None
        return _packed_linear(x, *self._fused[attn])


def _base(module: torch.nn.Module) -> torch.nn.Module:
    """The plain linear layer of ``module``: itself, or the one a LoRA wrapper holds."""
    return getattr(module, "base_layer", module)


def _packable(module: torch.nn.Module) -> bool:
    """A linear layer, or a LoRA-wrapped one whose update peft can express as a weight."""
    if isinstance(module, torch.nn.Linear):
        return True
    return isinstance(_base(module), torch.nn.Linear) and hasattr(module, "get_delta_weight")


def _merged_weight(module: torch.nn.Module) -> torch.Tensor:
    """The weight ``module`` multiplies by, a LoRA adapter's ``B·A·alpha/r`` folded in: the
    packed copy is made once per rollout anyway, so the adapter then costs no extra products."""
    base = _base(module)
    weight = base.weight.detach()
    if module is base:
        return weight
    for name in module.active_adapters:
        weight = weight + module.get_delta_weight(name).detach().to(weight.dtype)
    return weight


def _adapter_parts(model: torch.nn.Module) -> set[torch.nn.Module]:
    """The linear layers inside adapter-wrapped layers (LoRA's base layer and matrices), which
    run through their wrapper's own forward."""
    return {
        part
        for module in model.modules()
        if hasattr(module, "base_layer")
        for part in module.modules()
        if part is not module
    }


def _pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight, None)


def _packed_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


def _qkv_projections(module: Any) -> list[torch.nn.Linear]:
    """An attention module's query, key and value layers when they can run as one product
    (all linear, all with a bias or none); else empty."""
    layers = [getattr(module, name, None) for name in ("q_proj", "k_proj", "v_proj")]
    if not all(layer is not None and _packable(layer) for layer in layers):
        return []
    if len({_base(layer).bias is None for layer in layers}) > 1:
        return []
    return layers


def project_qkv(
    attn: Any,
    hidden: torch.Tensor,
    rotary: tuple[torch.Tensor, torch.Tensor],
    linear: Linear = plain_linear,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values ``[batch, heads, positions, head_dim]`` of a Llama attention
    module, rotary embedding applied (as its own ``forward`` computes them)."""
    shape = (*hidden.shape[:2], -1, attn.head_dim)
    fused = linear.qkv(attn, hidden) if isinstance(linear, PackedWeights) else None
    if fused is not None:
        heads = fused.view(shape).transpose(1, 2)  # query, key and value heads in turn
        n_query = attn.q_proj.out_features // attn.head_dim
        n_key = attn.k_proj.out_features // attn.head_dim
        cos, sin = (r.unsqueeze(1) for r in rotary)
        # apply_rotary_pos_emb's arithmetic, on queries and keys in one go
        rotated = heads[:, : n_query + n_key]
        rotated = rotated * cos + rotate_half(rotated) * sin
        return rotated[:, :n_query], rotated[:, n_query:], heads[:, n_query + n_key :]
    query = linear(attn.q_proj, hidden).view(shape).transpose(1, 2)
    key = linear(attn.k_proj, hidden).view(shape).transpose(1, 2)
    value = linear(attn.v_proj, hidden).view(shape).transpose(1, 2)
    query, key = apply_rotary_pos_emb(query, key, *rotary)
    return query, key, value


def mlp(module: Any, hidden: torch.Tensor, linear: Linear = plain_linear) -> torch.Tensor:
    """A Llama MLP block, ``down(act(gate(x)) * up(x))``, with ``linear`` for its layers."""
    gate = module.act_fn(linear(module.gate_proj, hidden))
    return linear(module.down_proj, gate * linear(module.up_proj, hidden))


def attention(
    attn: Any,
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    linear: Linear = plain_linear,
    layout: RealPositions | None = None,
) -> torch.Tensor:
    """:func:`attend`, output-projected: ``[batch, queries, hidden]``, or
    ``[1, real positions, hidden]`` with a ``layout`` (only those are projected)."""
    out = attend(attn, query, keys, values, mask)
    if layout is not None:
        out = layout.pack(out)
    return linear(attn.o_proj, out.to(attn.o_proj.weight.dtype))


def attend(
    attn: Any, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Grouped-query attention of ``query`` over ``keys``/``values`` under the boolean ``mask``
    (``[batch, 1, queries, keys]``), heads concatenated: ``[batch, queries, heads * head_dim]``.

    Mirrors transformers' ``sdpa`` attention: a single query folds the heads sharing a key
    head into the query axis; several queries repeat the key heads.
    """
    batch, heads, n, head_dim = query.shape
    groups = heads // keys.shape[1]
    if n == 1 and groups > 1:
        out = F.scaled_dot_product_attention(
            query.reshape(batch, -1, groups, head_dim),
            keys,
            values,
            attn_mask=mask,
            scale=attn.scaling,
        ).reshape(batch, heads, 1, head_dim)
    else:
        out = F.scaled_dot_product_attention(
            query,
            keys.repeat_interleave(groups, dim=1),
            values.repeat_interleave(groups, dim=1),
            attn_mask=mask,
            scale=attn.scaling,
        )
    return out.transpose(1, 2).reshape(batch, n, -1)


def decode_attention(
    attn: Any,
    query: torch.Tensor,
    shared: tuple[torch.Tensor, torch.Tensor],
    own: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
    linear: Linear = plain_linear,
) -> torch.Tensor:
    """Grouped-query attention of one query per row over a cache whose first columns every row
    shares, output-projected: ``[batch, 1, hidden]``.

    Args:
        attn: the Llama attention module (its ``scaling`` and ``o_proj``).
        query: ``[batch, heads, 1, head_dim]``.
        shared: keys and values ``[kv_heads, prefix, head_dim]`` of the columns every row
            attends to (``prefix`` may be 0). Their scores are one matrix product over all
            rows' queries, so these columns are read once per step, not once per row.
        own: keys and values ``[batch, kv_heads, columns, head_dim]`` of each row's own columns.
        mask: ``[batch, columns]``, True where a row attends to its own column.

    The softmax runs in float32 over the shared and own columns together, so the result is
    ``scaled_dot_product_attention`` over the full cache up to float rounding.
    """
    keys, values = own
    batch, heads, _, head_dim = query.shape
    kv_heads = keys.shape[1]
    groups = heads // kv_heads
    prefix = shared[0].shape[1]
    query = query.reshape(batch, kv_heads, groups, head_dim)  # heads sharing a key head, folded
    scores = torch.matmul(query, keys.transpose(-1, -2))
    scores = scores.float().masked_fill(~mask[:, None, None], float("-inf"))
    if prefix:
        # All rows' queries as one matrix per key head: [kv_heads, batch * groups, head_dim].
        stacked = query.transpose(0, 1).reshape(kv_heads, batch * groups, head_dim)
        common = torch.matmul(stacked, shared[0].transpose(-1, -2))
        common = common.view(kv_heads, batch, groups, prefix).transpose(0, 1)
        scores = torch.cat([common.float(), scores], dim=-1)
    weights = (scores * attn.scaling).softmax(dim=-1).to(values.dtype)
    out = torch.matmul(weights[..., prefix:], values)
    if prefix:
        common_weights = weights[..., :prefix].transpose(0, 1)
        common_weights = common_weights.reshape(kv_heads, batch * groups, prefix)
        common = torch.matmul(common_weights, shared[1]).view(kv_heads, batch, groups, head_dim)
        out = out + common.transpose(0, 1)
    out = out.reshape(batch, 1, heads * head_dim)
    return linear(attn.o_proj, out.to(attn.o_proj.weight.dtype))


class DynamicCacheDecoder:
    """The generic rollout path for any causal LM: its own ``forward`` and cache, step by step.

    Prompts are left-padded to the longest; the attention mask grows by one column per step.
    It has the interface of :class:`StaticCacheDecoder` except :meth:`take` and
    :meth:`drop_finished` (``can_drop`` is False), so finished rows stay in the batch and are fed
    padding.

    Args:
        policy: the :class:`rewardgym.agents.policy.LMPolicy` whose model runs.
        prompt_ids: token ids of each prompt (each non-empty).
    """

    can_drop = False

    def __init__(self, policy: Any, prompt_ids: Sequence[Sequence[int]]) -> None:
        self.policy = policy
        self.ids, self.attention = policy._left_pad(prompt_ids)
        self.positions = policy._positions(self.attention)
        self.cache: Any = None
        self.prompt_positions = self.ids.numel()
        self.prompt_padding = self.prompt_positions - sum(len(p) for p in prompt_ids)

    def prefill(self) -> torch.Tensor:
        """Run the prompts; returns the next-token logits ``[batch, vocab]``."""
        logits, self.cache = self.policy._forward(
            self.ids, self.attention, self.positions, 1, use_cache=True
        )
        return logits[:, -1]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row; returns the next-token logits ``[batch, vocab]``."""
        ones = torch.ones_like(self.attention[:, :1])
        self.attention = torch.cat([self.attention, ones], dim=1)
        self.positions = self.positions[:, -1:] + 1
        logits, self.cache = self.policy._forward(
            tokens[:, None], self.attention, self.positions, 1, self.cache, use_cache=True
        )
        return logits[:, -1]
