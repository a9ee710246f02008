"""The annotation loop beside the pipeline: tool formats, guidelines checks, agreement, adjudication,
pre-annotation and active learning, learning curves (the ``annotate`` extra)."""
