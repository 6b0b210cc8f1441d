"""Training data: completion-only masks, EOS targets, batching and config files (no training)."""

import json

import mlx.core as mx
import numpy as np
import pytest

from mlx_selfdistill import prompts
from mlx_selfdistill.errors import DataError, UserError
from mlx_selfdistill.models import load_model
from mlx_selfdistill.toy.world import toy_problems
from mlx_selfdistill.training import TrainConfig, tokenize_example, tokenize_examples
from mlx_selfdistill.training.batching import BatchPlan, block_causal_mask, chunk_bounds, make_batch, shard_rows
from mlx_selfdistill.training.trainer import forward, loss_sum


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def _examples(n, split="train"):
    return [{"messages": prompts.chat_messages(p, prompts.assistant_message(p.canonical_solution))}
            for p in toy_problems(split, n)]


def test_mask_covers_exactly_the_reply_and_its_end_of_turn(tiny):
    _, tok = tiny
    msgs = _examples(1)[0]["messages"]
    ex = tokenize_example(tok, msgs)
    prompt_text = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=False)
    assert tok.decode(list(ex.tokens[:ex.prompt_len])) == prompt_text
    completion = tok.decode(list(ex.tokens[ex.prompt_len:]))
    assert completion.startswith(msgs[1]["content"])
    assert tok.eos_token_id in ex.tokens[ex.prompt_len:]  # <|im_end|> is a target
    assert ex.tokens[:ex.prompt_len].count(tok.eos_token_id) == 1  # only the user turn's end
    # The batch weights select exactly those tokens as targets.
    b = make_batch([ex], [[0]], pad_multiple=8)
    assert b.targets[0][b.weights[0] == 1].tolist() == list(ex.tokens[ex.prompt_len:])
    assert b.inputs[0][:len(ex) - 1].tolist() == list(ex.tokens[:-1])


def _with_template(tok, template):
    tok._tokenizer.chat_template = template
    return tok


def test_template_that_breaks_the_prefix_fails_loudly():
    _, tok = load_model("tiny")
    # The generation prompt differs from how the template renders the assistant's turn.
    _with_template(tok, "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                        "{% endfor %}{% if add_generation_prompt %}<|im_start|>model\n{% endif %}")
    with pytest.raises(DataError, match="not render the prompt as a prefix"):
        tokenize_example(tok, _examples(1)[0]["messages"], "train.jsonl:1")


def test_end_of_sequence_is_added_when_the_template_omits_it():
    _, tok = load_model("tiny")
    _with_template(tok, "{% for m in messages %}{{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}"
                        "{% if add_generation_prompt %}assistant:\n{% endif %}")
    ex = tokenize_example(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x = 1"}])
    assert ex.tokens[-1] == tok.eos_token_id
    assert tok.eos_token_id not in ex.tokens[:-1]


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ('{"text": "hello"}', "missing or empty 'messages'"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "last message must be the assistant"),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]}', "needs string 'role' and 'content'"),
    ('{"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}', "unknown role"),
])
def test_malformed_training_file_gives_one_line_error(tmp_path, tiny, line, message):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(_examples(1)[0]) + "\n" + line + "\n")
    with pytest.raises(UserError, match=message) as err:
        tokenize_examples(tiny[1], path)
    assert f"{path}:2" in str(err.value) and "\n" not in str(err.value)


def test_missing_and_empty_files_are_user_errors(tmp_path, tiny):
    with pytest.raises(UserError, match="no such file"):
        tokenize_examples(tiny[1], tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UserError, match="empty"):
        tokenize_examples(tiny[1], tmp_path / "empty.jsonl")


def _padding(plan, lengths, batches, budget):
    padded = real = 0
    for b in batches:
        for chunk in plan.chunks(b):
            width = 8 * -(-max(lengths[r[0]] - 1 for r in chunk) // 8)
            assert width * len(chunk) <= budget
            padded += width * len(chunk)
            real += sum(lengths[r[0]] - 1 for r in chunk)
    return 1 - real / padded


def test_random_batches_cover_every_example_once_in_even_budgets_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 300, size=500).tolist()
    plan = BatchPlan(lengths, batch_tokens=2048, seed=3, pad_multiple=8)
    total = sum(n - 1 for n in lengths)
    assert plan.batches_per_epoch == -(-total // 2048)
    for e in range(2):
        batches = plan.epoch(e)
        assert sorted(i for b in batches for row in b for i in row) == list(range(500))
        sizes = [sum(lengths[r[0]] - 1 for r in b) for b in batches]
        assert max(sizes) - min(sizes) < 2 * 300  # no runt batch: even cuts, give or take an example
        one_matrix = 1 - sum(sizes) / sum(8 * -(-max(lengths[r[0]] - 1 for r in b) // 8) * len(b) for b in batches)
        assert _padding(plan, lengths, batches, 2048) < min(0.1, one_matrix / 4)  # length-sorted chunks
    assert plan.epoch(0) != plan.epoch(1)  # reshuffled each epoch
    assert BatchPlan(lengths, batch_tokens=2048, seed=3).epoch(1) == plan.epoch(1)  # and reproducibly


def test_random_batches_are_samples_of_the_data_not_of_one_length():
    # Sorting the whole epoch makes each step see one length of example (a biased step
    # when length goes with content); the default keeps every batch a random sample.
    rng = np.random.default_rng(1)
    lengths = rng.integers(20, 300, size=600).tolist()

    def spread_of_batch_means(grouping):
        plan = BatchPlan(lengths, batch_tokens=2048, seed=0, grouping=grouping)
        return np.std([np.mean([lengths[r[0]] for r in b]) for b in plan.epoch(0)])

    assert spread_of_batch_means("batch") < 40 < spread_of_batch_means("epoch")
    epoch_sorted = BatchPlan(lengths, batch_tokens=2048, seed=0, grouping="epoch")
    assert _padding(epoch_sorted, lengths, epoch_sorted.epoch(0), 2048) < 0.05


def test_chunks_cut_where_padding_saved_beats_the_cost_of_a_chunk():
    assert chunk_bounds([8, 8, 8, 8, 64, 64], budget=4096, overhead=64) == [(0, 4), (4, 6)]
    assert chunk_bounds([8, 8, 8, 8, 16, 16], budget=4096, overhead=64) == [(0, 6)]  # not worth a chunk
    within_budget = chunk_bounds([64] * 5, budget=128, overhead=1)
    assert len(within_budget) == 3 and all(b - a <= 2 for a, b in within_budget)  # fewest chunks that fit
    assert [a for a, _ in within_budget[1:]] == [b for _, b in within_budget[:-1]]  # consecutive, covering
    assert chunk_bounds([512], budget=128) == [(0, 1)]  # a lone row may exceed the budget
    with pytest.raises(ValueError, match="grouping"):
        BatchPlan([10, 20], batch_tokens=64, seed=0, grouping="sorted")
    with pytest.raises(UserError, match="length_grouping 'sorted'"):
        TrainConfig(length_grouping="sorted")


def test_packed_rows_respect_the_row_length_and_keep_every_example():
    lengths = [10, 50, 33, 70, 12, 64, 5, 40] * 5
    plan = BatchPlan(lengths, batch_tokens=256, seed=0, pad_multiple=8, pack=True, pack_len=128)
    rows = [row for b in plan.epoch(0) for row in b]
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] - 1 for i in row) <= plan.pack_len for row in rows)
    assert len(rows) < len(lengths) / 2  # actually packed
    assert shard_rows([[1], [2], [3]], 1, 2) == [[2]]


def test_block_mask_keeps_attention_inside_each_sequence():
    seg = np.array([[0, 0, 1, 1, 1, -1]])
    m = block_causal_mask(seg)[0, 0]
    assert m[1, 0] and not m[2, 1] and m[4, 2] and not m[0, 1] and m[5, 5] and not m[5, 4]


def test_packed_loss_equals_unpacked_loss_on_the_model(tiny):
    model, tok = tiny
    examples = tokenize_examples(tok, _examples(6))
    plain = make_batch(examples, [[i] for i in range(6)], pad_multiple=8)
    packed = make_batch(examples, [[0, 1, 2], [3, 4, 5]], pad_multiple=8, packed=True)
    a, na = loss_sum(model, mx.array(plain.inputs), mx.array(plain.targets), mx.array(plain.weights))
    b, nb = loss_sum(model, mx.array(packed.inputs), mx.array(packed.targets), mx.array(packed.weights),
                     mx.array(packed.segments))
    assert na.item() == nb.item() == sum(ex.num_targets for ex in examples)
    assert abs(a.item() - b.item()) < 1e-3 * a.item()
    # Without the mask the second example would see the first: the loss would change.
    leaky = forward(model, mx.array(packed.inputs))
    sealed = forward(model, mx.array(packed.inputs), mx.array(packed.segments))
    n0 = len(examples[0]) - 1
    assert mx.allclose(leaky[:, :n0], sealed[:, :n0], atol=1e-4).item()
    assert not mx.allclose(leaky[:, n0:n0 + 5], sealed[:, n0:n0 + 5], atol=1e-3).item()


def test_config_yaml_accepts_mlx_lm_spellings_and_rejects_unknown_keys(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("learning_rate: 3.0e-4\nlora_parameters: {rank: 4, scale: 10.0, dropout: 0.1}\n"
                    "max_seq_length: 512\niters: 7\n")
    cfg = TrainConfig.from_yaml(good)
    assert (cfg.lr, cfg.rank, cfg.scale, cfg.dropout, cfg.max_seq_len, cfg.iters) == (3e-4, 4, 10.0, 0.1, 512, 7)
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 1e-4\nranks: 4\n")
    with pytest.raises(UserError, match="unknown option.*ranks") as err:
        TrainConfig.from_yaml(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="fine_tune_type"):
        TrainConfig(fine_tune_type="prefix")
    with pytest.raises(UserError, match="iters or epochs"):
        TrainConfig(iters=3, epochs=1)
    assert TrainConfig(rank=16, alpha=32).scale == 2.0
    with pytest.raises(UserError, match="unknown option.*rnk"):  # what the run loop's TrainConfig(**d) meets
        TrainConfig(rnk=3)
