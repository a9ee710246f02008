"""A tiny randomly-initialised BERT token classifier, saved like a nerkit model directory (for fast tests)."""
from __future__ import annotations

import json
from pathlib import Path

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
_WORDS = """the a an of in on at to and is was were by for with from he she it they we you this that
john smith mary jones paris london berlin new york city lives works visited went met said today
##s ##ing ##ed ##er ##ly ##es ##n ##a ##o ##e ##i ##r ##t ##l"""


def make_tiny_model(directory, seed: int = 0, type_vocab_size: int = 4, meta: dict | None = None) -> Path:
    """Write a tiny BERT NER model (hidden 32, 2 layers, 2 heads, WordPiece vocab) into ``directory``."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(i) for i in range(10)] + list(".,;:!?'\"-()")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + _WORDS.split()
    vocab = list(dict.fromkeys(vocab))
    vocab_file = d / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # The vocabulary itself, not vocab_file=: transformers 5 ignores that argument and built a 5-token vocabulary
    # that read every word as [UNK] (tests then ran on positions and casing alone).
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, type_vocab_size=type_vocab_size,
                        num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                        label2id={t: i for i, t in enumerate(LABELS)})
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():  # larger random classifier weights so tags vary from token to token
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(d, safe_serialization=True)
    tokenizer.save_pretrained(d)
    m = {"base_model": "tiny-random-bert", "labels": LABELS, "case_signal": type_vocab_size >= 4,
         "windows": {"max_tokens": 64, "predict_target_tokens": 32},
         "metrics": {"test": {"f1": 0.5}}}
    m.update(meta or {})
    (d / "nerkit.json").write_text(json.dumps(m, indent=2), encoding="utf-8")
    return d
