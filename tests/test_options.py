"""CLI options are named like the settings they set (TrainConfig fields, Limits fields, function parameters);
former spellings stay accepted but hidden."""
import argparse
import inspect
import re
from dataclasses import fields

import pytest

from nerkit.cli import build_parser

# Options whose name differs from where their value goes, and why.
NAMED_OTHERWISE = {
    "--batch-size": "sequences per batch, converted to batch_tokens (--batch-tokens is the field's own option)",
    "--from": "the input format; 'from' is a Python keyword, so the parameter is fmt / src",
    "--to": "the output format (fmt / dst parameters), paired with --from",
}


def _verbs() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices


def _visible(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS and a.dest != "help"]


def test_every_visible_option_is_named_like_its_destination():
    wrong = []
    for verb, parser in _verbs().items():
        for a in _visible(parser):
            name = next(o for o in a.option_strings if o.startswith("--") or len(a.option_strings) == 1)
            if name in NAMED_OTHERWISE:
                continue
            if name.lstrip("-").replace("-", "_") != a.dest:
                wrong.append(f"{verb} {name} -> {a.dest}")
    assert not wrong


def test_serve_and_export_options_are_the_fields_and_parameters_they_set():
    from nerkit.export import export
    from nerkit.serve import Limits

    verbs = _verbs()
    serve_dests = {a.dest for a in _visible(verbs["serve"])} - {"host", "port", "backend"}
    assert serve_dests <= {f.name for f in fields(Limits)}
    export_dests = {a.dest for a in _visible(verbs["export"])}
    assert export_dests <= set(inspect.signature(export).parameters)


@pytest.mark.parametrize("verb,old,new", [
    ("export", ["--no-weights", "--per-tensor", "--full-range", "--no-quantize", "--no-fuse"],
     {"copy_weights": False, "per_channel": False, "reduce_range": False, "quantize": False, "fuse": False}),
    ("export", [], {"copy_weights": True, "per_channel": True, "reduce_range": True, "quantize": True, "fuse": True}),
    ("serve", ["--max-batch", "8", "--read-timeout", "5", "--shutdown-timeout", "1"],
     {"max_batch_texts": 8, "read_timeout_s": 5.0, "shutdown_timeout_s": 1.0}),
])
def test_former_spellings_still_work_and_are_hidden(verb, old, new, capsys):
    a = build_parser().parse_args([verb, "m", *old])
    assert {k: getattr(a, k) for k in new} == new
    with pytest.raises(SystemExit):
        build_parser().parse_args([verb, "--help"])
    shown = capsys.readouterr().out
    hidden = [o for o in old if o.startswith("--") and o not in ("--no-quantize", "--no-fuse")]  # those two are listed
    assert not [o for o in hidden if re.search(re.escape(o) + r"(?![\w-])", shown)]
