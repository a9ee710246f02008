"""nerkit: fine-tune, evaluate and serve BERT-family named-entity recognizers.

The package root only re-exports, lazily (no nerkit module imports it): data -> formats -> align -> train/loop ->
evaluation -> predict -> engines/export -> serve/tagcorpus, with annotate/ beside; see docs/architecture.md.
"""
from nerkit._version import __version__

__all__ = ["DataError", "NerkitError", "LabelScheme", "Span", "Sentence", "Document", "Entity", "Tagger", "fit",
           "evaluate", "__version__"]

_EXPORTS = {"DataError": "nerkit.errors", "NerkitError": "nerkit.errors", "LabelScheme": "nerkit.scheme",
            "Span": "nerkit.types", "Sentence": "nerkit.types", "Document": "nerkit.types", "Entity": "nerkit.types",
            "Tagger": "nerkit.predict", "fit": "nerkit.train", "evaluate": "nerkit.evaluation"}


def __getattr__(name: str):
    # Heavy modules (torch, transformers) load only when their API is used.
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nerkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
