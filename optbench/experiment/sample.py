"""Text sampled from a language-model run: the model its config builds, with the final weights
the run kept (weights.pt), or untrained (the initial weights its seed gives) to compare with.

Byte-level: the prompt is encoded as UTF-8 bytes, each new token drawn from the softmax of the
last position's logits over temperature (nanoGPT's sample.py, without top-k), and the bytes
decoded with invalid sequences replaced. Any model whose forward maps (B, T) token ids to
(B, T, V) logits samples; the context is the data's.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from optbench.components.data import load_data
from optbench.core.config import read_config_file, validate_config
from optbench.core.errors import ConfigError
from optbench.experiment.plan import make_plan
from optbench.storage.results import RunDir


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: torch.Tensor,
    tokens: int,
    context: int,
    temperature: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """`tokens` tokens drawn one at a time after `prompt` (1-D int64), each from the last
    `context` tokens; returns the prompt and the new tokens."""
    idx = prompt.unsqueeze(0)
    for _ in range(tokens):
        logits = model(idx[:, -context:])
        logits = getattr(logits, "logits", logits)[:, -1, :] / temperature
        probs = torch.softmax(logits, dim=-1)
        idx = torch.cat((idx, torch.multinomial(probs, 1, generator=generator)), dim=1)
    return idx[0]


def sample_run(
    run_dir: str | Path,
    prompt: str = "\n",
    tokens: int = 200,
    temperature: float = 0.8,
    seed: int = 0,
    trained: bool = True,
) -> str:
    """`tokens` bytes of text from the run in `run_dir` after `prompt`, drawn with `seed`; with
    `trained=False`, from the model as its seed initialises it (before any step)."""
    run = RunDir(Path(run_dir))
    if not run.config_path.is_file():
        raise ConfigError("run_dir", f"{run_dir} is not a run folder (no {RunDir.CONFIG})")
    if tokens < 1 or temperature <= 0:
        field = "tokens" if tokens < 1 else "temperature"
        raise ConfigError(field, f"must be > 0, got {tokens if tokens < 1 else temperature}")
    resolved = read_config_file(run.config_path)
    resolved.pop("code", None)  # what identified the data and code: recomputed by planning
    resolved.pop("log", None)  # sampling logs nowhere (W&B online need not be reachable)
    plan = make_plan(validate_config(resolved))
    spec = plan.data_spec
    if spec.bytes_per_token is None:
        raise ConfigError("run_dir", f"{run_dir} is not a run of a language model on text")
    torch.manual_seed(plan.config.seed)  # the run's initial weights
    model = plan.build_model(torch.device("cpu"))
    if trained:
        if not run.weights_path.is_file():
            raise ConfigError(
                "run_dir", f"{run_dir} has no {RunDir.WEIGHTS}: the run has not finished"
            )
        model.load_state_dict(torch.load(run.weights_path, weights_only=True)["model"])
    model.eval()
    corpus, _ = load_data(plan.data, plan.config.seed)  # its vocabulary: bytes or characters
    start = corpus.encode(prompt or "\n")
    generator = torch.Generator().manual_seed(seed)
    out = generate(model, start, tokens, spec.input_shape[0], temperature, generator)
    return corpus.decode(out.tolist())
