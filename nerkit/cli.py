"""`nerkit <verb>`: a thin command line over the public Python API."""
from __future__ import annotations

import argparse
import json
import sys

from nerkit.errors import NerkitError


def _stats(a: argparse.Namespace) -> None:
    from nerkit import data

    for path in a.data:
        print(f"== {path}")
        print(data.format_stats(data.stats(data.load(path, scheme=a.scheme))))


def _train(a: argparse.Namespace) -> None:
    from nerkit.train import TrainConfig, fit

    cfg = TrainConfig(
        model=a.model, epochs=a.epochs, max_steps=a.max_steps, lr=a.lr, batch_tokens=a.batch_tokens,
        seed=a.seed, class_weights=a.class_weights, context=a.context, bf16=a.bf16,
        early_stopping=a.early_stopping,
    )
    result = fit(a.train, dev=a.dev, test=a.test, output=a.output, config=cfg, scheme=a.scheme)
    print(json.dumps(result.get("metrics", {}), indent=2))


def _evaluate(a: argparse.Namespace) -> None:
    from nerkit.evaluate import evaluate, format_report
    from nerkit.predict import Tagger

    tagger = Tagger.load(a.model_dir, backend=a.backend)
    report = evaluate(tagger, a.data, scheme=a.scheme)
    print(json.dumps(report, indent=2) if a.json else format_report(report))


def _predict(a: argparse.Namespace) -> None:
    from nerkit.predict import Tagger, read_texts

    texts = list(a.text)
    if a.input:
        texts += read_texts(a.input)
    if not texts:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    tagger = Tagger.load(a.model_dir, backend=a.backend)
    out = open(a.output, "w", encoding="utf-8") if a.output else sys.stdout
    try:
        for text, ents in zip(texts, tagger(texts)):
            out.write(json.dumps({"text": text, "entities": [e.to_dict() for e in ents]}, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


def _demo(a: argparse.Namespace) -> None:
    from nerkit.demo import run_demo

    run_demo(output=a.output, epochs=a.epochs)


def build_parser() -> argparse.ArgumentParser:
    """The `nerkit` argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="nerkit", description="Fine-tune, evaluate and serve BERT NER models.")
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("stats", help="corpus statistics of CoNLL/JSONL files")
    s.add_argument("data", nargs="+")
    s.add_argument("--scheme", choices=["IOB1", "IOB2", "BIOES"], help="tag scheme (default: detect)")
    s.set_defaults(func=_stats)

    t = sub.add_parser("train", help="fine-tune an encoder on labelled data")
    t.add_argument("--train", required=True)
    t.add_argument("--dev")
    t.add_argument("--test")
    t.add_argument("--model", help="HF model id or local directory (default: offline all-MiniLM-L6-v2)")
    t.add_argument("--output", required=True)
    t.add_argument("--epochs", type=float)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-tokens", type=int, help="subword tokens per batch")
    t.add_argument("--batch-size", dest="batch_tokens", type=lambda v: int(v) * 128,
                   help="sequences per batch (converted to tokens at 128 per sequence)")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--class-weights", choices=["none", "balanced", "sqrt"], default="none")
    t.add_argument("--context", type=int, help="subword window size for document context (0: sentences alone)")
    t.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    t.add_argument("--early-stopping", type=int, help="stop after N evaluations without dev F1 gain")
    t.add_argument("--scheme", choices=["IOB1", "IOB2", "BIOES"])
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="entity-level P/R/F1 of a model on labelled data")
    e.add_argument("model_dir")
    e.add_argument("data")
    e.add_argument("--json", action="store_true")
    e.add_argument("--scheme", choices=["IOB1", "IOB2", "BIOES"])
    e.add_argument("--backend", default="auto")
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("predict", help="tag raw texts; JSONL out")
    r.add_argument("model_dir")
    r.add_argument("text", nargs="*")
    r.add_argument("--input", help=".txt (one text per line) or .jsonl with a text field")
    r.add_argument("--output", help="write JSONL here (default: stdout)")
    r.add_argument("--backend", default="auto")
    r.set_defaults(func=_predict)

    d = sub.add_parser("demo", help="fine-tune the default model on the embedded corpus, evaluate, tag a sentence")
    d.add_argument("--output", default="runs/demo")
    d.add_argument("--epochs", type=float)
    d.set_defaults(func=_demo)

    for name in ("nerkit.cli_serve", "nerkit.cli_annotate"):
        try:
            module = __import__(name, fromlist=["register"])
        except ImportError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nerkit` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except NerkitError as exc:
        print(f"nerkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
