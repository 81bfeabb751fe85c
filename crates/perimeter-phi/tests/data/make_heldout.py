#!/usr/bin/env python3
"""Writes heldout.jsonl: the PHI engine's held-out evaluation set.

Hand-written templates in styles the development corpus does not have (SMS shorthand, all
lower case, chat logs, voicemail transcripts with spelled-out digits, e-mails with headers and
signature blocks, forwarded mail, HL7 v2 segments, JSON payloads, fax covers, `Label: value`
forms, caregivers writing about a parent), annotated to the corpus guidelines
(../shared/corpus/README.md): `{{LABEL|text}}` marks a gold span in a template, `<slot>`
draws a value from the pools below (other name and city pools than the corpus's). Each
template is filled three times with a fixed seed, so the file is reproducible:

    python3 crates/perimeter-phi/tests/data/make_heldout.py > crates/perimeter-phi/tests/data/heldout.jsonl

The set is for measuring, not tuning: do not adjust the engine line by line to it.
"""
import json
import random
import re
import sys

GIVEN = [
    "Oluwaseun", "Priya", "Tomasz", "Siobhan", "Mei-Ling", "Jean-Baptiste", "D'Andre",
    "Ana Lucia", "Thanh", "Bogdan", "Rashida", "Kwame", "Ingrid", "Teodora", "Marisol",
    "Dmitri", "Yusuf", "Keala", "Ximena", "Tadeusz", "Aurelio", "Fenna", "Hamza", "Odalys",
    "Radhika", "Lorcan", "Wiremu", "Sunniva", "Eitan", "Chidinma",
]
WORD_GIVEN = ["Hope", "Will", "Rose", "Grace", "June", "Faith", "Art", "Bill", "Joy", "Dawn",
              "Sky", "Frank", "Mark", "Amber", "Penny"]
SURNAMES = [
    "Adeyemi", "Raghunathan", "Wisniewski", "Ni Bhriain", "Chou", "Morel", "Whitfield",
    "Paredes", "Nguyen", "Petrescu", "Oyelaran", "Mensah", "Haugland", "Iliescu", "Quintanilla",
    "Volkov", "Demir", "Kahananui", "Zavala", "Grabowski", "Benedetti", "de Vries", "Qureshi",
    "Batista", "Subramaniam", "O'Driscoll", "Tapsell", "Rasmussen", "Ben-David", "Okonkwo",
    "St. Clair", "McAllister-Reyes", "Baker", "Rivers", "Fox", "Hart",
]
CITIES = [
    "Bemidji", "Kalispell", "Opelousas", "Wenatchee", "Ypsilanti", "Bozeman", "Natchez",
    "Paducah", "Chillicothe", "Hagerstown", "Keokuk", "Walla Walla", "Eau Claire",
    "Coeur d'Alene", "Hattiesburg", "Muskogee", "Oshkosh", "Pocatello", "Texarkana",
    "Kokomo", "Sandusky", "Altoona", "Valdosta", "Yakima",
]
COUNTIES = ["Beltrami County", "Flathead County", "Natrona County", "Chautauqua County",
            "Androscoggin County", "Tippecanoe County"]
STATES = ["MN", "MT", "LA", "WA", "MI", "Mississippi", "KY", "Ohio", "MD", "Iowa", "WI",
          "Idaho", "GA", "Oklahoma"]
STREETS = ["Tamarack", "Juniper Hollow", "Old Mill", "Cottonwood", "Bayberry", "Kestrel",
           "Quarry", "Settlers", "Wren", "Larkspur", "Foxglove", "Hemlock"]
SUFFIX = ["St", "Street", "Ave", "Rd", "Road", "Ln", "Dr", "Ct", "Way", "Blvd", "Pl", "Terrace"]
RELATIONS = ["my mom", "my dad", "my husband", "my wife", "my grandmother", "my son",
             "my daughter", "my neighbor", "her caregiver", "my brother"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
MON3 = [m[:3] for m in MONTHS]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ORD = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
       "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
       "seventeenth", "eighteenth", "nineteenth", "twentieth", "twenty-first", "twenty-second",
       "twenty-third", "twenty-fourth", "twenty-fifth", "twenty-sixth", "twenty-seventh",
       "twenty-eighth"]
MBI_LETTERS = "ACDEFGHJKMNPQRTUVWXY"

def suffix_ordinal(d):
    return str(d) + ("th" if 10 <= d % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th"))

def vin(r):
    trans = {c: v for c, v in zip("ABCDEFGHJKLMNPRSTUVWXYZ",
                                  [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9])}
    weights = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    while True:
        v = [r.choice(alphabet) for _ in range(17)]
        total = sum((int(c) if c.isdigit() else trans[c]) * w for c, w in zip(v, weights))
        check = total % 11
        v[8] = "X" if check == 10 else str(check)
        return "".join(v)

def luhn_card(r):
    digits = [4] + [r.randrange(10) for _ in range(14)]
    s = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        s += d
    digits.append((10 - s % 10) % 10)
    g = "".join(map(str, digits))
    return f"{g[0:4]} {g[4:8]} {g[8:12]} {g[12:16]}"

def mk(label, text):
    return "{{" + label + "|" + text + "}}"

class Slots:
    def __init__(self, r):
        self.r = r
        self.g = r.choice(GIVEN)
        self.s = r.choice(SURNAMES)
        self.g2 = r.choice([x for x in GIVEN if x != self.g])
        self.s2 = r.choice([x for x in SURNAMES if x != self.s])
        self.w = r.choice(WORD_GIVEN)
        self.city = r.choice(CITIES)
        self.state = r.choice(STATES)

    def __call__(self, name):
        r = self.r
        if name == "first": return mk("NAME", self.g)
        if name == "last": return mk("NAME", self.s)
        if name == "full": return mk("NAME", f"{self.g} {self.s}")
        if name == "full2": return mk("NAME", f"{self.g2} {self.s2}")
        if name == "first2": return mk("NAME", self.g2)
        if name == "last2": return mk("NAME", self.s2)
        if name == "lower_full": return mk("NAME", f"{self.g} {self.s}".lower())
        if name == "lower_first": return mk("NAME", self.g.lower())
        if name == "lastfirst": return mk("NAME", f"{self.s}, {self.g}")
        if name == "LASTFIRST": return mk("NAME", f"{self.s.upper()}, {self.g.upper()}")
        if name == "hl7name": return mk("NAME", f"{self.s.upper()}^{self.g.upper()}")
        if name == "hl7name2": return mk("NAME", f"{self.s.upper()}^{self.g2.upper()}")
        if name == "hl7name3": return mk("NAME", f"{self.s2.upper()}^{self.g2.upper()}")
        if name == "LASTFIRST2": return mk("NAME", f"{self.s.upper()}, {self.g2.upper()}")
        if name == "LASTFIRST3": return mk("NAME", f"{self.s2.upper()}, {self.g2.upper()}")
        if name == "initial": return mk("NAME", f"{self.g[0]}. {self.s}")
        if name == "word": return mk("NAME", self.w)
        if name == "word_full": return mk("NAME", f"{self.w} {self.s}")
        if name == "rel": return r.choice(RELATIONS)
        if name == "city": return mk("LOCATION", self.city)
        if name == "lower_city": return mk("LOCATION", self.city.lower())
        if name == "county": return mk("LOCATION", r.choice(COUNTIES))
        if name == "state": return self.state
        if name == "zip": return mk("LOCATION", f"{r.randrange(10000, 99999)}")
        if name == "zip4": return mk("LOCATION", f"{r.randrange(10000, 99999)}-{r.randrange(1000, 9999)}")
        if name == "street":
            return mk("ADDRESS", f"{r.randrange(2, 9999)} {r.choice(STREETS)} {r.choice(SUFFIX)}")
        if name == "street_apt":
            unit = r.choice(["Apt 3C", "Apt. 12", "Unit 7", "#204", "Suite 110", "Apt 2R"])
            return mk("ADDRESS", f"{r.randrange(2, 9999)} {r.choice(['N', 'S', 'E', 'W'])} {r.choice(STREETS)} {r.choice(SUFFIX)} {unit}")
        if name == "pobox": return mk("ADDRESS", f"{r.choice(['PO Box', 'P.O. Box', 'po box'])} {r.randrange(10, 99999)}")
        if name == "phone":
            a, b, c = r.randrange(201, 989), r.randrange(200, 999), r.randrange(0, 9999)
            f = r.choice([f"({a}) {b}-{c:04}", f"{a}-{b}-{c:04}", f"{a}.{b}.{c:04}", f"{a} {b} {c:04}", f"+1 {a}-{b}-{c:04}", f"{a}{b}{c:04}"])
            return mk("PHONE", f)
        if name == "phone_ext":
            a, b, c = r.randrange(201, 989), r.randrange(200, 999), r.randrange(0, 9999)
            return mk("PHONE", f"{a}-{b}-{c:04} {r.choice(['ext. ', 'x', 'ext '])}{r.randrange(10, 9999)}")
        if name == "fax":
            a, b, c = r.randrange(201, 989), r.randrange(200, 999), r.randrange(0, 9999)
            return mk("FAX", f"({a}) {b}-{c:04}")
        if name == "spelled_phone":
            ds = [r.randrange(10) for _ in range(10)]
            words = [("oh" if d == 0 and r.random() < 0.4 else DIGITS[d]) for d in ds]
            return mk("PHONE", " ".join(words[:3]) + ", " + " ".join(words[3:6]) + ", " + " ".join(words[6:]))
        if name == "spelled_mrn":
            return mk("MRN", " ".join(DIGITS[r.randrange(10)] for _ in range(7)))
        if name == "email":
            u = r.choice([f"{self.g.lower()}.{self.s.lower()}", f"{self.g[0].lower()}{self.s.lower()}{r.randrange(1, 99)}", f"{self.s.lower()}_{r.randrange(100, 999)}"])
            u = re.sub(r"[^a-z0-9._]", "", u)
            return mk("EMAIL", f"{u}@{r.choice(['gmail.com', 'yahoo.com', 'outlook.com', 'icloud.com', 'protonmail.com', 'frontier.net'])}")
        if name == "ssn": return mk("SSN", f"{r.randrange(101, 665)}-{r.randrange(10, 99)}-{r.randrange(1000, 9999)}")
        if name == "ssn4": return mk("SSN", f"{r.randrange(1000, 9999)}")
        if name == "mrn": return mk("MRN", r.choice([f"{r.randrange(10**6, 10**8)}", f"MR{r.randrange(10**5, 10**7)}", f"E{r.randrange(10**6, 10**7)}"]))
        if name == "mbi":
            L = MBI_LETTERS
            m = f"{r.randrange(1, 10)}{r.choice(L)}{r.choice(L + '0123456789')}{r.randrange(10)}-{r.choice(L)}{r.choice(L + '0123456789')}{r.randrange(10)}-{r.choice(L)}{r.choice(L)}{r.randrange(10)}{r.randrange(10)}"
            return mk("HEALTH_PLAN", m if r.random() < 0.5 else m.replace("-", ""))
        if name == "member": return mk("HEALTH_PLAN", f"{r.choice(['XEH', 'BCB', 'UHC', 'K'])}{r.randrange(10**8, 10**9)}")
        if name == "medicaid": return mk("HEALTH_PLAN", f"{r.choice('ABCDEFGH')}{r.choice('ABCDEFGH')}{r.randrange(10**5, 10**6)}{r.choice('ABCD')}")
        if name == "account": return mk("ACCOUNT", r.choice([f"{r.randrange(10**7, 10**9)}", f"AC-{r.randrange(10**5, 10**7)}"]))
        if name == "card": return mk("ACCOUNT", luhn_card(r))
        if name == "license": return mk("LICENSE", f"{r.choice('ABDFGHKLMPSTW')}{r.randrange(100, 999)}-{r.randrange(100, 999)}-{r.randrange(100, 999)}")
        if name == "dea": return mk("LICENSE", f"{r.choice('ABFM')}{r.choice('ABCDFGHKLMPRSTW')}{r.randrange(10**6, 10**7)}")
        if name == "vin": return mk("VEHICLE", vin(r))
        if name == "plate": return mk("VEHICLE", f"{r.randrange(1, 9)}{''.join(r.choice('ABCDEFGHJKLMNPRSTVWXYZ') for _ in range(3))}{r.randrange(100, 999)}")
        if name == "device": return mk("DEVICE", r.choice([f"SN{r.randrange(10**7, 10**9)}", f"{''.join(r.choice('ABCDEFGHJKLMNPRSTVWXYZ') for _ in range(2))}{r.randrange(10**6, 10**7)}"]))
        if name == "ipv4": return mk("IP", f"{r.randrange(11, 223)}.{r.randrange(0, 255)}.{r.randrange(0, 255)}.{r.randrange(1, 254)}")
        if name == "ipv6": return mk("IP", f"2001:db8:{r.randrange(0x10, 0xffff):x}:{r.randrange(0x10, 0xffff):x}::{r.randrange(1, 0xfff):x}")
        if name == "url": return mk("URL", r.choice([f"https://mychart.example.org/visit/{r.randrange(10**5, 10**7)}", f"www.{self.s.lower().replace(' ', '').replace('.', '').replace(chr(39), '')}family.net/{self.g.lower().replace(' ', '')}", f"https://instagram.com/{self.g.lower().replace(' ', '')}_{r.randrange(10, 99)}"]))
        if name == "claim": return mk("ID", r.choice([f"CL{r.randrange(10**7, 10**8)}", f"{r.randrange(10**8, 10**9)}", f"CASE-{r.randrange(10**4, 10**6)}"]))
        if name == "rx": return mk("ID", f"{r.randrange(10**6, 10**7)}")
        if name == "age90": return mk("AGE", str(r.randrange(90, 106)))
        if name == "age_young": return str(r.randrange(18, 89))
        if name == "year": return str(r.randrange(1990, 2027))
        # Dates in every common written form.
        y, m, d = r.randrange(1925, 2027), r.randrange(1, 13), r.randrange(1, 29)
        if name == "dob": return mk("DATE", r.choice([f"{m:02}/{d:02}/{y}", f"{m}/{d}/{y}", f"{m}-{d}-{y}", f"{y}-{m:02}-{d:02}", f"{MONTHS[m-1]} {d}, {y}", f"{d} {MONTHS[m-1]} {y}", f"{m}.{d}.{y % 100:02}"]))
        if name == "date_short": return mk("DATE", r.choice([f"{m}/{d}", f"{MON3[m-1]} {d}", f"{MONTHS[m-1]} {suffix_ordinal(d)}", f"{MON3[m-1]}. {d}", f"{suffix_ordinal(d)} of {MONTHS[m-1]}"]))
        if name == "date_long": return mk("DATE", r.choice([f"{MONTHS[m-1]} {d}, {y}", f"{MON3[m-1]} {d} {y}", f"{d}-{MON3[m-1]}-{y}", f"{y}/{m:02}/{d:02}", f"{MONTHS[m-1]} {y}"]))
        if name == "date_spelled": return mk("DATE", f"{MONTHS[m-1].lower()} {ORD[d-1]}")
        if name == "date_compact": return mk("DATE", f"{y}{m:02}{d:02}")
        raise KeyError(name)

TEMPLATES = [
    # --- SMS shorthand and lower case ---
    "hi its <lower_full>, need refill on lisinopril 10mg pls. dob <dob> thx",
    "this is <lower_first> again. cant make appt on <date_short>, can u call me back <phone>",
    "hey dr <last> said to text u. my bp was 142/91 this am, took 2 tabs",
    "<lower_full> here - new # is <phone>. old one got cut off",
    "u guys billed me twice?? acct <account>. pls fix",
    "running 15 min late for my 2:30, sorry!! -<lower_first>",
    "can <word> pick up my rx? shes my sister. rx# <rx>",
    "i hope someone reads this. my a1c came back 8.1 and im worried. <first>",
    "will the nurse call today? its about <rel> <first2>, she fell again",
    "moved to <street_apt>, <city> <state> <zip>. update pls",
    # --- Portal/chat transcripts ---
    "[10:42] Patient: hi i need my records sent to a new doctor\n[10:43] Agent: Sure, can you confirm your name and date of birth?\n[10:43] Patient: <full>, <dob>\n[10:44] Agent: Thanks. And the fax number for the new office?\n[10:45] Patient: <fax>",
    "Chat started <date_long> 09:14\nVisitor: my portal login wont work\nSupport: What email is on file?\nVisitor: <email>\nSupport: I see it. Your MRN is <mrn>, right?\nVisitor: yes",
    "Patient (<full>): Is Dr. <last2> in on Tuesday?\nFront desk: Dr. <last2> is out until <date_short>. Dr. <full2> can see you.",
    "me: hi, grace period for the bill? \nbilling: yes, 30 days. Your account <account> shows a balance of $45.20.",
    # --- Voicemail transcripts with spelled digits ---
    "Hi, um, this is <full> calling, uh, my number is <spelled_phone>, I'm calling about my mother's appointment on <date_spelled>. Thanks, bye.",
    "Yeah hi it's <first> <last> my date of birth is <dob> and I need to reschedule, you can reach me at <phone>, again that's <phone>.",
    "Hello this message is for Doctor <last>. This is <full2> from the pharmacy, please call us back at <phone_ext> regarding a prescription for <initial>.",
    "Hi it's <first>, calling for <rel>, <full2>, she's <age90> now and she isn't eating. Call me at <spelled_phone>.",
    "Hey, this is <word> from <city>. My chart number is <spelled_mrn>. I'll try again tomorrow.",
    # --- E-mails with headers and signatures ---
    "From: <full> <<email>>\nTo: {{EMAIL|frontdesk@clinic.example}}\nDate: <date_long>\nSubject: Appointment change\n\nHello,\n\nI need to move my appointment on <date_short>. Please call <phone>.\n\nThank you,\n<full>\n<street>\n<city>, <state> <zip4>",
    "---------- Forwarded message ---------\nFrom: <full2> <<email>>\nSent: <date_long>\nSubject: Fwd: my father's labs\n\nPlease see below. My father is <full>, DOB <dob>, MRN <mrn>.\n\n--\n<full2>\nCell <phone>",
    "Subject: insurance update\n\nHi there, my new Medicare number is <mbi> and the secondary is Medicaid <medicaid>. Best,\n<first>",
    "Dear Dr. <last>,\n\nI am writing on behalf of <rel>, <full2> (DOB <dob>), who lives with me at <street_apt> in <city>. Her SSN is <ssn> if the hospital needs it.\n\nSincerely,\n<full>",
    "Hi,\nCan you send the visit summary to <email>? I think the link <url> expired.\nRegards,\n<initial>",
    # --- HL7 v2 ---
    "MSH|^~\\&|LAB|NORTHCLINIC|EHR|NORTHCLINIC|<date_compact>0830||ORU^R01|MSG004471|P|2.5\nPID|1||<mrn>^^^NC^MR||<hl7name>||<date_compact>|F|||<street>^^<city>^<state>^<zip>||<phone>",
    "PID|1||<mrn>^^^HOSP^MR~<ssn>^^^SSA^SS||<hl7name>^M||<date_compact>|M\nNK1|1|<hl7name2>|SPO|||<phone>\nPV1|1|O|CLINIC^2^1||||^<hl7name3>",
    "OBX|1|NM|4548-4^Hemoglobin A1c^LN||7.4|%|4.0-5.6|H|||F|||<date_compact>\nNTE|1||Result reviewed with patient <full> by phone <phone>",
    # --- JSON payloads ---
    "{\"patient\": {\"name\": \"<full>\", \"dob\": \"<dob>\", \"mrn\": \"<mrn>\", \"phone\": \"<phone>\"}, \"reason\": \"refill\", \"dose_mg\": 20}",
    "{\"from\": \"<email>\", \"body\": \"hi this is <first> my new address is <street>, <city>\", \"channel\": \"web\", \"ip\": \"<ipv4>\"}",
    "{\"event\": \"login\", \"display_name\": \"<lower_full>\", \"client_ip\": \"<ipv6>\", \"ts\": \"{{DATE|2026-03-14}}T10:22:00Z\"}",
    "{\"claim\": {\"id\": \"<claim>\", \"member_id\": \"<member>\", \"subscriber\": \"<lastfirst>\", \"service_date\": \"<date_long>\", \"cpt\": \"99213\", \"icd10\": \"E11.9\"}}",
    # --- Forms ---
    "Patient Name: <full>\nDate of Birth: <dob>\nAddress: <street_apt>\nCity: <city>\nState: <state>\nZIP: <zip>\nPhone: <phone>\nEmergency Contact: <full2> (<rel>) <phone>",
    "NAME: <LASTFIRST>\nDOB: <dob>\nSSN: <ssn>\nINSURANCE ID: <member>\nPCP: Dr. <last2>\nALLERGIES: penicillin",
    "Caregiver: <full2>\nRelationship: daughter\nPatient: <full>, age <age90>\nMailing: <pobox>, <city>, <state> <zip>",
    "Driver license: <license>   Vehicle: 2019 Subaru, VIN <vin>, plate <plate>",
    "Device: insulin pump, serial <device>; CGM transmitter ID <device>\nPrescriber DEA: <dea>",
    # --- Fax cover ---
    "FAX COVER SHEET\nTo: Records Dept   Fax: <fax>\nFrom: <full2>, RN   Phone: <phone>\nDate: <date_long>\nRe: <LASTFIRST>  DOB <dob>\nPages: 4 (including cover)",
    # --- Letters and notes ---
    "Phone note <date_short>: Spoke with <rel> <full2> who states pt <initial> has had fevers since <date_short>. Advised ED if temp > 103. Callback <phone>.",
    "Pt is a <age90> yo F from <city>, lives alone at <street>. Son <first2> visits weekly. Follows with Dr. <last2> for Parkinson's.",
    "<full> was seen today for follow-up of her diabetes. She is <age_young> years old. Next visit <date_long>.",
    "Letter of medical necessity for <full> (DOB <dob>, Medicaid <medicaid>): the patient requires a hospital bed at home, <street>, <county>.",
    # --- Caregivers and names that are words ---
    "Hi, I'm <word_full>'s husband. <word> has her appointment on <date_short> but we need a ride. Our number is <phone>.",
    "My mom <word> <last> is <age90> and still drives. Her Medicare is <mbi>.",
    "Rose water didn't help the rash. I will try the cream. -- <full>",
    "Please tell <word> (my aide) she can pick up the meds. I hope that's ok. Will call Monday. <first>",
    "<lastfirst> called re: claim <claim>. Said EOB shows wrong date of service (<date_short> not <date_short>).",
    # --- Mixed identifiers ---
    "Paid with card <card>, account <account>. Receipt to <email>.",
    "Our Wi-Fi logged your visit from <ipv4> and <ipv6>. Portal link: <url>",
    "SSN last 4 <ssn4>, DOB <dob>, zip <zip> - that's all I have for <rel>.",
    "my social is <ssn> and member id <member>. i live in <lower_city> near the walmart",
    "Ms. <last> (<initial>) left a VM on <date_long>: new cell <phone>, home <phone>.",
    "Re: <first> <last>, MRN <mrn>. Discharge <date_long>. Follow up with Dr. <last2> in <city> in 2 weeks. BP 128/76, A1c 6.9, metformin 500 mg BID.",
    "Born <date_long> in <city>. Turned <age90> last month. Daughter <full2> is POA, reach her at <email> or <phone_ext>.",
]

def render(template, r):
    slots = Slots(r)
    return re.sub(r"<([a-zA-Z0-9_]+)>", lambda m: slots(m.group(1)) if m.group(1) in SLOT_NAMES else m.group(0), template)

SLOT_NAMES = {
    "first", "last", "full", "full2", "first2", "last2", "lower_full", "lower_first", "lastfirst",
    "LASTFIRST", "LASTFIRST2", "LASTFIRST3", "hl7name", "hl7name2", "hl7name3", "initial", "word", "word_full", "rel", "city", "lower_city", "county", "state",
    "zip", "zip4", "street", "street_apt", "pobox", "phone", "phone_ext", "fax", "spelled_phone",
    "spelled_mrn", "email", "ssn", "ssn4", "mrn", "mbi", "member", "medicaid", "account", "card",
    "license", "dea", "vin", "plate", "device", "ipv4", "ipv6", "url", "claim", "rx", "age90",
    "age_young", "year", "dob", "date_short", "date_long", "date_spelled", "date_compact",
}

MARK = re.compile(r"\{\{([A-Z_]+)\|(.*?)\}\}", re.S)

def to_record(rid, kind, marked):
    text, spans, pos = [], [], 0
    chars = 0
    for m in MARK.finditer(marked):
        before = marked[pos:m.start()]
        text.append(before)
        chars += len(before)
        label, inner = m.group(1), m.group(2)
        spans.append({"start": chars, "end": chars + len(inner), "label": label, "text": inner})
        text.append(inner)
        chars += len(inner)
        pos = m.end()
    text.append(marked[pos:])
    t = "".join(text)
    for s in spans:
        assert t[s["start"]:s["end"]] == s["text"]
    assert "{{" not in t
    return {"id": rid, "kind": kind, "text": t, "spans": spans}

def kind_of(i):
    bounds = [(10, "sms"), (14, "chat"), (19, "voicemail"), (25, "email"), (28, "hl7"),
              (32, "json"), (37, "form"), (38, "fax"), (42, "note"), (47, "caregiver")]
    for b, k in bounds:
        if i < b:
            return k
    return "mixed"

def main():
    out = sys.stdout
    n = 0
    for i, t in enumerate(TEMPLATES):
        for k in range(3):
            r = random.Random(1000 * i + k + 77)
            marked = render(t, r)
            n += 1
            rec = to_record(f"H-{n:04}", kind_of(i), marked)
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")

if __name__ == "__main__":
    main()
