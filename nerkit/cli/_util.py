"""Options shared by several `nerkit` verbs, defined once."""
from __future__ import annotations

import argparse
import math
from contextlib import contextmanager
from typing import Iterator, Sequence

from nerkit.engines import BACKENDS
from nerkit.errors import NerkitError

SCHEMES = ("IOB1", "IOB2", "BIOES")
FORMAT_HELP = ("labelstudio, doccano, brat, spacy (Prodigy, Doc.to_json, v2 tuples), docbin (.spacy), spacy-json "
               "(spacy convert), hf (Hugging Face dataset), conll, conll-iob1, conll-iob2, conll-bioes, nerkit")


def add_scheme(p: argparse.ArgumentParser) -> None:
    """``--scheme``: the tag scheme of CoNLL input (default: detected)."""
    p.add_argument("--scheme", choices=SCHEMES, help="tag scheme of CoNLL input (default: detect)")


def add_annotator(p: argparse.ArgumentParser, help: str) -> None:
    """``--annotator``: whose annotations of a multi-annotator export to use (repeatable)."""
    p.add_argument("--annotator", action="append", metavar="ID_OR_EMAIL", help=help)


def add_source_options(p: argparse.ArgumentParser) -> None:
    """``--spans-key`` (spaCy DocBin) and ``--text-field`` (Label Studio): how annotation-tool files are read."""
    p.add_argument("--spans-key", metavar="KEY",
                   help="what a spaCy DocBin's entities are: the span group KEY, doc.ents, or '*' for the entities and "
                        "every span group together (default: doc.ents, else the only span group)")
    p.add_argument("--text-field", metavar="NAME",
                   help="the task field holding the text in a Label Studio export, as in the labeling config's "
                        '<Text value="$NAME"> (default: text, else the only string field)')
    p.add_argument("--tag-columns", type=int, metavar="N",
                   help="a layered CoNLL file: its last N columns are tag layers, one per nesting level, outermost "
                        "first (GENIA .iob2, GermEval-2014); convert writes a CoNLL output so too")


def add_json(p: argparse.ArgumentParser, what: str) -> None:
    """``--json``: the verb's result as JSON for scripts (default: a table for people)."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON (default: tables)")


def tag_columns(a: argparse.Namespace) -> int | None:
    """``--tag-columns`` as given (None: not given), checked."""
    columns = getattr(a, "tag_columns", None)
    if columns is not None and columns < 1:
        raise NerkitError(f"--tag-columns must be at least 1, got {columns}")
    return columns


@contextmanager
def source_options(a: argparse.Namespace, sources: Sequence[tuple[str | None, str | None]]) -> Iterator[None]:
    """Read within the block with ``add_source_options``' options; ``sources``: the (path, format or None) the
    verb reads. An option that applies to none of them is refused (it would do nothing)."""
    from nerkit import formats

    given = [(name, flag, getattr(a, name, None)) for name, flag in (("spans_key", "--spans-key"),
                                                                     ("text_field", "--text-field"),
                                                                     ("tag_columns", "--tag-columns"))]
    for name, flag, value in given:
        if value is None:
            continue
        kinds = formats.OPTION_FORMATS[name]
        paths = [p for p, _ in sources if p]
        if not any(formats.format_of(p, fmt) in kinds for p, fmt in sources if p):
            raise NerkitError(f"{flag} applies to {', '.join(kinds)} files; {', '.join(paths)} "
                              f"{'is' if len(paths) == 1 else 'are'} not")
    columns = tag_columns(a)
    with formats.reading(getattr(a, "spans_key", None), getattr(a, "text_field", None), columns):
        yield


def add_backend(p: argparse.ArgumentParser) -> None:
    """``--backend``: which engine runs the model."""
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto (exported int8, else fp32 ONNX, else PyTorch), onnx-int8, onnx or torch")


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The fine-tuning settings (``TrainConfig``) of `nerkit train` and `nerkit curve`."""
    p.add_argument("--model", help="base encoder (HF id or local directory; default: offline all-MiniLM-L6-v2), or an "
                   "existing NER model to start from: its encoder is kept and the classifier rows of labels with the "
                   "same name are reused (transfer; from a CoNLL-2003 model, 100 financial-news sentences of the same "
                   "types gained 13.9 test F1 over the base encoder, see docs/domains.md)")
    p.add_argument("--label-map", help="with --model NER_MODEL: rename its entity types to yours, e.g. PER=PERSON,ORG=COMPANY")
    p.add_argument("--epochs", type=positive(float), help="default: derived from the data's size (the log says what and why)")
    p.add_argument("--max-steps", type=positive(int))
    p.add_argument("--lr", type=positive(float), help="default: derived from the batch size")
    p.add_argument("--batch-tokens", type=positive(int), help="subword tokens per batch (default: derived from the data's size)")
    p.add_argument("--batch-size", dest="batch_tokens", type=positive(int, scale=128),
                   help="sequences per batch (converted to tokens at 128 per sequence)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--class-weights", choices=["none", "balanced", "sqrt"], default="none",
                   help="weigh rare tags up in the loss (default none: on 1,000 sentences sqrt gained 1-3 dev F1 on "
                        "WNUT-17 and FiNER-ORD and lost 2.6 on LeNER-Br; try it when rare types are missed, see "
                        "docs/domains.md)")
    p.add_argument("--context", type=int, help="subword window size for document context (0: sentences alone)")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                   help="bf16 autocast in training (auto: on CPUs/GPUs with native bf16; NERKIT_BF16=on/off overrides)")
    p.add_argument("--case-signal", choices=["auto", "on", "off"], default="auto",
                   help="feed word casing through token_type_ids (auto: for uncased encoders). Such models name their "
                        "own transformers pipeline (trust_remote_code=True); 'off' gives a plain model")
    p.add_argument("--nested", choices=["auto", "on", "off"], default="auto",
                   help="a nested model, one tag layer per nesting level, so entities inside entities are found "
                        "(auto: when the training data has nested or overlapping entities; off: a flat model on the "
                        "outermost ones, inner ones counted and left out)")
    p.add_argument("--nested-order", choices=["outer", "inner"], default="outer",
                   help="which entities a nested model's first tag layer holds (the others go down a layer)")
    p.add_argument("--nested-head", choices=["span", "layers"], default="span",
                   help="how a nested model finds its entities: a span head scoring every (first word, last word) "
                        "pair (default), or its tag layers alone")
    p.add_argument("--nested-weight", type=positive(float), default=1.0,
                   help="loss weight of entity tags on a nested model's deeper tag layers, which hold few entities")
    p.add_argument("--unannotated-inner", choices=["unsure", "negative"], default="unsure",
                   help="a text annotated as an inner entity in one place and left unannotated inside an entity in "
                        "another: left out of a nested model's span loss there (unsure, default; annotators disagree: "
                        "on genia-small inner recall on dev 34 -> 54 %%) or taught as no entity (negative)")
    p.add_argument("--span-dropout", type=float, default=argparse.SUPPRESS,  # absent: TrainConfig's default
                   help="dropout of the encoder (hidden and attention) when a nested model's span head trains "
                        "(default 0.1); flat models train without (0 turns it off)")
    p.add_argument("--early-stopping", type=int, help="stop after N evaluations without dev F1 gain")
    p.add_argument("--evals-per-epoch", type=positive(float),
                   help="dev evaluations (and checkpoints) per epoch; below 1, every 1/N epochs (default: derived)")
    p.add_argument("--eval-every-steps", type=positive(int), help="evaluate every N optimizer steps instead")


def training_config(a: argparse.Namespace):
    """The ``TrainConfig`` of the options ``add_training_options`` added."""
    from nerkit.train import TrainConfig

    return TrainConfig(model=a.model, epochs=a.epochs, max_steps=a.max_steps, lr=a.lr, batch_tokens=a.batch_tokens,
                       seed=a.seed, class_weights=a.class_weights, context=a.context, bf16=a.bf16,
                       early_stopping=a.early_stopping, label_map=a.label_map, evals_per_epoch=a.evals_per_epoch,
                       eval_every_steps=a.eval_every_steps, resume=getattr(a, "resume", False),
                       nested=getattr(a, "nested", "auto"), nested_order=getattr(a, "nested_order", "outer"),
                       nested_weight=getattr(a, "nested_weight", 1.0), nested_head=getattr(a, "nested_head", "span"),
                       unannotated_inner=getattr(a, "unannotated_inner", "unsure"),
                       case_signal={"auto": None, "on": True, "off": False}[getattr(a, "case_signal", "auto")],
                       **({"span_dropout": a.span_dropout} if "span_dropout" in a else {}))


def add_alias(p: argparse.ArgumentParser, old: str, dest: str, **kwargs) -> None:
    """A former spelling of an option, still accepted (no user's command breaks) but not listed in --help."""
    p.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def positive(kind: type, scale: int = 1):
    """An argparse type: a number of ``kind`` above zero (times ``scale``), else a clear usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < value < math.inf:  # inf passed "> 0" and trained a model of NaNs
            raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
        return value * scale

    parse.__name__ = kind.__name__
    return parse


def non_negative(kind: type):
    """An argparse type: a finite number of ``kind`` at or above zero, else a clear usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 <= value < math.inf:
            raise argparse.ArgumentTypeError(f"must be 0 or more and finite, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse
