"""BLAS threads that follow the free cores (blas_governor.py): the policy on recorded
/proc/stat data, the reading on this machine's real /proc with a real busy process, and
the claim that lets threads change mid-run: the same bits whatever the thread count."""

import json
import os
import subprocess
import sys
import time

import mlx.core as mx
import numpy as np
import pytest
from conftest import ROOT

from mlx_selfdistill import blas, blas_governor
from mlx_selfdistill.blas_governor import Governor, parse_proc_stat, threads_for
from mlx_selfdistill.models import load_model
from mlx_selfdistill.sampling import DrawSettings, SamplingParams, sample_problems
from mlx_selfdistill.toy.world import toy_problems
from mlx_selfdistill.training import TrainConfig, train
from mlx_selfdistill.prompts import chat_messages

LINUX = sys.platform.startswith("linux")
needs_openblas = pytest.mark.skipif(blas.state().status != "loaded",
                                    reason=f"OpenBLAS not loaded here ({blas.state().status})")
TICK = os.sysconf("SC_CLK_TCK") if LINUX else 100


def stat_text(busy_ticks: dict[int, int]) -> str:
    """/proc/stat in the kernel's format: busy ticks split over user/system/steal."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]  # the aggregate line is ignored
    for core, busy in busy_ticks.items():
        user, system, steal = busy // 2, busy // 4, busy - busy // 2 - busy // 4
        lines.append(f"cpu{core} {user} 0 {system} 99999 50 0 0 {steal} 0 0")
    lines.append("intr 1 2 3")
    return "\n".join(lines) + "\n"


def test_parse_counts_only_the_allowed_cores_and_not_idle_or_iowait():
    text = stat_text({0: 400, 1: 1000, 2: 7})
    assert parse_proc_stat(text, {0, 1}) == pytest.approx(1400 / TICK)
    assert parse_proc_stat(text, {2}) == pytest.approx(7 / TICK)


@pytest.mark.parametrize("others,cores,want", [(0.0, 2, 2), (0.2, 2, 2), (0.3, 2, 1), (1.0, 2, 1), (3.0, 2, 1),
                                               (0.1, 8, 8), (2.6, 8, 5), (0.0, 1, 1)])
def test_one_thread_per_core_the_others_leave_free(others, cores, want):
    assert threads_for(others, cores) == want


class Recorded:
    """A machine replayed: others' busy cores per window, this process's own CPU on top."""

    def __init__(self, others_per_window, own_cores=1.0, window=2.0):
        self.t, self.busy, self.own, self.window = 0.0, 0.0, 0.0, window
        self.others, self.own_cores, self.set = list(others_per_window), own_cores, []

    def advance(self):
        others = self.others.pop(0)
        self.t += self.window
        self.own += self.own_cores * self.window
        self.busy += (others + self.own_cores) * self.window

    def governor(self, threads):
        return Governor(set_threads=self.set.append, threads=threads, cores={0, 1}, window_s=self.window,
                        read_stat=lambda: stat_text({0: round(self.busy * TICK), 1: 0}),
                        own_cpu=lambda: self.own, clock=lambda: self.t)


def test_lowers_at_once_raises_after_two_quiet_windows_and_ignores_its_own_cpu():
    m = Recorded([0.0, 0.0, 1.0, 0.05, 0.05, 0.05], own_cores=1.9)
    g = m.governor(threads=1)
    assert g.tick() == 1 and m.set == []  # the first call only takes a mark
    m.advance()
    assert g.tick() == 1  # one quiet window: not yet (its own 1.9 cores are not "others")
    m.advance()
    assert g.tick() == 2 and m.set == [2]
    m.advance()
    assert g.tick() == 1 and m.set == [2, 1]  # another process took a core: down at once
    m.advance()
    assert g.tick() == 1
    assert g.tick() == 1  # within a window nothing is re-read
    m.advance()
    assert g.tick() == 2 and m.set == [2, 1, 2]
    assert g.changes == 3 and g.last_others == pytest.approx(0.05, abs=0.01)
    assert g.summary()["seconds_at"] == {"1": pytest.approx(8.0), "2": pytest.approx(2.0)}


@pytest.mark.skipif(not (LINUX and os.path.exists("/proc/stat")), reason="reads Linux's /proc/stat")
def test_real_proc_a_busy_process_beside_it_takes_the_threads_down():
    cores = set(os.sched_getaffinity(0))
    core = min(cores)
    busy = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    try:
        seen = []
        g = Governor(set_threads=seen.append, threads=len(cores) + 1, cores=cores, window_s=0.5)
        deadline = time.monotonic() + 5
        g.tick()
        while g.last_others is None and time.monotonic() < deadline:
            time.sleep(0.05)
            g.tick()
    finally:
        busy.kill()
        busy.wait()
    assert g.last_others is not None and g.last_others >= 0.6  # the spinning child is "others"
    assert seen and seen[-1] <= max(1, len(cores) - 1)


def flipping(monkeypatch):
    """Replace the governor's tick with one that flips 1 <-> 2 threads at every call."""
    calls = []

    def tick():
        calls.append(1)
        blas.set_threads(1 + len(calls) % 2)

    monkeypatch.setattr(blas_governor, "tick", tick)
    return calls


@needs_openblas
def test_threads_changing_every_decode_step_give_the_same_samples_bit_for_bit(monkeypatch):
    model, tok = load_model("tiny")
    problems = toy_problems("heldout", 4, seed=3)

    def run():
        return [(s.completion, s.mean_logprob) for s in
                sample_problems(model, tok, problems, DrawSettings(n=4, params=SamplingParams(top_k=20, seed=5),
                                                                   max_tokens=24, prompt_style="chat"), group=None)]

    blas.set_threads(1)
    fixed = run()
    calls = flipping(monkeypatch)
    flipped = run()
    blas.set_threads(1)
    assert len(calls) > 10
    assert flipped == fixed


@needs_openblas
def test_threads_changing_every_micro_batch_train_the_same_weights_bit_for_bit(tmp_path, monkeypatch):
    problems = toy_problems("train", 8, seed=1)
    examples = [{"messages": chat_messages(p, "```python\n" + p.canonical_solution + "\n```")} for p in problems]
    config = TrainConfig(iters=3, batch_tokens=256, grad_accum=2, lr=1e-3, seed=0)

    def weights(folder):
        model_and_tok = load_model("tiny")
        train(model_and_tok, examples, folder, config)
        return mx.load(str(folder / "adapters.safetensors"))

    blas.set_threads(1)
    fixed = weights(tmp_path / "fixed")
    calls = flipping(monkeypatch)
    flipped = weights(tmp_path / "flipped")
    blas.set_threads(1)
    assert len(calls) >= 6
    assert fixed.keys() == flipped.keys()
    for k in fixed:
        assert np.array_equal(np.array(fixed[k]), np.array(flipped[k])), k


@needs_openblas
@pytest.mark.parametrize("env,mode,fixed_by", [({}, "auto", None),
                                               ({"OPENBLAS_NUM_THREADS": "2"}, "fixed", "OPENBLAS_NUM_THREADS=2")])
def test_threads_follow_the_free_cores_unless_the_user_fixed_them(env, mode, fixed_by):
    clean = {k: v for k, v in os.environ.items() if k not in blas.THREAD_ENVS}
    probe = ("import json, mlx_selfdistill\nfrom mlx_selfdistill import blas_governor\n"
             "from mlx_selfdistill.platform_info import blas_threads\n"
             "print(json.dumps({**blas_threads(), 'now': blas_governor.threads_now()}))")
    out = subprocess.run([sys.executable, "-c", probe], env={**clean, **env}, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["mode"] == mode and report["fixed_by"] == fixed_by
    assert report["threads"] == report["now"] == (1 if mode == "auto" else 2)  # what the sampler's passes use
