"""The README's first command: fine-tune the default model on the embedded corpus, evaluate, tag a sentence."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

DEMO_SENTENCE = "The composer Mozart was born in Salzburg."


def corpus_path(split: str) -> Path:
    """Path of a split (train, dev, test) of the small corpus shipped with nerkit."""
    return Path(str(resources.files("nerkit") / "corpus" / f"{split}.conll"))


def run_demo(output: str = "runs/demo", epochs: float | None = None) -> dict:
    """Train on the embedded corpus, print the test evaluation and the entities of the demo sentence."""
    from nerkit.data import format_stats, load, read_conll, stats
    from nerkit.evaluation import evaluate, format_report
    from nerkit.predict import Tagger
    from nerkit.train import TrainConfig, fit

    print(format_stats(stats(load(corpus_path("train")))))
    cfg = TrainConfig(epochs=epochs)  # the budget follows the data: 394 sentences get ~17 epochs of small batches
    fit(corpus_path("train"), dev=corpus_path("dev"), output=output, config=cfg)
    tagger = Tagger.load(output)
    report = evaluate(tagger, read_conll(corpus_path("test")), name=str(corpus_path("test")))
    print("\nTest set of the embedded corpus:")
    print(format_report(report))
    print(f"\nModel saved in {output}. Tagging: {DEMO_SENTENCE}")
    ents = tagger([DEMO_SENTENCE])[0]
    print(json.dumps({"text": DEMO_SENTENCE, "entities": [e.to_dict() for e in ents]}, ensure_ascii=False))
    return {"report": report, "entities": ents}
