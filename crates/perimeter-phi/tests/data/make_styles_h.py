#!/usr/bin/env python3
r"""Writes styles_h.jsonl from styles_h1.txt, styles_h2.txt and styles_h3.txt: an eighth hand-annotated set,
written for stop 19 by writers who had seen neither the engine nor its test data (h1:
specialty practices' messaging: dental, OB and midwives, paediatrics, behavioural health,
physical therapy, dermatology, fertility, hospice families; attachment file names with names
and dates, nicknames, suffixes and particles, possessives, names that are words, gestational
dates, Spanish, Somali, Hmong and Korean mixed with English; h2: machine text that carries
PHI: form-encoded SMS webhooks, query strings, application and JSON logs, stack traces, SQL
rows, CSV, CDA and SOAP XML, HL7 v2 PID/NK1/IN1/GT1/PV1/OBX, X12 837/835, pharmacy claims,
DICOM header dumps, fax covers, e-mail headers, calendar exports, device telemetry; h3: spoken language as text:
telehealth transcripts with timestamps, ambient-scribe drafts, answering-service notes,
voicemail from several speech engines, IVR logs, names and e-mails spelled letter by letter,
numbers and dates said in words and mixed digits, self-corrections, interpreters relaying,
places and ages over 89 said aloud). Each part was measured once, before any rule was
changed for it (entity recall / character precision): h1 0.894 / 0.963, h3 0.924 / 0.954,
h2 (which came last, after this stop's rules) 0.939 / 0.809.

Same markup as make_styles_c.py; ids H1-000 ...:

    python3 crates/perimeter-phi/tests/data/make_styles_h.py
"""
import os

from make_styles_c import write

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = [(f"H{i}", os.path.join(HERE, f"styles_h{i}.txt")) for i in (1, 2, 3)]

if __name__ == "__main__":
    write(SOURCES, os.path.join(HERE, "styles_h.jsonl"))
