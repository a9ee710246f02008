"""Label Studio: JSON (and JSON-MIN) exports in, importable tasks (annotations or predictions) out."""
from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

from nerkit.formats.jsonvalues import json_values
from nerkit.formats.records import ChangeLog, Record, finish, utf16_to_chars, make_span
from nerkit.errors import DataError
from nerkit.files import atomic_write_text
from nerkit.types import Span


# Fields of a JSON-MIN row that Label Studio adds beside the task's data fields.
_MIN_FIELDS = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time")


def _task_text(data: object, where: str, field: str | None, skip: Sequence[str] = ()) -> str:
    """The text of a task's data: the field named by ``field`` (``--text-field``), else "text", else the only
    string field (besides ``skip`` and nerkit's own); otherwise an error naming the candidates."""
    if not isinstance(data, dict):
        raise DataError(where, None, f'task "data" must be an object, got {type(data).__name__}')
    strings = [k for k, v in data.items() if isinstance(v, str) and not k.startswith("nerkit_") and k not in skip]
    if field is not None:
        if isinstance(data.get(field), str):
            return data[field]
        raise DataError(where, None, f'task has no text field {field!r} (--text-field); its string fields: '
                        f'{", ".join(strings) or "none"}')
    if isinstance(data.get("text"), str):
        return data["text"]
    if len(strings) == 1:
        return data[strings[0]]
    raise DataError(where, None, 'task has no "text" field and ' + (
        f'several string fields ({", ".join(strings)})' if strings else "no string field")
        + ': name the one the labeling config shows with --text-field NAME (<Text value="$NAME">)')


def _ls_regions(items: object, text: str, where: str, log: ChangeLog, utf16) -> list[tuple[Span, str]]:
    """Spans of a Label Studio ``result`` list (or JSON-MIN label list)."""
    if not isinstance(items, list):
        raise DataError(where, None, f'"result" must be a list, got {type(items).__name__}')
    out = []
    for k, item in enumerate(items):
        w = f"{where} region {k + 1}"
        if not isinstance(item, dict):
            raise DataError(w, None, f"expected an object, got {type(item).__name__}")
        value = item.get("value", item)  # JSON-MIN exports put start/end/labels at the top level
        if not isinstance(value, dict) or "start" not in value or "end" not in value:
            log.add("not-entity", w, str(item.get("type", "no start/end")))
            continue
        labels = next((v for key, v in value.items() if key.endswith("labels") and isinstance(v, list)), None)
        if not labels:
            log.add("not-entity", w, str(item.get("type", "no labels")))
            continue
        if len(labels) > 1:
            log.add("multi-label", w, ", ".join(map(str, labels)))
        claimed = value.get("text") if isinstance(value.get("text"), str) else None
        for label in labels:
            span = make_span(text, value["start"], value["end"], label, claimed, w, log, utf16)
            if span:
                out.append((span, w))
    return out


def _annotator(who: object) -> tuple[str | None, list[str]]:
    """An annotator as Label Studio exports one (a user id, an email, or ``{"id", "email", ...}``): the name
    nerkit shows, and every key ``--annotator`` may give for it (id and email)."""
    if isinstance(who, dict):
        ident, email = who.get("id"), who.get("email")
        keys = [str(k) for k in (ident, email) if k not in (None, "")]
        return (keys[-1] if keys else None), keys
    if who is None or who == "":
        return None, []
    return str(who), [str(who)]


def _meta(task_id: object, ann_id: object, created: object, keys: list[str], data: dict) -> dict:
    meta = {"task": task_id, "annotation": ann_id, "created": created, "annotator_keys": keys}
    if data.get("nerkit_doc") is not None:
        meta["doc"] = str(data["nerkit_doc"])
    return meta


def read(path: str | os.PathLike, log: ChangeLog, text_field: str | None = None) -> list[Record]:
    """Label Studio JSON or JSON-MIN export: one record per non-cancelled annotation; each record's source names
    the file, line and Label Studio's task id (``export.json:1 task 17 annotation 2``: Label Studio writes its
    JSON on one line). ``text_field`` names the data field that holds the text (see ``_task_text``)."""
    out = []
    for index, (line, task) in enumerate(json_values(path), 1):
        if not isinstance(task, dict):
            raise DataError(path, line, f"item {index} of the export is not a task (an object): "
                            f"got {type(task).__name__}")
        task_id = task.get("id", index)
        where = f"{path}:{line} task {task_id}"
        if "data" not in task:
            # JSON-MIN: one row per annotation (newest first), the task's data fields and each labels control's
            # regions at the top level, "annotator" the user id (or email); a never-annotated task is one row
            # without annotator or annotation id.
            if not any(isinstance(v, str) for k, v in task.items() if k not in _MIN_FIELDS):
                raise DataError(where, None, 'no "data" (JSON export) and no text field (JSON-MIN export)')
            text = _task_text(task, where, text_field, _MIN_FIELDS)
            lists = [v for v in task.values() if isinstance(v, list) and v and isinstance(v[0], dict) and "start" in v[0]]
            name, keys = _annotator(task.get("annotator"))
            if name is None and task.get("annotation_id") is None and not lists:
                log.add("skipped-record", where, "task has no annotation")
                continue
            rid = str(task.get("nerkit_id", task_id))
            rec = Record(rid, text, source=where, annotator=name,
                         meta=_meta(task_id, task.get("annotation_id"), task.get("created_at"), keys, task))
            located = [x for items in lists for x in _ls_regions(items, text, where, log, utf16_to_chars(text))]
            out.append(finish(rec, located, log))
            continue
        text = _task_text(task["data"], where, text_field)
        data = task["data"]
        rid = str(data.get("nerkit_id", task_id))
        anns = task.get("annotations", task.get("completions")) or []
        if not isinstance(anns, list):
            raise DataError(where, None, '"annotations" must be a list')
        live = []
        for k, ann in enumerate(anns, 1):
            if not isinstance(ann, dict):
                raise DataError(where, None, f"annotation {k} is not an object")
            if ann.get("was_cancelled") or ann.get("skipped"):
                log.add("skipped-record", f"{where} annotation {k}", "cancelled (skipped) annotation")
            else:
                live.append((k, ann))
        if not live:
            log.add("skipped-record", where, "task has no annotation" + (" (only predictions)" if task.get("predictions") else ""))
            continue
        utf16 = utf16_to_chars(text)
        for k, ann in live:
            w = f"{where} annotation {k}"
            name, keys = _annotator(ann.get("completed_by"))
            rec = Record(rid, text, source=w, annotator=name or f"annotation{k}",
                         meta=_meta(task_id, ann.get("id"), ann.get("created_at"), keys, data))
            out.append(finish(rec, _ls_regions(ann.get("result", []), text, w, log, utf16), log))
    return out


def labelstudio_result(text: str, spans: Iterable[Span], scores: Sequence[float] | None = None,
                       prefix: str = "r") -> list[dict]:
    """Label Studio ``result`` regions for spans (``labels`` control named "label" on a Text object "text")."""
    out = []
    for k, s in enumerate(spans):
        region = {"id": f"{prefix}{k + 1}", "from_name": "label", "to_name": "text", "type": "labels",
                  "value": {"start": s.start, "end": s.end, "text": text[s.start:s.end], "labels": [s.label]}}
        if scores is not None:
            region["score"] = round(float(scores[k]), 4)
        out.append(region)
    return out


def labelstudio_tasks(records: Sequence[Record], predictions: bool = False, model_version: str = "nerkit",
                      scores: Sequence[Sequence[float]] | None = None) -> list[dict]:
    """Label Studio import tasks, with spans as completed annotations or as model predictions."""
    tasks = []
    for i, r in enumerate(records):
        data = {"text": r.text, "nerkit_id": r.id}
        if r.meta.get("doc") is not None:
            data["nerkit_doc"] = r.meta["doc"]
        result = labelstudio_result(r.text, r.spans, scores[i] if scores is not None else None, prefix=f"t{i + 1}r")
        if predictions:
            sc = scores[i] if scores is not None else []
            entry = {"model_version": model_version, "score": round(float(sum(sc) / len(sc)), 4) if len(sc) else 1.0,
                     "result": result}
            tasks.append({"data": data, "predictions": [entry]})
        else:
            tasks.append({"data": data, "annotations": [{"result": result, "was_cancelled": False}]})
    return tasks


def write(records: Sequence[Record], path: str | os.PathLike, log: ChangeLog) -> None:
    """Label Studio JSON tasks with one annotation each (importable; the labeling config needs Labels name="label")."""
    atomic_write_text(path, json.dumps(labelstudio_tasks(records), ensure_ascii=False, indent=1) + "\n")
