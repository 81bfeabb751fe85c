#!/usr/bin/env python3
r"""Writes styles_e.jsonl from styles_e1.txt, styles_e2.txt and styles_e3.txt: a fifth
hand-annotated set, written for stop 15 by three more writers who had seen neither the engine
nor its test data (e1: consumer texting and chat, group chats, web chats with speaker labels,
corrections, names of many origins and names that are words, casual lower-case addresses,
Spanish, Portuguese and Vietnamese mixed with English; e2: HL7 v2, FHIR R4 JSON, CDA and
NCPDP XML, CSV, key=value and web-server logs, raw e-mail headers, X12 271, pharmacy labels,
device logs, transport forms; e3: lower-case ASR voicemail with spoken digits, letters,
e-mails and dates, triage and telehealth notes, run sheets, school and workplace forms,
attorneys' letters, insurance calls, prior-authorisation faxes). Each part was measured once
before any rule was changed for it (entity recall / character precision):
e1 0.859 / 0.991 (0.844 at the stop's start), e2 0.877 / 0.815, e3 0.872 / 0.969.

Same markup as make_styles_c.py; ids E1-000 ...:

    python3 crates/perimeter-phi/tests/data/make_styles_e.py
"""
import os

from make_styles_c import write

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = [(f"E{i}", os.path.join(HERE, f"styles_e{i}.txt")) for i in (1, 2, 3)]

if __name__ == "__main__":
    write(SOURCES, os.path.join(HERE, "styles_e.jsonl"))
