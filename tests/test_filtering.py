import pytest

from mlx_selfdistill.errors import UserError
from mlx_selfdistill.filtering import FilterConfig, filter_samples, to_train_examples
from mlx_selfdistill.records import Problem, Sample, Verdict


def _s(pid, i, code="return 1", tokens=10, finish="stop", lp=-1.0, completion=None):
    completion = f"```python\n{code}\n```" if completion is None else completion
    return Sample(problem_id=pid, sample_index=i, completion=completion, code=code, num_tokens=tokens,
                  finish_reason=finish, mean_logprob=lp)


def test_health_drops_unfinished_runaway_and_empty():
    samples = [_s("a", 0), _s("a", 1, finish="length"), _s("a", 2, finish="runaway"), _s("a", 3, code="  ")]
    kept, stats = filter_samples(samples, config=FilterConfig(filters=["none"], drop_shortest=0))
    assert [s.sample_index for s in kept] == [0]
    assert stats["after_health"] == 1


def test_ssd_drops_empty_and_shortest_fraction_and_keeps_failures():
    samples = [_s("p", i, code=f"x{i}", tokens=t) for i, t in enumerate([5, 50, 7, 30, 40, 3, 60, 20, 10, 25])]
    kept, stats = filter_samples(samples, config=FilterConfig(filters=["none"], drop_shortest=0.2))
    assert sorted(s.num_tokens for s in kept) == [7, 10, 20, 25, 30, 40, 50, 60]
    assert stats["kept"] == 8


def test_tests_filter_keeps_passes_dedups_and_caps():
    samples = [_s("a", 0, "return 1"), _s("a", 1, "return 1 "), _s("a", 2, "return 2"), _s("a", 3, "return 3"),
               _s("b", 0, "return 9")]
    verdicts = [Verdict("a", i, "pass") for i in range(4)] + [Verdict("b", 0, "fail")]
    kept, _ = filter_samples(samples, verdicts, FilterConfig(filters=["tests"]))
    assert [(s.problem_id, s.sample_index) for s in kept] == [("a", 0), ("a", 2), ("a", 3)]
    kept, _ = filter_samples(samples, verdicts, FilterConfig(filters=["tests"], max_per_problem=2))
    assert len(kept) == 2
    kept, _ = filter_samples(samples, verdicts, FilterConfig(filters=["tests"], dedup=False))
    assert len(kept) == 4


def test_filters_compose_in_order():
    samples = [_s("a", i, f"c{i}", lp=-float(i)) for i in range(6)]
    verdicts = [Verdict("a", i, "pass" if i % 2 == 0 else "fail") for i in range(6)]
    kept, stats = filter_samples(samples, verdicts, FilterConfig(filters=["tests", "confidence"], keep_fraction=0.5))
    assert [s.sample_index for s in kept] == [0, 2]
    assert stats["after_tests"] == 3 and stats["after_confidence"] == 2


def test_length_filter():
    samples = [_s("a", i, f"c{i}", tokens=t) for i, t in enumerate([1, 5, 9, 20])]
    kept, _ = filter_samples(samples, config=FilterConfig(filters=["length"], min_tokens=4, max_tokens=10))
    assert [s.num_tokens for s in kept] == [5, 9]


def test_bad_config_and_missing_verdicts_are_user_errors():
    with pytest.raises(UserError, match="unknown filter"):
        FilterConfig(filters=["magic"])
    with pytest.raises(UserError, match="needs verdicts"):
        filter_samples([_s("a", 0)], None, FilterConfig(filters=["tests"]))


def test_train_examples_are_chat_messages_with_the_raw_completion():
    problem = Problem(id="a", prompt="Write f.", tests=[{"type": "call", "input": [1], "output": 1}], entry_point="f")
    raw = "Some thought.\n```python\ndef f(x):\n    return x\n```"
    (example,) = to_train_examples([_s("a", 0, completion=raw)], {"a": problem})
    roles = [m["role"] for m in example["messages"]]
    assert roles == ["user", "assistant"] and example["messages"][1]["content"] == raw
    assert "Write f." in example["messages"][0]["content"]
    with pytest.raises(UserError, match="unknown problem"):
        to_train_examples([_s("zzz", 0)], {"a": problem})


@pytest.mark.parametrize("filters", [["tests"], ["none"], ["confidence"]])
def test_kept_samples_do_not_depend_on_input_order(filters):
    """A resumed run appends samples in another order: the training set must not change."""
    import random

    samples = [_s(p, i, code=f"return {i % 2}", tokens=10 + i % 3, lp=-1.0 - (i % 2))
               for p in ("b", "a", "c") for i in range(4)]
    verdicts = [Verdict(s.problem_id, s.sample_index, "pass") for s in samples]
    config = FilterConfig(filters=filters, drop_shortest=0.25, keep_fraction=0.5)
    want, _ = filter_samples(samples, verdicts, config)
    assert [s.key for s in want] == sorted(s.key for s in want)  # key order, not input order
    for seed in range(3):
        shuffled = samples[:]
        random.Random(seed).shuffle(shuffled)
        got, _ = filter_samples(shuffled, verdicts[::-1], config)
        assert [s.key for s in got] == [s.key for s in want]


def test_an_evalplus_sample_trains_after_the_very_prompt_it_was_sampled_from():
    """The pre-filled reply is part of the prompt at sampling time: the training example must
    render to that prompt, then the completion, then the closing fence the stop string cut."""
    from mlx_selfdistill.models import load_model
    from mlx_selfdistill.prompts import get_style

    _, tokenizer = load_model("tiny")
    problem = Problem(id="a", prompt="Write f.\nYour code should pass this test:\nassert f(1) == 1",
                      tests=[{"type": "call", "input": [1], "output": 1}], entry_point="f")
    sample = _s("a", 0, completion="def f(x):\n    return x")
    sample.prompt_style = "evalplus"
    (example,) = to_train_examples([sample], {"a": problem})
    text = tokenizer.apply_chat_template(example["messages"], tokenize=False)
    prompt = get_style("evalplus").render(tokenizer, problem)
    assert text.startswith(prompt + "def f(x):\n    return x\n```")
    chat = to_train_examples([_s("a", 0, completion="x")], {"a": problem})[0]  # the default style is unchanged
    assert chat["messages"][1]["content"] == "x"
