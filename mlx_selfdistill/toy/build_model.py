"""Build the embedded tiny coder model from scratch on CPU.

    python -m mlx_selfdistill.toy.build_model [--out DIR] [--seed 0] [--steps N]

Trains a small llama (float32) on a corpus of toy-world *train* problems in which a
fraction of the solutions are deliberately wrong, like scraped code. The result is an
ordinary mlx_lm model folder (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json with a chat template) that `mlx_lm.load` reads offline.
Reproducible from its seed: corpus, tokenizer, initialisation and batch order are all
drawn from it.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from ..prompts import assistant_message, chat_messages
from .world import toy_problems, wrong_solution

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "assets" / "tiny-coder"

BOS, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

MODEL_CONFIG = {
    "model_type": "llama",
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "intermediate_size": 352,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-5,
    "vocab_size": 512,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
}


def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The chat template, in Python, for building the corpus before a tokenizer exists."""
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")


def build_corpus(seed: int, n_problems: int, noise: float) -> list[tuple[str, str]]:
    """(prompt_text, completion_text) pairs; `noise` of the completions are wrong."""
    rng = random.Random(f"corpus:{seed}")
    pairs = []
    for problem in toy_problems("train", n_problems, seed=seed):
        code = problem.canonical_solution
        if rng.random() < noise:
            code = wrong_solution(problem, rng) or code
        prompt = render(chat_messages(problem), add_generation_prompt=True)
        pairs.append((prompt, assistant_message(code) + IM_END))
    rng.shuffle(pairs)
    return pairs


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # Single digits keep numbers compositional, so unseen constants still tokenize well.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def save_tokenizer(tok, out: Path) -> None:
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": BOS,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": MODEL_CONFIG["max_position_embeddings"],
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": IM_END, "pad_token": BOS}, indent=2) + "\n"
    )


def make_model(seed: int):
    from mlx_lm.models.llama import Model, ModelArgs

    mx.random.seed(seed)
    args = ModelArgs.from_dict(MODEL_CONFIG)
    model = Model(args)
    mx.eval(model.parameters())
    return model


def save_model(model, out: Path, tok_vocab_size: int, eos_id: int) -> None:
    config = dict(MODEL_CONFIG, vocab_size=tok_vocab_size, eos_token_id=eos_id, bos_token_id=None)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_id}, indent=2) + "\n")


def encode_corpus(tok, pairs):
    """Token ids and prompt lengths; the prompt must tokenize as a prefix of the whole."""
    examples = []
    for prompt, completion in pairs:
        p = tok.encode(prompt).ids
        full = tok.encode(prompt + completion).ids
        if full[: len(p)] != p:  # BPE merged across the boundary: keep them separate
            full = p + tok.encode(completion).ids
        examples.append((full, len(p)))
    return examples


def batches(examples, batch_size: int, rng: random.Random):
    """Length-bucketed batches in random order: little padding, no length bias in order."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i][0]), rng.random()))
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    for g in groups:
        width = max(len(examples[i][0]) for i in g)
        width = (width + 7) // 8 * 8  # few distinct shapes, so compiled steps are reused
        ids = [examples[i][0] + [0] * (width - len(examples[i][0])) for i in g]
        lengths = [len(examples[i][0]) for i in g]
        starts = [examples[i][1] for i in g]
        yield mx.array(ids), mx.array(starts), mx.array(lengths)


def completion_loss(model, ids, starts, lengths):
    logits = model(ids[:, :-1])
    targets = ids[:, 1:]
    pos = mx.arange(targets.shape[1])[None, :]
    # Target position t predicts token t+1: completion tokens sit at t+1 >= start.
    mask = (pos + 1 >= starts[:, None]) & (pos + 1 < lengths[:, None])
    ce = nn.losses.cross_entropy(logits, targets) * mask
    return ce.sum() / mask.sum()


def train(model, examples, *, steps: int, batch_size: int, lr: float, seed: int, log_every: int = 100):
    rng = random.Random(f"order:{seed}")
    schedule = optim.join_schedules(
        [optim.linear_schedule(lr * 0.01, lr, 100), optim.cosine_decay(lr, max(1, steps - 100), lr * 0.05)],
        [100],
    )
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=0.01)
    loss_and_grad = nn.value_and_grad(model, completion_loss)
    state = [model.state, optimizer.state]

    def step(ids, starts, lengths):
        loss, grads = loss_and_grad(model, ids, starts, lengths)
        grads, _ = optim.clip_grad_norm(grads, 1.0)
        optimizer.update(model, grads)
        return loss

    step = mx.compile(step, inputs=state, outputs=state)
    done, t0, running = 0, time.time(), None
    while done < steps:
        for ids, starts, lengths in batches(examples, batch_size, rng):
            loss = step(ids, starts, lengths)
            mx.eval(state, loss)
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            done += 1
            if done % log_every == 0 or done == steps:
                print(f"step {done}/{steps} loss {running:.3f} {time.time() - t0:.0f}s", flush=True)
            if done >= steps:
                break
    return running


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--problems", type=int, default=4000, help="train-split problems in the corpus")
    ap.add_argument("--noise", type=float, default=0.7, help="fraction of deliberately wrong solutions")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--no-eval", action="store_true", help="skip measuring pass@1 after training")
    args = ap.parse_args(argv)

    card = build(args.out, seed=args.seed, problems=args.problems, noise=args.noise, steps=args.steps,
                 batch_size=args.batch_size, lr=args.lr, evaluate=not args.no_eval)
    print(json.dumps(card, indent=2))


def build(out: Path, *, seed: int = 0, problems: int = 4000, noise: float = 0.7, steps: int = 800,
          batch_size: int = 32, lr: float = 2e-3, evaluate: bool = True, log_every: int = 100) -> dict:
    """Corpus -> tokenizer -> model trained from scratch -> saved folder; returns the model card."""
    t0 = time.time()
    pairs = build_corpus(seed, problems, noise)
    tok = train_tokenizer([p + c for p, c in pairs], MODEL_CONFIG["vocab_size"])
    examples = encode_corpus(tok, pairs)
    mean_len = sum(len(e[0]) for e in examples) / len(examples)
    print(f"corpus: {len(examples)} examples, mean {mean_len:.0f} tokens, vocab {tok.get_vocab_size()}")

    model = make_model(seed)
    final_loss = train(model, examples, steps=steps, batch_size=batch_size, lr=lr, seed=seed, log_every=log_every)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tok, out)
    save_model(model, out, tok.get_vocab_size(), tok.token_to_id(IM_END))
    card = {
        "built_by": "python -m mlx_selfdistill.toy.build_model",
        "seed": seed,
        "corpus_problems": problems,
        "noise": noise,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "final_train_loss": round(final_loss, 4),
        "train_seconds": round(time.time() - t0, 1),
        "parameters": sum(v.size for _, v in tree_flatten(model.parameters())),
    }
    if evaluate:
        from .model_card import measure_pass_at_1

        card["heldout"] = measure_pass_at_1(out)
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


if __name__ == "__main__":
    main()
