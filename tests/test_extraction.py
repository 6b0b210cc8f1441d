from mlx_selfdistill.extraction import extract_code


def test_prose_then_python_block():
    out = extract_code("I will sum them.\n\n```python\ndef f(xs):\n    return sum(xs)\n```\nThat's it.")
    assert out.code == "def f(xs):\n    return sum(xs)"
    assert out.reasoning == "I will sum them."
    assert out.fenced


def test_last_python_block_wins_and_other_languages_are_skipped():
    text = "draft:\n```python\nx = 1\n```\nfix:\n```py\nx = 2\n```\nrun it:\n```bash\npython x.py\n```\n"
    out = extract_code(text)
    assert out.code == "x = 2"
    assert out.reasoning.endswith("fix:")
    assert "x = 1" in out.reasoning


def test_unlabelled_fence_counts_as_python():
    assert extract_code("```\nprint(3)\n```").code == "print(3)"


def test_no_fence_means_the_whole_completion():
    out = extract_code("def f():\n    return 1\n")
    assert out.code == "def f():\n    return 1"
    assert out.reasoning == "" and not out.fenced


def test_block_cut_off_by_max_tokens_is_still_extracted():
    out = extract_code("thinking\n```python\ndef f():\n    return [1, 2")
    assert out.code == "def f():\n    return [1, 2"
    assert out.reasoning == "thinking"


def test_closing_fence_glued_to_the_last_line():
    assert extract_code("```python\ndef f():\n    return 2```").code == "def f():\n    return 2"


def test_only_non_python_blocks_fall_back_to_whole_text():
    text = "```bash\nls\n```"
    out = extract_code(text)
    assert out.code == text and not out.fenced
