"""nerkit: fine-tune, evaluate and serve BERT-family named-entity recognizers."""
from nerkit.errors import DataError, NerkitError
from nerkit.scheme import LabelScheme
from nerkit.types import Document, Sentence, Span

__version__ = "0.1.0"

__all__ = ["DataError", "NerkitError", "LabelScheme", "Document", "Sentence", "Span", "Tagger", "fit", "evaluate"]


def __getattr__(name: str):
    # Heavy modules (torch, transformers) load only when their API is used.
    if name == "Tagger":
        from nerkit.predict import Tagger
        return Tagger
    if name == "fit":
        from nerkit.train import fit
        return fit
    if name == "evaluate":
        from nerkit.evaluate import evaluate
        return evaluate
    raise AttributeError(name)
