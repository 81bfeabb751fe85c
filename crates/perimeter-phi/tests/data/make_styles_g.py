#!/usr/bin/env python3
r"""Writes styles_g.jsonl from styles_g1.txt, styles_g2.txt and styles_g3.txt: a seventh
hand-annotated set, written for stop 18 by three writers who had seen neither the engine nor
its test data (g1: paperwork that arrives as text: referral letters, prior-authorization
requests and replies, lab requisitions, school/camp/sports forms, work and FMLA notes,
fitness-to-fly letters, immunization tables, quoted e-mail chains, Markdown tables, vCards,
iCalendar invitations, FHIR JSON and CDA/XML snippets, signature blocks with NPI, DEA and
licence numbers; g2: messy patient writing: run-ons, all lower case, ALL CAPS, emoji, typos,
speech-to-text homophones for digits ("for" 4, "too" 2), autocorrect, French, Vietnamese,
Arabic (both scripts), Russian, Portuguese, Polish and Haitian Creole mixed with English,
European and Asian date forms, phone numbers and addresses abroad; g3: scheduling and call
centre: reminder replies, waitlists, Medicaid transport bookings, refill lines, insurance
verification and prior-auth calls, interpreter-line notes, voicemails from several speech
engines, caregiver group chats, forwarded texts, nurse-line logs, device calls with serials,
portal login-help tickets with user names and IP addresses). Each part was measured once,
before any rule was changed for it (entity recall / character precision): g1 0.972 / 0.902,
g2 0.852 / 0.892, g3 0.928 / 0.943; the whole set 0.928 / 0.911.

Same markup as make_styles_c.py; ids G1-000 ...:

    python3 crates/perimeter-phi/tests/data/make_styles_g.py
"""
import os

from make_styles_c import write

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = [(f"G{i}", os.path.join(HERE, f"styles_g{i}.txt")) for i in (1, 2, 3)]

if __name__ == "__main__":
    write(SOURCES, os.path.join(HERE, "styles_g.jsonl"))
