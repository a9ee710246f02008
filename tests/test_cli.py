"""The command line's shared options: defined once, so every verb that takes them takes them the same way."""
import argparse
from pathlib import Path

import pytest

from nerkit.cli import build_parser
from nerkit.cli._util import SCHEMES, training_config
from nerkit.engines import BACKENDS


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _option(parser: argparse.ArgumentParser, flag: str):
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_backend_and_scheme_choices_are_the_same_everywhere():
    subs = _subparsers()
    with_backend = {v for v, p in subs.items() if _option(p, "--backend")}
    with_scheme = {v for v, p in subs.items() if _option(p, "--scheme")}
    assert with_backend == {"evaluate", "predict", "serve", "tag-corpus", "preannotate", "suggest"}
    assert with_scheme == {"stats", "train", "distill", "evaluate", "curve"}
    assert all(tuple(_option(subs[v], "--backend").choices) == BACKENDS for v in with_backend)
    assert all(tuple(_option(subs[v], "--scheme").choices) == SCHEMES for v in with_scheme)


def test_curve_takes_every_training_option_of_train():
    args = ["--context", "0", "--bf16", "off", "--class-weights", "sqrt", "--batch-size", "4", "--lr", "1e-4",
            "--epochs", "3", "--max-steps", "7", "--seed", "3", "--early-stopping", "1", "--model", "m"]
    p = build_parser()
    train = training_config(p.parse_args(["train", "--train", "t", "--output", "o", *args]))
    curve = training_config(p.parse_args(["curve", "--train", "t", "--dev", "d", "--output", "o", *args]))
    assert train == curve
    assert (curve.context, curve.bf16, curve.class_weights, curve.batch_tokens) == (0, "off", "sqrt", 512)


def test_an_unknown_backend_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["predict", "m", "--backend", "gpu"])
    assert exc.value.code == 2 and "invalid choice: 'gpu'" in capsys.readouterr().err


def test_the_parser_loads_without_optional_extras_or_torch():
    """A missing extra (fastapi, onnxruntime, pyyaml, ...) fails only the verb that needs it; help needs no torch."""
    import subprocess
    import sys

    blocked = ("fastapi", "uvicorn", "starlette", "pydantic", "onnxruntime", "onnx", "yaml", "matplotlib", "sklearn",
               "torch", "transformers")
    code = (f"import sys; sys.modules.update(dict.fromkeys({blocked!r}))\n"
            "from nerkit.cli import build_parser, main\n"
            "build_parser().parse_args(['serve', 'm'])\n"
            "sys.exit(main(['stats', sys.argv[1]]))\n")
    data = Path(__file__).parent / "fixtures" / "annotate" / "iob2.conll"
    r = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "sentences" in r.stdout


def test_the_command_line_shows_a_data_warning_as_one_line(tmp_path):
    import json
    import subprocess
    import sys

    path = tmp_path / "gold.jsonl"  # a span ending inside a word: read, split there, and said
    path.write_text(json.dumps({"text": "John Smith-induced rash", "entities": [
        {"start": 0, "end": 10, "label": "PER"}]}) + "\n")
    run = subprocess.run([sys.executable, "-m", "nerkit.cli", "stats", str(path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0
    said = [x for x in run.stderr.splitlines() if x.strip()]
    assert said and all(x.startswith("nerkit: warning: ") for x in said), run.stderr
    assert f"{path}:1" in said[0] and "DataWarning" not in run.stderr and "nerkit/data.py" not in run.stderr
