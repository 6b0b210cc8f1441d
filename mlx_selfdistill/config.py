"""Run configuration: dataclasses, YAML files, presets and command-line overrides.

A run's config is resolved once (preset < YAML file < flags), written to the run
directory, and compared on resume so a rerun with different settings cannot silently
mix two experiments in one directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .decoding import EVAL
from .errors import UserError
from .gate import GateSettings

METHODS = ("ssd", "rft", "confidence")
PRESETS_DIR = Path(__file__).resolve().parent / "presets"


@dataclass
class SampleSettings:
    n: int = 4
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    max_tokens: int = 256
    seed: int = 0
    raw_prompt: bool = False
    # prompts/styles.py name the samples are drawn (and trained) with, e.g. evalplus; None: chat,
    # or raw with raw_prompt.
    prompt_style: Optional[str] = None
    # Memory caps of the sampler (also used for evaluation): rows decoded at once, and KV
    # tokens held across them. Lower them for a 7B model at long max_tokens on 16 GB.
    max_batch: int = 32
    max_kv_tokens: Optional[int] = None
    # Samples (and evaluations) whose bits do not depend on the rows decoded beside them, at
    # some cost in speed (sampling/exact.py).
    exact: bool = False

    def __post_init__(self):
        if self.prompt_style is not None:
            from .prompts import get_style

            get_style(self.prompt_style, raw=self.raw_prompt)  # unknown or contradicting: fails on reading

    def draw(self, seed_offset: int = 0):
        """These settings as the sampler's record (each round offsets the seed: new samples)."""
        from .sampling import DrawSettings, SamplingParams

        params = SamplingParams(temperature=self.temperature, top_k=int(self.top_k), top_p=self.top_p,
                                min_p=self.min_p, seed=self.seed + seed_offset)
        return DrawSettings(n=self.n, params=params, max_tokens=self.max_tokens, prompt_style=self.prompt_style,
                            raw_prompt=self.raw_prompt, max_batch=self.max_batch, max_kv_tokens=self.max_kv_tokens,
                            exact=self.exact)


@dataclass
class EvalSettings:
    problems: Optional[str] = "toy:heldout:100"
    # decoding.EVAL: the same defaults as the `eval` and `bench` commands
    n: int = EVAL.n
    temperature: float = EVAL.temperature
    top_k: int = EVAL.top_k
    top_p: float = EVAL.top_p
    min_p: float = EVAL.min_p
    max_tokens: int = EVAL.max_tokens
    seed: int = EVAL.seed
    ks: list = field(default_factory=lambda: [1])
    sweep: list = field(default_factory=list)  # temperatures to try after training
    # prompts/styles.py name (e.g. evalplus for leaderboard figures); None: as the sample stage prompts.
    prompt_style: Optional[str] = None

    def __post_init__(self):
        if self.prompt_style is not None:
            from .prompts import get_style

            get_style(self.prompt_style)  # an unknown name fails when the config is read, not after training


@dataclass
class RunConfig:
    name: str = "run"
    method: str = "rft"
    model: str = "tiny"
    teacher: Optional[str] = None
    problems: str = "toy:train:200"
    rounds: int = 1
    restart_from_base: bool = True  # ReST-EM: each round trains from the base model
    sample: SampleSettings = field(default_factory=SampleSettings)
    filter: dict = field(default_factory=dict)  # FilterConfig fields
    train: dict = field(default_factory=dict)  # TrainConfig fields
    eval: EvalSettings = field(default_factory=EvalSettings)
    # The validation gate (gate.py): keep the best round only if it beats the base on validation.
    gate: GateSettings = field(default_factory=GateSettings)
    evaluate_base: bool = True
    workers: Optional[int] = None
    timeout_s: float = 5.0
    description: str = ""
    # Run candidates even where the sandbox has no filesystem allow-list. Not part of the
    # experiment's identity: resuming with or without it is the same run.
    unsafe_no_isolation: bool = False

    def __post_init__(self):
        if isinstance(self.sample, dict):
            self.sample = _build(SampleSettings, self.sample, "sample")
        if isinstance(self.eval, dict):
            self.eval = _build(EvalSettings, self.eval, "eval")
        if isinstance(self.gate, dict):
            self.gate = _build(GateSettings, self.gate, "gate")
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}: use one of {', '.join(METHODS)}")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise UserError("rounds must be a positive integer")
        for where, settings in (("sample", self.sample), ("eval", self.eval)):
            if settings.n < 1 or settings.max_tokens < 1:
                raise UserError(f"{where}.n and {where}.max_tokens must be at least 1")
        self._check_train_and_filter()

    def _check_train_and_filter(self) -> None:
        """The train and filter sections as the stages will read them, so a bad value fails now,
        not after sampling and verification."""
        from .config_types import check_section
        from .filtering import FilterConfig
        from .training.config import TrainConfig

        self.train = check_section(TrainConfig, self.train or {}, "train")
        self.filter = check_section(FilterConfig, self.filter or {}, "filter")
        # --select's values become the train field's type (lr=1e-5,3e-5 -> floats), each checked
        self.gate.select = {key: [check_section(TrainConfig, {key: v}, "gate.select")[key] for v in values]
                            for key, values in self.gate.select.items()}
        for key, values in self.gate.select.items():
            for value in values:
                TrainConfig(**{"seed": self.sample.seed, **self.train, key: value})
        TrainConfig(**{"seed": self.sample.seed, **self.train})
        FilterConfig(**{**self.filter_defaults(), **self.filter})

    def filter_defaults(self) -> dict:
        """The filters a method implies, before the user's own filter settings."""
        return {"ssd": {"filters": ["none"]}, "rft": {"filters": ["tests"]},
                "confidence": {"filters": ["confidence"]}}[self.method]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """The settings that define the experiment (what a resumed run must match)."""
        out = self.to_dict()
        out.pop("unsafe_no_isolation")
        return out


def with_added_defaults(stored: dict) -> dict:
    """A config written by an older version, with the fields added since at their defaults:
    a run started before a field existed resumes as long as the new field keeps its default."""
    defaults = RunConfig().identity()
    out = {**{k: v for k, v in defaults.items() if k not in stored}, **stored}
    if "gate" not in stored:  # started before the validation gate: its rounds trained on every problem
        out["gate"] = {**defaults["gate"], "holdout": 0.0}
    for section in ("sample", "eval", "gate"):
        if isinstance(stored.get(section), dict):
            out[section] = {**{k: v for k, v in defaults[section].items() if k not in stored[section]},
                            **stored[section]}
    return out


def unknown_fields(cls, values: dict) -> tuple[list[str], list[str]]:
    """(unknown keys, valid field names) of a mapping meant for a dataclass, both sorted."""
    names = sorted(f.name for f in dataclasses.fields(cls))
    return sorted(set(values) - set(names)), names


def _build(cls, values: dict, where: str):
    from .config_types import coerce_fields

    if not isinstance(values, dict):
        raise UserError(f"config section '{where}' must be a mapping")
    unknown, names = unknown_fields(cls, values)
    if unknown:
        raise UserError(f"unknown key '{unknown[0]}' in config section '{where}': valid keys are {', '.join(names)}")
    return cls(**coerce_fields(cls, values, "" if where == "top level" else where))


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: malformed YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config file must be a mapping of keys to values")
    return data


def list_presets() -> dict[str, str]:
    """name -> one-line description."""
    out = {}
    for p in sorted(PRESETS_DIR.glob("*.yaml")):
        out[p.stem] = str(load_yaml(p).get("description", "")).strip()
    return out


def preset(name: str) -> dict:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        raise UserError(f"unknown preset {name!r}: run `mlx-selfdistill presets` to list them "
                        f"({', '.join(list_presets())})")
    return load_yaml(path)


def merge(base: dict, override: dict, *, keep_none: bool = False) -> dict:
    """override on top of base, section by section. A None in override is "not given" (a
    flag left out) unless keep_none: in a YAML file, `problems: null` unsets the field."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and (isinstance(out.get(key), dict) or not keep_none):
            # a section of flags all left out adds nothing (its None values are "not given")
            out[key] = merge(out.get(key) or {}, value, keep_none=keep_none)
        elif value is not None or keep_none:
            out[key] = value
    return out


NONE_WORDS = ("none", "null", "~")


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """'eval.problems=none' -> (['eval', 'problems'], None); values are YAML ('8', '0.5',
    '[1, 5]', 'true'), and none / null / ~ mean None (unset the field)."""
    import yaml

    key, sep, raw = text.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or not all(path):
        raise UserError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set eval.problems=none")
    if raw.strip().lower() in NONE_WORDS:
        return path, None
    try:
        return path, yaml.safe_load(raw)
    except yaml.YAMLError:
        raise UserError(f"--set {text!r}: the value is not valid YAML (quote strings that contain ': ')") from None


def assign(data: dict, path: list[str], value: Any) -> dict:
    """A copy of data with data[path[0]][path[1]]... = value; None is kept (it unsets a field)."""
    out = dict(data)
    if len(path) == 1:
        out[path[0]] = value
        return out
    inner = out.get(path[0])
    if inner is None:
        inner = {}
    elif not isinstance(inner, dict):
        raise UserError(f"--set {'.'.join(path)}: '{path[0]}' is a single value, not a section")
    out[path[0]] = assign(inner, path[1:], value)
    return out


def resolve_config(*, preset_name: str | None = None, config_file: str | None = None,
                   overrides: dict | None = None, assignments: list[str] = ()) -> RunConfig:
    """preset < YAML file < overrides < assignments.

    None values in `overrides` mean "not given" (a flag left out) and are ignored; a YAML
    null sets the field to None;
    `assignments` ('KEY=VALUE', the CLI's --set) are applied last and may set a field to None.
    """
    data: dict[str, Any] = {}
    if preset_name:
        data = merge(data, preset(preset_name), keep_none=True)
    if config_file:
        data = merge(data, load_yaml(config_file), keep_none=True)
    data = merge(data, overrides or {})
    for text in assignments:
        data = assign(data, *parse_assignment(text))
    return _build(RunConfig, data, "top level")
