"""A GPT shaped as nanoGPT's (github.com/karpathy/nanoGPT, model.py): token and position
embeddings, pre-LayerNorm blocks of causal self-attention (`F.scaled_dot_product_attention`,
is_causal) and a GELU MLP, a final LayerNorm, and an output layer tied to the token embedding.
Initialised as nanoGPT initialises: N(0, 0.02) weights and embeddings, zero biases, and the
residual projections (c_proj) at 0.02 / sqrt(2 n_layer). Its parameter names are nanoGPT's, so
weight-decay groups read as nanoGPT's do (docs/language-models.md):

    param_groups: [{params: ["*.bias", "*.ln_*", "*.wte.*", "*.wpe.*"], weight_decay: 0.0}]

puts norms, biases and embeddings out of weight decay (minGPT's and timm's rule); nanoGPT's
current configure_optimizers decays every tensor of two or more dimensions, embeddings too:
`params: ["*.bias", "*.ln_*"]`.

The forward returns the logits of every position, (B, T, vocab), for a per-token loss
(`token_cross_entropy`); nanoGPT's returns (logits, loss) and only the last position's logits
when it is given no targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from optbench.components.data import DataSpec

# The weight-decay groups above, for configs and tests to name in one place.
NO_DECAY = ("*.bias", "*.ln_*", "*.wte.*", "*.wpe.*")


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # q, k, v of all heads
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd, self.dropout = n_head, n_embd, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's GPT: vocab_size tokens, block_size positions, n_layer blocks of n_embd."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int,
        n_head: int,
        n_embd: int,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=nn.Embedding(block_size, n_embd),
                drop=nn.Dropout(dropout),
                h=nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer)),
                ln_f=nn.LayerNorm(n_embd, bias=bias),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(_init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.size(1)
        if t > self.block_size:
            raise ValueError(f"{t} tokens is longer than block_size {self.block_size}")
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def gpt_parameters(
    vocab_size: int, block_size: int, n_layer: int, n_embd: int, bias: bool = True
) -> int:
    """The trainable parameter count: embeddings V·C + T·C (the output layer tied to the
    first), per block 12·C² weights and 13·C of LayerNorm weights and biases (2·C, the
    LayerNorm weights, without `bias`), and the final LayerNorm."""
    per_block = 12 * n_embd**2 + (13 * n_embd if bias else 2 * n_embd)
    final = 2 * n_embd if bias else n_embd
    return vocab_size * n_embd + block_size * n_embd + n_layer * per_block + final


def gpt(
    spec: DataSpec,
    n_layer: int = 2,
    n_head: int = 2,
    n_embd: int = 64,
    block_size: int | None = None,
    dropout: float = 0.0,
    bias: bool = True,
) -> nn.Module:
    """nanoGPT's GPT (pre-LayerNorm, causal attention, tied embeddings); vocabulary: the data's."""
    if spec.num_classes is None or not spec.integer_inputs or len(spec.input_shape) != 1:
        raise ValueError(
            f"needs token sequences (data: text or fortunes), got inputs {spec.input_shape}"
        )
    context = spec.input_shape[0]
    block_size = context if block_size is None else block_size
    if block_size < context:
        raise ValueError(f"block_size {block_size} is shorter than the data's context {context}")
    if min(n_layer, n_head, n_embd) < 1 or n_embd % n_head:
        raise ValueError(
            f"n_layer, n_head and n_embd must be >= 1, n_embd a multiple of n_head; got "
            f"{n_layer}, {n_head}, {n_embd}"
        )
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return GPT(spec.num_classes, block_size, n_layer, n_head, n_embd, dropout, bias)
