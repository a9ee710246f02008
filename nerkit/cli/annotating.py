"""`nerkit validate | labelstudio-config | convert | agree | adjudicate | preannotate | suggest | curve`: the annotation
workflow."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nerkit.cli._util import (FORMAT_HELP, add_annotator, add_backend, add_json, add_scheme, add_source_options,
                              add_training_options, source_options, tag_columns, training_config)
from nerkit.errors import NerkitError


def _print_report(report, details: int) -> None:
    print(report.summary())
    lines = report.details(None if details < 0 else details)
    if lines:
        print("\n".join(lines))
        if 0 <= details < len(report.changes):
            print(f"... {len(report.changes) - details} more (--details -1 lists all)")


def validate(a: argparse.Namespace) -> None:
    """Check annotated data against guidelines; fail on errors (or warnings with --strict)."""
    from nerkit.annotate.guidelines import format_findings, validate as check

    with source_options(a, [(d, a.fmt) for d in a.data]):
        findings = check(a.schema, a.data, a.fmt)
    print(format_findings(findings))
    errors = sum(f.severity == "error" for f in findings)
    if errors or (a.strict and findings):
        raise NerkitError(f"{errors} errors and {len(findings) - errors} warnings in {', '.join(a.data)}")


def labelstudio_config(a: argparse.Namespace) -> None:
    """Write (or print) the Label Studio labeling config of a guidelines file."""
    from nerkit.annotate.guidelines import load_guidelines
    from nerkit.files import atomic_write_text

    xml = load_guidelines(a.schema).labelstudio_config()
    if a.output:
        atomic_write_text(a.output, xml)
        print(f"wrote {a.output} (paste it under Settings > Labeling Interface > Code)", file=sys.stderr)
    else:
        sys.stdout.write(xml)


def convert(a: argparse.Namespace) -> None:
    """Convert annotations between formats; print what changed."""
    from nerkit import formats
    from nerkit.files import check_not_input
    from nerkit.formats import convert as convert_file

    check_not_input(a.output, [a.input], "output")  # `convert a.txt a.txt` dropped columns and said "no changes"
    # --tag-columns N: a CoNLL input's tag columns, and a CoNLL output's (nested spans one level a column)
    columns = 1
    if tag_columns(a) is not None and formats.format_of(a.output, a.dst).startswith("conll"):
        columns = a.tag_columns
        if not formats.format_of(a.input, a.src).startswith("conll"):
            a.tag_columns = None  # for the output only: nothing to read with it
    with source_options(a, [(a.input, a.src)]):
        report = convert_file(a.input, a.output, a.src, a.dst, misaligned=a.misaligned, strict=a.strict,
                              annotators=a.annotator, tag_columns=columns)
    _print_report(report, a.details)
    print(f"wrote {a.output}")


def agree(a: argparse.Namespace) -> None:
    """Print inter-annotator agreement and the disagreements."""
    from nerkit.annotate import agreement as ag
    from nerkit.formats import ChangeLog

    report = ChangeLog()
    with source_options(a, [(f, a.fmt) for f in a.files]):
        names, sets = ag.load_annotators(a.files, a.fmt, report, a.annotator)
    al = ag.align(names, sets)
    result = ag.agreement(al, report)
    found = ag.disagreements(al)
    if a.json:
        result["disagreements"] = len(found)
        print(json.dumps(result, indent=2))
    else:
        print(ag.format_agreement(result))
        if report.changes:
            print(f"\nwhile reading: {len(report.changes)} changes ({', '.join(f'{n} {k}' for k, n in report.counts().items())})")
    ag.write_disagreements(al, found, a.report, a.html)
    if not a.json and not a.report and not a.html:
        print("\n" + ag.format_disagreements(al, found))
    for path in (a.report, a.html):
        if path:
            print(f"wrote {path}", file=sys.stderr)


def adjudicate(a: argparse.Namespace) -> None:
    """Merge annotators (or apply a decided review file)."""
    from nerkit import formats
    from nerkit.annotate.adjudicate import adjudicate as merge, apply_review, report_left_out, write_review

    if a.apply:
        if len(a.files) != 1:
            raise NerkitError("with --apply, give the merged file written by `nerkit adjudicate` (one file)")
        from nerkit.files import check_not_input

        check_not_input(a.output, [a.files[0], a.apply])
        report = formats.ChangeLog()
        records = formats.read(a.files[0], a.fmt, report)
        records, decided, undecided = apply_review(records, a.apply, allow_undecided=a.allow_undecided)
        formats.write(records, a.output, a.to, report)
        print(f"applied {decided} decisions" + (f"; {undecided} items still undecided (left without entities)" if undecided else ""))
        _print_report(report, 20)
        print(f"wrote {a.output}")
        return
    from nerkit.annotate import agreement as ag
    from nerkit.files import check_not_input

    check_not_input(a.output, a.files)
    if a.review:
        check_not_input(a.review, a.files, "--review")
    report = formats.ChangeLog()
    with source_options(a, [(f, a.fmt) for f in a.files]):
        names, sets = ag.load_annotators(a.files, a.fmt, report, a.annotator)
    al = ag.align(names, sets)
    report_left_out(al, report)  # listed and counted, never silently
    out = merge(al, a.strategy)
    formats.write(out.records, a.output, a.to, report)
    review = a.review or str(Path(a.output).with_suffix("")) + ".review.jsonl"
    write_review(out.conflicts, review)
    print(f"{len(al.records)} texts from {len(names)} annotators: {out.agreed} regions agreed, {out.voted} decided by "
          f"{a.strategy} vote, {len(out.conflicts)} for review")
    left = [c for c in report.changes if c.kind == "not-shared"]
    if left:
        print(f"{len(left)} texts not annotated by every annotator, left out of {a.output}:")
        print("\n".join(f"  {c.where}: {c.detail}" for c in left[:20]) + (f"\n  ... {len(left) - 20} more" if len(left) > 20 else ""))
    _print_report(report, 20)
    print(f"wrote {a.output}")
    if out.conflicts:
        print(f"wrote {review}: set each item's \"decision\" (an option number, or a list of spans), then run\n"
              f"  nerkit adjudicate --apply {review} {a.output} --output FINAL")


def preannotate(a: argparse.Namespace) -> None:
    """Tag texts with a model and write annotation tasks."""
    from nerkit.annotate.assist import preannotate as tag_texts
    from nerkit.files import check_not_input
    from nerkit.predict import read_texts

    output = a.output or str(Path(a.texts).with_suffix("")) + {"labelstudio": ".tasks.json", "brat": ".brat"}.get(
        a.to, ".jsonl" if not a.to.startswith("conll") else ".conll")
    check_not_input(output, [a.texts])
    report = tag_texts(a.model_dir, read_texts(a.texts), output, a.to, a.backend)
    print(f"pre-annotated {report.records_out} texts with {report.spans_out} entities; wrote {output}")


def suggest(a: argparse.Namespace) -> None:
    """Rank unlabelled texts by model uncertainty."""
    from nerkit import formats
    from nerkit.annotate import assist

    exclude: list[str] = []
    for path in a.exclude or []:
        exclude += [r.text for r in formats.read(path, spans_key="*")]  # only the texts: any span group will do
    if a.output:
        from nerkit.files import check_not_input

        check_not_input(a.output, [a.unlabelled, *(a.exclude or [])])
        items = assist.suggest_file(a.model_dir, a.unlabelled, a.output, a.n, a.strategy, a.to, exclude, a.backend)
        print(f"wrote the {len(items)} most uncertain texts to {a.output}")
        return
    from nerkit.predict import Tagger

    tagger = Tagger.load(a.model_dir, backend=a.backend)
    for s in assist.suggest(tagger, assist.read_unlabelled(a.unlabelled), a.n, a.strategy, exclude):
        print(f"{s.rank}\t{s.score:.4f}\t{s.text}")


def curve(a: argparse.Namespace) -> None:
    """Train on growing subsets; print and plot dev F1."""
    from nerkit.curve import format_curve, learning_curve, parse_fractions

    rows = learning_curve(a.train, a.dev, parse_fractions(a.fractions), a.output, training_config(a), seed=a.seed,
                          scheme=a.scheme, keep_models=a.keep_models)
    print(format_curve(rows))
    print(f"wrote {a.output}/curve.tsv, curve.json and curve.png")


def register(sub) -> None:
    """Add the annotation-workflow subcommands to `nerkit`'s subparsers."""
    # Long: one block of option declarations per verb, read top to bottom like the --help they produce.
    v = sub.add_parser("validate", help="check annotated data against a label schema (YAML/JSON guidelines)")
    v.add_argument("schema")
    v.add_argument("data", nargs="+")
    v.add_argument("--from", dest="fmt", help=f"data format ({FORMAT_HELP}); default: guessed from the name")
    v.add_argument("--strict", action="store_true", help="fail on warnings too")
    add_source_options(v)
    v.set_defaults(func=validate)

    x = sub.add_parser("labelstudio-config", help="the Label Studio labeling config of a label schema (XML)")
    x.add_argument("schema")
    x.add_argument("--output", help="write the config here (default: print it)")
    x.set_defaults(func=labelstudio_config)

    c = sub.add_parser("convert", help="convert annotations between tools' formats")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--from", dest="src", help=f"input format ({FORMAT_HELP}); default: guessed")
    c.add_argument("--to", dest="dst", help="output format; default: guessed from the output name")
    c.add_argument("--misaligned", choices=["split", "expand"], default="split",
                   help="span edge inside a word, for token formats: split the word (default) or widen the span")
    c.add_argument("--strict", action="store_true", help="fail instead of changing anything")
    c.add_argument("--details", type=int, default=20, help="list this many changes (-1: all)")
    add_annotator(c, "keep this annotator's annotation of each task (Label Studio user id or email; repeat "
                     "for a fallback order); default: each task's first submitted annotation")
    add_source_options(c)
    c.set_defaults(func=convert)

    g = sub.add_parser("agree", help="inter-annotator agreement of two or more annotators' files")
    g.add_argument("files", nargs="+", help="one file per annotator (or one Label Studio export with several)")
    g.add_argument("--from", dest="fmt")
    add_json(g, "the agreement figures")
    g.add_argument("--report", help="write the disagreements as text here (default: print them)")
    g.add_argument("--html", help="write the disagreements as an HTML page here")
    add_annotator(g, "compare only these annotators of a Label Studio export (id or email; repeat)")
    add_source_options(g)
    g.set_defaults(func=agree)

    j = sub.add_parser("adjudicate", help="merge annotators by majority; conflicts go to a review file")
    j.add_argument("files", nargs="+")
    j.add_argument("--output", required=True)
    j.add_argument("--from", dest="fmt")
    j.add_argument("--to", help="output format (default: guessed from --output)")
    j.add_argument("--review", help="review file (default: OUTPUT.review.jsonl)")
    j.add_argument("--strategy", choices=["majority", "plurality"], default="majority")
    j.add_argument("--apply", metavar="REVIEW", help="apply a decided review file to the merged file given")
    j.add_argument("--allow-undecided", action="store_true", help="with --apply: leave undecided items without entities")
    add_annotator(j, "merge only these annotators of a Label Studio export (id or email; repeat)")
    add_source_options(j)
    j.set_defaults(func=adjudicate)
    _register_model_verbs(sub)


def _register_model_verbs(sub) -> None:
    """preannotate, suggest, curve: the verbs that use a model (or train them)."""
    p = sub.add_parser("preannotate", help="tag texts with a model and write annotation tasks")
    p.add_argument("model_dir")
    p.add_argument("texts", help=".txt (one text per line) or .jsonl with a text field")
    p.add_argument("--to", default="labelstudio", help=f"output format ({FORMAT_HELP})")
    p.add_argument("--output")
    add_backend(p)
    p.set_defaults(func=preannotate)

    s = sub.add_parser("suggest", help="rank unlabelled texts by model uncertainty (active learning)")
    s.add_argument("model_dir")
    s.add_argument("unlabelled")
    s.add_argument("-n", type=int, default=100)
    s.add_argument("--strategy", choices=["margin", "entropy"], default="margin")
    s.add_argument("--output", help="write the texts here (default: print rank, score, text)")
    s.add_argument("--to", help="txt, jsonl, or an annotation format (default: from the output name)")
    s.add_argument("--exclude", nargs="*", help="annotated files whose texts are skipped")
    add_backend(s)
    s.set_defaults(func=suggest)

    u = sub.add_parser("curve", help="learning curve: dev F1 against the amount of annotated data")
    u.add_argument("--train", required=True)
    u.add_argument("--dev", required=True)
    u.add_argument("--fractions", default="0.1,0.25,0.5,1.0")
    u.add_argument("--output", required=True)
    add_training_options(u)
    add_scheme(u)
    u.add_argument("--keep-models", action="store_true", help="save each subset's model under OUTPUT")
    u.set_defaults(func=curve)
