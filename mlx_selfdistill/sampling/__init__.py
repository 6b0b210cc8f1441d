"""Sampling: N candidate solutions per problem, one prefill per prompt, continuous batching.

    from mlx_selfdistill.sampling import DrawSettings, SamplingParams, sample_problems
    draw = DrawSettings(n=8, params=SamplingParams(temperature=1.6, top_k=20, top_p=0.8))
    samples = sample_problems(model, tokenizer, problems, draw)

Modules: samplers (vLLM/HF-order sampling, per-sample seeds), stopping (EOS, stop
strings, runaway repetition), engine (batched generation), slots (its KV cache), exact
(bits independent of the batch), prefix (a style's header prefilled once per run), draw
(what sample_problems is asked for, one record), api (records, resume), distributed
(mlx.launch sharding and merge).
"""

from .api import read_samples, sample_file, sample_problems, summarize_samples
from .draw import DrawSettings
from .engine import Finished, PhaseClock, Request, SamplingEngine
from .samplers import SamplingParams, analytic_distribution, sample_tokens, sequence_seed, step_uniforms
from .stopping import RunawayConfig, StopStrings, repetition_period

__all__ = [
    "sample_problems", "sample_file", "read_samples", "summarize_samples", "DrawSettings",
    "SamplingEngine", "Request", "Finished", "PhaseClock",
    "SamplingParams", "sample_tokens", "analytic_distribution", "sequence_seed", "step_uniforms",
    "RunawayConfig", "StopStrings", "repetition_period",
]
