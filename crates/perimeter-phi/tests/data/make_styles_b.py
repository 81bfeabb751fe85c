#!/usr/bin/env python3
"""Writes styles_b.jsonl from styles_b.txt: a second hand-annotated set, written for stop 13
without templates (chat logs with times, fax covers, HL7 segments, JSON, forms, letters, phone
notes, voicemail in lower case, names that are words, spelled-out ages and dates, other name and
town pools than the corpus's and heldout.jsonl's).

Each line of styles_b.txt is `kind<TAB>text`, where `\\n` is a line break and `{{LABEL|text}}`
marks a gold span annotated to ../shared/corpus/README.md (titles outside NAME spans, ages only
over 89, weekdays and times not PHI). Offsets are written in characters, as in the corpus:

    python3 crates/perimeter-phi/tests/data/make_styles_b.py > crates/perimeter-phi/tests/data/styles_b.jsonl
"""
import json
import pathlib
import re

SRC = pathlib.Path(__file__).with_name("styles_b.txt")

for n, line in enumerate(SRC.read_text(encoding="utf-8").splitlines()):
    if not line.strip():
        continue
    kind, marked = line.split("\t", 1)
    marked = marked.replace("\\n", "\n")
    text, spans, pos = "", [], 0
    for m in re.finditer(r"\{\{([A-Z_]+)\|(.*?)\}\}", marked):
        text += marked[pos:m.start()]
        start = len(text)
        text += m.group(2)
        spans.append({"start": start, "end": len(text), "label": m.group(1), "text": m.group(2)})
        pos = m.end()
    text += marked[pos:]
    print(json.dumps({"id": "B-%03d" % n, "kind": kind, "text": text, "spans": spans}, ensure_ascii=False))
