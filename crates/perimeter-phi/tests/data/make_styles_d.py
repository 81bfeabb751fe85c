#!/usr/bin/env python3
r"""Writes styles_d.jsonl from styles_d1.txt, styles_d2.txt and styles_d3.txt: a fourth
hand-annotated set, written for stop 14 by three more writers who had seen neither the engine
nor its test data
(d1: answering-service notes, portal messages, two-speaker call transcripts with corrections,
pharmacy faxes, home-health notes, records requests, teenagers' texts, Spanish, Tagalog and
Haitian Creole mixed with English; d2: discharge summaries, referral letters, JSON push and
lab payloads, HL7 ADT/ORM/ORU/SIU/MDM, CSV exports, web forms, SMS bots, voicemail with
spelled names, quoted e-mail threads, EOBs). d1 was measured and then tuned on (recall 0.894,
precision 0.911 before); d2 was measured once, after the tuning on c and d1, before any rule
was changed for it: recall 0.932, precision 0.920 (00d5b54, before this stop's rules: 0.909,
0.898). d3 (SMS, chat, voicemail, notes, e-mail, forms, faxes, HL7, JSON, letters; names of
other origins again) was measured once at the end of the stop, untouched: recall 0.933,
precision 0.937 (00d5b54: 0.895, 0.916).

Input: one message per line, `kind<TAB>text`.
Markup inside text:
  {{LABEL|covered text}}  a gold span (no nesting; covered text may contain escapes)
  \n   (backslash, n)          -> a real line break
  \\   (backslash, backslash)  -> ONE literal backslash
So a literal backslash-n inside a JSON string is written \\n, an HL7 escape \T\ is
written \\T\\. Any other backslash sequence is an error, as is a stray "{{" or "}}".
Output lines: {"id": "D1-000", "kind", "text", "spans": [{"start","end","label","text"}]}
with start/end as code point offsets, end exclusive:

    python3 crates/perimeter-phi/tests/data/make_styles_d.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_styles_c import write  # noqa: E402  (one markup parser and writer for both sets)

SOURCES = [
    ("D1", os.path.join(HERE, "styles_d1.txt")),
    ("D2", os.path.join(HERE, "styles_d2.txt")),
    ("D3", os.path.join(HERE, "styles_d3.txt")),
]
DST = os.path.join(HERE, "styles_d.jsonl")

if __name__ == "__main__":
    write(SOURCES, DST)
