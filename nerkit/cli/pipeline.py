"""`nerkit stats | train | distill | evaluate | predict | demo`: the training and inference pipeline on the command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nerkit.cli._util import (add_annotator, add_backend, add_json, add_scheme, add_source_options,
                              add_training_options, non_negative, positive, source_options, training_config)


def stats(a: argparse.Namespace) -> None:
    """Print corpus statistics of each file."""
    from nerkit import data, formats

    with source_options(a, [(p, None) for p in a.data]):
        for path in a.data:
            print(f"== {path}")
            print(data.format_stats(data.stats(formats.load(path, scheme=a.scheme, annotators=a.annotator))))


def train(a: argparse.Namespace) -> None:
    """Fine-tune a model; print its metrics."""
    with source_options(a, [(a.train, None), (a.dev, None), (a.test, None)]):
        _train(a)


def _train(a: argparse.Namespace) -> None:
    from nerkit.modeldir import check_output
    from nerkit.train import fit, load_datasets

    cfg, budget = training_config(a), None
    check_output(a.output)  # before reading the data: a bad --output fails in a second
    # Read and checked once: the search decision, its budget, every search point and the training share it.
    data = load_datasets(a.train, a.dev, a.test, a.scheme, a.annotator)
    if a.search is None:  # neither --search nor --no-search: small data with a dev set searches
        from nerkit.search import decide

        choice = decide(data, None, cfg)
        if choice.reason and cfg.progress:
            print(choice.reason, file=sys.stderr, flush=True)
        a.search, budget = choice.search, choice.budget
    if a.search:
        from nerkit.search import search

        found = search(data, None, None, a.output, cfg, annotators=a.annotator, budget=budget)
        if found.result.main:
            print(found.table(), file=sys.stderr)
            _print_metrics(found.result.metrics, a)
        return
    result = fit(data, output=a.output, config=cfg, annotators=a.annotator)
    if result.main:  # under torchrun, the other processes print nothing
        _print_metrics(result.metrics, a)


def _print_metrics(metrics: dict, a: argparse.Namespace) -> None:
    """A trained model's dev and test scores: the tables `nerkit evaluate` prints, or (``--json``) the JSON."""
    if a.json:
        print(json.dumps(metrics, indent=2))
        return
    from nerkit.evaluation import format_report

    files = {"dev": a.dev, "test": a.test}
    parts = [f"{split}{f' ({files[split]})' if files[split] else ''}:\n{format_report(metrics[split])}"
             for split in ("dev", "test") if split in metrics]
    print("\n\n".join(parts) if parts else "no --dev or --test: nothing scored")


def distill(a: argparse.Namespace) -> None:
    """Distil a trained model into a smaller one; print its metrics."""
    from nerkit.distill import DistillConfig, distill as run

    cfg = DistillConfig(layers=a.layers, train=a.train, unlabelled=a.unlabelled or (), dev=a.dev, test=a.test,
                        epochs=a.epochs, max_steps=a.max_steps, lr=a.lr, batch_tokens=a.batch_tokens,
                        early_stopping=a.early_stopping, temperature=a.temperature, alpha=a.alpha,
                        hidden=a.hidden_weight, seed=a.seed,
                        bf16=a.bf16, scheme=a.scheme, text_column=a.text_column)
    result = run(a.teacher, a.output, cfg)
    _print_metrics(result.metrics, a)


def evaluate(a: argparse.Namespace) -> None:
    """Print the entity-level evaluation of a model on labelled data."""
    from nerkit import formats
    from nerkit.evaluation import evaluate, format_report
    from nerkit.errors import NerkitError
    from nerkit.files import check_not_input, check_writable, same_file
    from nerkit.predict import Tagger

    inputs = [a.data, *([a.seen] if a.seen else [])]
    for out in (a.html, a.errors):  # refused before any work
        if out:
            check_writable(out)
            check_not_input(out, inputs, "--html" if out == a.html else "--errors")
    if a.html and a.errors and same_file(a.html, a.errors):
        raise NerkitError(f"--html and --errors are the same file ({a.html}); give two")
    with source_options(a, [(p, None) for p in inputs]):
        docs = formats.load(a.data, scheme=a.scheme, annotators=a.annotator)
        train = formats.load(a.seen, scheme=a.scheme) if a.seen else None
    tagger = Tagger.load(a.model_dir, backend=a.backend)
    compared: list | None = [] if a.html or a.errors else None  # each sentence kept for the reports only
    report = evaluate(tagger, docs, name=a.data, compared=compared, train=train)
    print(json.dumps(report, indent=2) if a.json else format_report(report))
    if a.html or a.errors:
        from nerkit.report import write_reports

        write_reports(report, compared, a.html, a.errors, f"{Path(a.model_dir).name} on {Path(a.data).name}")
        for out in (a.html, a.errors):
            if out:
                print(f"wrote {out}", file=sys.stderr)


def predict(a: argparse.Namespace) -> None:
    """Tag texts (arguments, --input, or stdin); write one JSON line per text (--output: atomically). The other
    fields of --input's JSONL records are carried through; "entities" holds the predictions."""
    from nerkit.errors import DataError, NerkitError
    from nerkit.files import atomic_write_text, check_not_input, check_text, check_writable
    from nerkit.predict import Tagger, read_records

    records = [{"text": check_text(t, f"text argument {i}")} for i, t in enumerate(a.text, 1)]  # main checks argv
    for i, t in enumerate(a.text, 1):
        if "\n" not in t and os.path.isfile(t):  # `predict MODEL data.jsonl` tagged the file's name, not its texts
            raise NerkitError(f"text argument {i} is the file {t}: tag the texts in it with --input {t} "
                              "(a text argument is tagged as it is)")
    if a.input:
        found = read_records(a.input)
        if not found:
            raise DataError(a.input, None, "no texts (the file is empty or has only blank lines)")
        records += found
    elif not records:
        if sys.stdin.isatty():
            raise NerkitError("no texts: give them as arguments, with --input FILE, or on standard input")
        records = _stdin_records()
        if not records:
            raise NerkitError("no texts on standard input")
    if a.output:
        check_not_input(a.output, [a.input])  # it would be replaced by the predictions
        check_writable(a.output)  # before loading the model and tagging: fail in a second, not after an hour
    tagger = Tagger.load(a.model_dir, backend=a.backend)
    texts = [r["text"] for r in records]
    lines = (json.dumps({**rec, "text": rec["text"], "entities": [e.to_dict() for e in ents]}, ensure_ascii=False)
             + "\n" for rec, ents in zip(records, tagger(texts)))
    if a.output:
        # Written whole, then moved into place: an interrupted run leaves the previous file as it was.
        atomic_write_text(a.output, "".join(lines))
    else:
        for line in lines:
            sys.stdout.write(line)


def _stdin_records() -> list[dict]:
    """A record per non-blank line of standard input; bytes that are not UTF-8 are one error naming the line."""
    from nerkit.errors import DataError
    from nerkit.files import check_text

    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8", "surrogateescape")
    records = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise DataError("standard input", n, f"invalid UTF-8 bytes {raw[e.start:e.end]!r} (input must be UTF-8)") from None
        if line.strip():
            records.append({"text": check_text(line, "standard input", n)})
    return records


def demo(a: argparse.Namespace) -> None:
    """Train on the embedded corpus, evaluate, tag a sentence."""
    from nerkit.demo import run_demo

    run_demo(output=a.output, epochs=a.epochs)


_ANNOTATOR_HELP = ("read this annotator's annotations of a multi-annotator export, e.g. Label Studio (repeat: the first "
                   "listed who annotated a task); default: each task's first submitted annotation")


def register(sub) -> None:
    """Add the pipeline subcommands to `nerkit`'s subparsers."""
    s = sub.add_parser("stats", help="corpus statistics of CoNLL/JSONL files")
    s.add_argument("data", nargs="+")
    add_scheme(s)
    add_annotator(s, _ANNOTATOR_HELP)
    add_source_options(s)
    s.set_defaults(func=stats)

    t = sub.add_parser("train", help="fine-tune an encoder on labelled data")
    t.add_argument("--train", required=True)
    t.add_argument("--dev")
    t.add_argument("--test")
    t.add_argument("--output", required=True)
    add_training_options(t)
    t.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint an interrupted run of the same command left beside --output")
    t.add_argument("--search", action=argparse.BooleanOptionalAction, default=None,
                   help="start 4 trainings (learning rate and epochs at x1 and x2 of the derived budget), stop those "
                        "behind on --dev at 20%% and 40%% of their plan and keep the best: +0.9 test F1 on average over "
                        "17 benchmark cells of 100-1,000 sentences (up to +3.2), for about 2-3x the time of one "
                        "training. Default: on for up to 1,000 training sentences with --dev and no --lr, --epochs or "
                        "--max-steps; --no-search trains once (docs/domains.md)")
    add_json(t, "the dev and test scores")
    add_scheme(t)
    add_annotator(t, _ANNOTATOR_HELP)
    add_source_options(t)
    t.set_defaults(func=train)

    _register_distill(sub)

    e = sub.add_parser("evaluate", help="entity-level P/R/F1 of a model on labelled data")
    e.add_argument("model_dir")
    e.add_argument("data")
    add_json(e, "the scores and errors")
    e.add_argument("--html", metavar="FILE", help="also write an HTML page: scores as bars, errors by kind and type, "
                   "every sentence with an error, gold and predicted entities marked")
    e.add_argument("--errors", metavar="FILE", help="also write each sentence with an error as JSONL (gold "
                   "\"entities\", \"predicted\", \"errors\"); it reads back as nerkit JSONL to correct the gold")
    e.add_argument("--seen", metavar="TRAIN", help="the training data: also split recall by whether it annotates each "
                   "entity's text (seen) or not (unseen), and inner entities by whether it annotates them as inner")
    add_scheme(e)
    add_annotator(e, _ANNOTATOR_HELP)
    add_source_options(e)
    add_backend(e)
    e.set_defaults(func=evaluate)

    r = sub.add_parser("predict", help="tag raw texts; JSONL out")
    r.add_argument("model_dir")
    r.add_argument("text", nargs="*")
    r.add_argument("--input", help=".txt (one text per line) or .jsonl with a text field (its other fields are "
                   "copied to the output; \"entities\" is replaced by the predictions)")
    r.add_argument("--output", help="write JSONL here (default: stdout)")
    add_backend(r)
    r.set_defaults(func=predict)

    d = sub.add_parser("demo", help="fine-tune the default model on the embedded corpus, evaluate, tag a sentence")
    d.add_argument("--output", default="runs/demo")
    d.add_argument("--epochs", type=float)
    d.set_defaults(func=demo)


def _register_distill(sub) -> None:
    t = sub.add_parser("distill", help="a smaller, faster model trained to give a trained model's tags")
    t.add_argument("teacher", help="a model directory nerkit trained")
    t.add_argument("--output", required=True)
    t.add_argument("--layers", type=positive(int),
                   help="the student's encoder layers, fewer than the teacher's (default: half of them)")
    t.add_argument("--unlabelled", nargs="+", metavar="FILE",
                   help=".txt (a text per line), .jsonl or .parquet files, folders or globs, as tag-corpus reads them: "
                        "more text to learn the teacher's tags on")
    t.add_argument("--train", nargs="+", metavar="FILE",
                   help="labelled text (default: the teacher's training file named in its nerkit.json, looked for in "
                        "the working directory and beside the teacher)")
    t.add_argument("--dev", help="early stopping (default: the teacher's dev file)")
    t.add_argument("--test", help="the student's final scores (default: the teacher's test file where it is found)")
    t.add_argument("--temperature", type=positive(float), default=2.0,
                   help="softens both distributions, so the teacher's second choices count (default 2)")
    t.add_argument("--alpha", type=non_negative(float), default=0.5,
                   help="weight of the gold tags' cross-entropy beside the teacher's distributions (0: the teacher "
                        "alone; default 0.5)")
    t.add_argument("--hidden-weight", type=non_negative(float), default=10.0,
                   help="weight of each student layer's output learning its teacher layer's (mean squared error; 0: "
                        "off; default 10: on CoNLL-2003 a 3-layer student's dev F1 91.73 with 0, 92.12 with 1, 92.37 "
                        "with 4, 92.53 with 10)")
    t.add_argument("--epochs", type=positive(float), help="default: derived from the text's size, as in training")
    t.add_argument("--max-steps", type=positive(int))
    t.add_argument("--lr", type=positive(float), help="default: derived from the batch size, as in training")
    t.add_argument("--batch-tokens", type=positive(int), help="subword tokens per batch (default: derived)")
    t.add_argument("--early-stopping", type=int, help="stop after N evaluations without dev F1 gain")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    t.add_argument("--text-column", default="text", help="the text field of unlabelled .jsonl/.parquet files")
    add_json(t, "the dev and test scores")
    add_scheme(t)
    t.set_defaults(func=distill)
