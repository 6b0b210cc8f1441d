"""The `mlx-selfdistill` command. Thin: each command lives in its own module under
`mlx_selfdistill.commands`, parses options, calls the library and renders the result.

Commands load lazily so `--help` is instant and a command's heavy imports (mlx, the
model) are paid only when that command runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from .errors import UserError

# name -> "module:attribute" of a click.Command
COMMANDS = {
    "doctor": "mlx_selfdistill.commands.doctor:doctor",
    "problems": "mlx_selfdistill.commands.problems:problems",
    "sample": "mlx_selfdistill.commands.sample:sample",
    "verify": "mlx_selfdistill.commands.verify:verify",
    "filter": "mlx_selfdistill.commands.filter:filter_cmd",
    "train": "mlx_selfdistill.commands.train:train",
    "fuse": "mlx_selfdistill.commands.fuse:fuse",
    "export": "mlx_selfdistill.commands.export:export",
    "eval": "mlx_selfdistill.commands.eval:eval_cmd",
    "run": "mlx_selfdistill.commands.run:run",
    "presets": "mlx_selfdistill.commands.run:presets",
    "demo": "mlx_selfdistill.commands.demo:demo",
    "bench": "mlx_selfdistill.commands.bench:bench",
}

HELP = {
    "doctor": "Check the platform: MLX backend, BLAS, memory, energy meters, default model.",
    "problems": "List the problems of a source (toy, humaneval, mbpp+, a path, ...).",
    "sample": "Sample N candidate solutions per problem from a model.",
    "verify": "Run candidates' tests in the sandbox and write verdicts.",
    "filter": "Filter samples into a training set (none/tests/confidence/length).",
    "train": "LoRA / DoRA / full fine-tuning on chat examples.",
    "fuse": "Merge a LoRA adapter into a standalone model folder.",
    "export": "Write a model (+ adapter, fused) as GGUF for llama.cpp / Ollama / LM Studio.",
    "eval": "pass@k of a model (and adapter) on a problem source.",
    "run": "Run self-distillation rounds: sample, verify, filter, train, evaluate.",
    "presets": "List the named presets (the paper's published settings).",
    "demo": "Offline demo on the embedded tiny model and the toy world.",
    "bench": "Speed, energy and pass@1 per watt, base vs distilled.",
}


def _available(name: str) -> bool:
    module = COMMANDS[name].split(":")[0]
    return importlib.util.find_spec(module) is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [n for n in COMMANDS if _available(n)]

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _available(name):
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(n, HELP.get(n, "")) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlx-selfdistill")
@click.option("--keep-dtype", is_flag=True,
              help="Run half-precision models in their stored dtype on the CPU backend (default: float32).")
def cli(keep_dtype):
    """Make a code model better on your own machine: sample -> verify -> filter -> train -> evaluate -> bench."""
    if keep_dtype:
        from .models.precision import KEEP_DTYPE_ENV

        os.environ[KEEP_DTYPE_ENV] = "1"  # read where models load (models.precision.keep_dtype)


def _one_line_warnings() -> None:
    """A dataset record skipped while loading is one line on stderr, not Python's two-line warning."""
    import warnings

    from .problems.skipped import SkippedRecord

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SkippedRecord):
            click.echo(f"warning: {message}", err=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv=None):
    _one_line_warnings()
    try:
        cli.main(args=argv, standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
