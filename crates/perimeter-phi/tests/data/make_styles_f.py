#!/usr/bin/env python3
r"""Writes styles_f.jsonl from styles_f1.txt, styles_f2.txt and styles_f3.txt: a sixth
hand-annotated set, written for stop 17 by three writers who had seen neither the engine nor
its test data (f1: long-form prose from older adults and caregivers, insurer appeals,
complaint, thank-you, guardianship and condolence letters, relatives named in prose, places
mid-sentence, prose dates, ages over 89 in words, UK/Canadian/Australian/Indian/Mexican/
Philippine/Nigerian formats, names that are also words; f2: staff shorthand, secure messages,
hand-offs, help-desk tickets, Slack/Teams chat, pipe and column exports, YAML/TOML/SQL rows,
EHR audit logs, billing and collections, denial letters, DME orders with serials and UDIs,
pharmacy queues with Rx, DEA, NPI and licence numbers, VINs and plates, web access logs;
f3: ASR voicemail with mixed digits and words and self-corrections, spelled names, IVR logs,
noisy SMS, OCR of handwritten forms, interpreter calls, names of many languages, one-word
replies). Each part was measured once before any rule was changed for it (entity recall /
character precision): f1 0.899 / 0.968, f2 0.808 / 0.903, f3 0.717 / 0.918.

Same markup as make_styles_c.py; ids F1-000 ...:

    python3 crates/perimeter-phi/tests/data/make_styles_f.py
"""
import os

from make_styles_c import write

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = [(f"F{i}", os.path.join(HERE, f"styles_f{i}.txt")) for i in (1, 2, 3)]

if __name__ == "__main__":
    write(SOURCES, os.path.join(HERE, "styles_f.jsonl"))
