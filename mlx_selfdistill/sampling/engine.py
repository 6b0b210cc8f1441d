"""The batched sampling engine: one prefill per prompt, continuous batching.

Each prompt is prefilled once, alone (batch 1, so its cache never depends on other
prompts; a style's fixed header is prefilled once per run, prefix.py); its KV cache is
then written into a free row of the running decode batch for each of its N samples. The
batch holds sequences of many problems at once (greedy evaluation with n=1 fills its rows
across problems). Sequences leave as they finish and new prompts are admitted into the
freed rows, within `max_batch` rows and `max_kv_tokens` of KV cache.

The running cache is a SlotBatch (slots.py): a fixed number of rows that sequences join
and leave without copying the cache. A step is the forward pass, one sampler call (one
host sync: the tokens must reach the host to test stops) and Python bookkeeping; its parts
are timed by `PhaseClock` (benchmarks/engine_speed.py).

`exact=True` makes every sample's bits independent of the rows beside it (exact.py): each
row attends over its own columns only (row_attention.py), and a step never runs fewer rows
than the model's row floor.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

from .. import blas_gemv, blas_governor
from ..errors import UserError
from .exact import row_floor
from .prefix import HeaderCache
from .row_attention import per_row_attention
from .samplers import SamplingParams, sample_tokens, step_uniforms
from .slots import SlotBatch
from .stopping import RunawayConfig, StopStrings, repetition_period


class PhaseClock:
    """Wall seconds per phase of the engine's loop, for profiling (benchmarks/engine_speed.py).

    Each lap evaluates the arrays it is given, so a phase holds the work it queued; that adds
    host syncs, so the clock is off (`SamplingEngine.clock = None`) unless asked for.
    """

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.steps = 0
        self.full_steps = 0  # steps with every row of the batch live (none idle, e.g. in the tail)
        self.full_seconds = 0.0  # their forward, sampler and bookkeeping time
        self.full_tokens = 0
        self._t = time.perf_counter()
        self._step = 0.0

    def lap(self, phase: str, *arrays) -> None:
        if arrays:
            mx.eval(*arrays)
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._t
        if phase != "prefill":
            self._step += now - self._t
        self._t = now

    def end_step(self, live: int, rows: int) -> None:
        if live == rows:
            self.full_steps += 1
            self.full_seconds += self._step
            self.full_tokens += live
        self._step = 0.0


class _Off:
    steps = 0

    def lap(self, phase, *arrays):
        pass

    def end_step(self, live, rows):
        pass


@dataclass
class Request:
    """One prompt and the samples wanted from it."""

    prompt: list[int]
    sample_indices: list[int]
    seeds: list[int]  # one 64-bit seed per sample (samplers.sequence_seed)
    tag: Any = None  # handed back in Finished (e.g. the problem)
    shared: int = 0  # the first `shared` tokens are a style header whose cache is reused (prefix.py)


@dataclass
class Finished:
    tag: Any
    sample_index: int
    tokens: list[int]  # every sampled token, the EOS included
    text: str  # decoded, without EOS and without the stop string and what follows it
    finish_reason: str  # stop | length | runaway
    logprob_sum: float
    sampling_logprob_sum: float

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def mean_logprob(self) -> Optional[float]:
        return self.logprob_sum / len(self.tokens) if self.tokens else None

    @property
    def mean_sampling_logprob(self) -> Optional[float]:
        return self.sampling_logprob_sum / len(self.tokens) if self.tokens else None


@dataclass
class _Seq:
    tag: Any
    sample_index: int
    seed: int
    prompt_len: int
    tokens: list = field(default_factory=list)
    logprob_sum: float = 0.0
    sampling_logprob_sum: float = 0.0


@dataclass
class _Prefilled:
    request: Request
    cache: list
    logits: mx.array  # (1, V): the distribution of the first generated token
    next: int = 0  # how many of request.sample_indices were admitted

    @property
    def remaining(self) -> int:
        return len(self.request.sample_indices) - self.next


class SamplingEngine:
    def __init__(self, model, tokenizer, params: SamplingParams, *, max_tokens: int = 512,
                 stop: Sequence[str] = (), eos_token_ids: Optional[Iterable[int]] = None,
                 max_batch: int = 32, max_kv_tokens: Optional[int] = None, prefill_step: int = 512,
                 runaway: RunawayConfig = RunawayConfig(), exact: bool = False):
        if max_tokens < 1:
            raise UserError(f"max_tokens {max_tokens}: must be >= 1")
        if max_batch < 1:
            raise UserError(f"max_batch {max_batch}: must be >= 1")
        self.model, self.tokenizer, self.params = model, tokenizer, params
        self.max_tokens, self.max_batch, self.max_kv_tokens = max_tokens, max_batch, max_kv_tokens
        self.prefill_step = prefill_step
        self.eos = set(tokenizer.eos_token_ids if eos_token_ids is None else eos_token_ids)
        self.stop = StopStrings(tokenizer, stop)
        self.runaway = runaway
        self.exact = exact
        self.row_floor = row_floor(model) if exact else 1  # the fewest rows a decode step runs
        self.generated_tokens = 0
        self.prompt_tokens = 0
        self.clock: Optional[PhaseClock] = None
        self.batch: Optional[SlotBatch] = None  # the last run's decode batch (its `copies`)
        self.headers = HeaderCache()

    # --- pieces ------------------------------------------------------------------------

    def _prefill(self, request: Request) -> _Prefilled:
        if not request.prompt:
            raise UserError("empty prompt: every problem needs prompt text")
        cache = make_prompt_cache(self.model)
        tokens = mx.array(request.prompt)[None]
        head = tokens.shape[1] - 1
        for start in range(self._header(request, tokens, cache), head, self.prefill_step):
            # Only the cache is evaluated: the unused logits of the prompt are never computed.
            self.model(tokens[:, start:min(start + self.prefill_step, head)], cache=cache)
            mx.eval([c.state for c in cache])
        logits = self.model(tokens[:, head:], cache=cache)[:, -1, :]
        mx.eval(logits)
        self.prompt_tokens += len(request.prompt)
        return _Prefilled(request, cache, logits)

    def _header(self, request: Request, tokens: mx.array, cache: list) -> int:
        """Put the request's shared header into its fresh cache, prefilling the header alone the
        first time (so hit or miss, the prompt is split at the same place); its length."""
        n = request.shared
        if not 0 < n < tokens.shape[1] or not HeaderCache.supports(cache):
            return 0
        header = request.prompt[:n]
        if not self.headers.restore(cache, header):
            self.model(tokens[:, :n], cache=cache)
            self.headers.store(cache, header)
        return n

    def _kv_tokens(self, rows: list[_Seq]) -> int:
        """Worst-case padded KV size of a batch: every row as long as the longest can get."""
        if not rows:
            return 0
        return len(rows) * (max(r.prompt_len for r in rows) + self.max_tokens)

    def _room(self, rows: list[_Seq], prompt_len: int, wanted: int) -> int:
        room = min(wanted, self.max_batch - len(rows))
        if self.max_kv_tokens is not None:
            longest = max([prompt_len] + [r.prompt_len for r in rows]) + self.max_tokens
            room = min(room, self.max_kv_tokens // longest - len(rows))
            if not rows:
                room = max(room, 1)  # one sequence always runs, whatever the budget
        return max(room, 0)

    def _sample(self, logits: mx.array, rows: list[_Seq]):
        u = step_uniforms([r.seed for r in rows], [len(r.tokens) for r in rows])
        tokens, lp, slp = sample_tokens(logits, self.params, mx.array(u))
        mx.eval(tokens, lp, slp)
        return tokens, tokens.tolist(), lp.tolist(), slp.tolist()

    def _finish_reason(self, seq: _Seq) -> Optional[str]:
        if seq.tokens[-1] in self.eos or self.stop.hit(seq.tokens):
            return "stop"
        n = len(seq.tokens)
        if self.runaway.enabled and (n % self.runaway.check_every == 0 or n >= self.max_tokens):
            if repetition_period(seq.tokens, self.runaway) is not None:
                return "runaway"
        if n >= self.max_tokens:
            return "length"
        return None

    def _split_finished(self, seqs: list[_Seq]) -> tuple[list[Finished], list[int]]:
        """(the sequences that just finished, indices of those still running)."""
        done, running = [], []
        for i, seq in enumerate(seqs):
            reason = self._finish_reason(seq)
            if reason:
                done.append(self._finished(seq, reason))
            else:
                running.append(i)
        return done, running

    def _finished(self, seq: _Seq, reason: str) -> Finished:
        body = seq.tokens[:-1] if seq.tokens[-1] in self.eos else seq.tokens
        text = self.tokenizer.decode(body)
        if reason == "stop" and self.stop:
            text = self.stop.truncate(text)
        return Finished(seq.tag, seq.sample_index, list(seq.tokens), text, reason,
                        seq.logprob_sum, seq.sampling_logprob_sum)

    def _record(self, rows, token_list, lp, slp):
        for seq, t, a, b in zip(rows, token_list, lp, slp):
            seq.tokens.append(t)
            seq.logprob_sum += a
            seq.sampling_logprob_sum += b
        self.generated_tokens += len(rows)

    # --- the loop ----------------------------------------------------------------------

    def _slots(self, pending) -> int:
        """Rows of the decode batch: max_batch, or fewer when fewer samples are wanted or the
        KV budget holds fewer of the longest sequence."""
        total = sum(len(r.sample_indices) for r in pending)
        rows = min(self.max_batch, total)
        if self.max_kv_tokens is not None and pending:
            longest = max(len(r.prompt) for r in pending) + self.max_tokens
            rows = min(rows, self.max_kv_tokens // longest)
        return max(rows, self.row_floor)

    def run(self, requests: Iterable[Request], on_tokens: Optional[Callable[[int], None]] = None
            ) -> Iterator[Finished]:
        """Yield every requested sample as it finishes (in completion order)."""
        # A sample should not depend on which rows share its batch (resume, --max-batch): no
        # one-row products through gemv while the engine runs, however few rows are left. The
        # other two causes (small products, the attention window) only `exact` removes.
        with blas_gemv.batch_invariant():
            if not self.exact:
                yield from self._run(requests, on_tokens)
                return
            with per_row_attention(self.model):
                yield from self._run(requests, on_tokens)

    def _run(self, requests: Iterable[Request], on_tokens: Optional[Callable[[int], None]]) -> Iterator[Finished]:
        pending = deque(r for r in requests if r.sample_indices)
        slots = self._slots(pending)
        batch: Optional[SlotBatch] = None  # made at the first admission: it needs a prompt cache
        seqs: list[Optional[_Seq]] = [None] * slots  # the sequence in each row; None: free
        feed = [0] * slots  # each row's next input token
        current: Optional[_Prefilled] = None
        clock = self.clock or _Off()
        clock.lap("host")

        while True:
            # Admit: fill free rows from the prefilled prompt, prefilling the next as needed.
            free = [r for r, s in enumerate(seqs) if s is None]
            while free:
                if current is None:
                    if not pending:
                        break
                    current = self._prefill(pending.popleft())
                    clock.lap("prefill")
                    blas_governor.tick()  # the prefill is evaluated: MLX's stream is idle
                req = current.request
                live = [s for s in seqs if s is not None]
                k = min(len(free), self._room(live, len(req.prompt), current.remaining))
                if k == 0:
                    break
                new = [_Seq(req.tag, req.sample_indices[i], req.seeds[i], len(req.prompt))
                       for i in range(current.next, current.next + k)]
                current.next += k
                _, token_list, lp, slp = self._sample(mx.repeat(current.logits, k, axis=0), new)
                self._record(new, token_list, lp, slp)
                if on_tokens:
                    on_tokens(k)
                done, alive = self._split_finished(new)
                yield from done
                if alive:
                    if batch is None:
                        batch = SlotBatch(current.cache, slots, per_row=self.exact)
                    rows, free = free[:len(alive)], free[len(alive):]
                    batch.admit(rows, current.cache)
                    self.batch = batch
                    for r, i in zip(rows, alive):
                        seqs[r], feed[r] = new[i], token_list[i]
                clock.lap("admit", *[layer.state for layer in batch.layers] if batch else [])
                if current.remaining == 0:
                    current = None

            live_rows = [r for r, s in enumerate(seqs) if s is not None]
            if not live_rows:
                if current is None and not pending:
                    return
                continue
            idle = len(seqs) - len(live_rows)
            keep = max(len(live_rows), self.row_floor)
            if idle and current is None and not pending and len(seqs) - keep >= max(1, len(seqs) // 4):
                # Nothing left to admit: stop computing rows that will stay empty (but the floor's).
                free_rows = [r for r, s in enumerate(seqs) if s is None]
                kept = live_rows + free_rows[:keep - len(live_rows)]
                batch.keep_rows(kept)
                seqs, feed = [seqs[r] for r in kept], [feed[r] for r in kept]
                live_rows = list(range(len(live_rows)))
                clock.lap("compact")

            # Decode one token for every row; sample the live ones.
            clock.end_step(len(live_rows), slots)  # what followed the previous step counts to it
            logits = batch.forward(self.model, feed)
            clock.lap("forward", logits)
            clock.steps += 1
            if len(live_rows) < len(seqs):
                logits = logits[mx.array(live_rows)]
            rows = [seqs[r] for r in live_rows]
            _, token_list, lp, slp = self._sample(logits, rows)
            clock.lap("sample")
            self._record(rows, token_list, lp, slp)
            if on_tokens:
                on_tokens(len(rows))
            for r, t in zip(live_rows, token_list):
                feed[r] = t
            done, keep = self._split_finished(rows)
            yield from done
            kept = set(keep)
            for i, r in enumerate(live_rows):
                if i not in kept:
                    seqs[r] = None
                    batch.free(r)
            clock.lap("host")
            blas_governor.tick()  # the step's tokens are on the host: MLX's stream is idle
