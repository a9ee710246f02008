"""The model card (README.md of a model directory) says what nerkit.json records, in words: how the model finds
entities, its plan and extensions, the search's choice, and what its scores measure."""
from nerkit.iob import layered_labels
from nerkit.modeldir import ModelMeta, model_card


def _scores(f1: float, support: int, **extra) -> dict:
    one = {"precision": f1, "recall": f1, "f1": f1, "support": support}
    return {**one, "per_type": {"Law": one}, **extra}


def _nested_meta(case_signal: bool) -> ModelMeta:
    labels = layered_labels(["O", "B-Law", "I-Law"], 2)  # two tag layers
    test = _scores(0.6, 354, nested={"outermost": {"precision": 0.5, "recall": 0.6, "f1": 0.55, "support": 354},
                                     "inner": {"precision": 0.6, "recall": 0.0, "f1": 0.0, "support": 0}},
                   overlap={"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 354, "threshold": 0.5})
    meta = ModelMeta(labels=labels, base_model="mini", case_signal=case_signal, metrics={"test": test}, steps=1176,
                     best_step=882, train_seconds=1107.2, device="cpu", bf16=True,
                     windows={"max_tokens": 128, "sentence_level": False},
                     budget={"planned_steps": 588, "extended_steps": [294, 294]},
                     data={"train": {"documents": 3425, "sentences": 3425, "path": "train.jsonl", "sha256_16": "ab"}})
    meta.extra["nested"] = {"layers": 2, "head": "span", "decoder": "merged", "max_width": 186,
                            "thresholds": {"Law": 0.3}}
    meta.extra["search"] = {"points": [{}] * 4, "kept": {"lr_x": 1.0, "epochs_x": 2.0, "lr": 3e-4, "epochs": 4.0}}
    return meta


def test_a_nested_models_card_says_how_it_finds_entities_trained_and_is_scored():
    card = model_card(_nested_meta(case_signal=False))
    assert "- Entity types: Law\n" in card  # once, not per layer
    assert ("scored as spans (a span head over the token states, up to 186 words; decoder `merged`; per-type "
            "thresholds chosen on dev: Law 0.3)") in card
    assert ("- Training: 1,176 steps (a plan of 588, trained on past it while dev F1 climbed: +294, +294), best at "
            "step 882; 1,107 s on cpu (bf16 autocast: on)") in card
    assert "among 4 settings (`nerkit train`'s search): learning rate x1 (0.0003), epochs x2 (4)" in card
    assert "over exact (type, start, end) spans" in card and "seqeval" not in card
    assert "| outermost entities | 50.00 | 60.00 | 55.00 | 354 |" in card
    assert "inner entities" not in card  # none in the data: its precision would read as a score
    assert "| overlap >= 50 % | 70.00 | 70.00 | 70.00 | 354 |" in card
    assert "- train: `train.jsonl`, 3,425 sentences in 3,425 documents (sha256 ab)" in card
    assert "- Context: windows of up to 128 subword tokens, across the sentences of a document" in card
    # without the casing signal a nested model's directory still holds its own pipeline (hf_pipeline): the card
    # says to load that one, not the stock pipeline, which would read the tag layers as flat tags
    assert "trust_remote_code=True" in card and "nested ones too" in card and "aggregation_strategy" not in card


def test_a_flat_models_card_scores_with_seqeval_and_loads_in_the_stock_pipeline():
    meta = ModelMeta(labels=["O", "B-PER", "I-PER"], base_model="mini", case_signal=False, steps=264, best_step=264,
                     train_seconds=210.1, device="cpu", bf16=False, metrics={"dev": _scores(0.9, 10)},
                     windows={"max_tokens": 128, "sentence_level": True}, budget={"planned_steps": 264})
    card = model_card(meta)
    assert "- Entities: flat, IOB2 tags with constrained (valid-sequence) decoding" in card
    assert "- Training: 264 steps, best at step 264; 210 s on cpu (bf16 autocast: off)" in card
    assert "(seqeval, exact spans)" in card and "| **micro avg** | 90.00 | 90.00 | **90.00** | 10 |" in card
    assert "sentence by sentence" in card and "search" not in card and "Overlap" not in card
    assert "aggregation_strategy='first'" in card and "trust_remote_code" not in card
