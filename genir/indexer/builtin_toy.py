"""``builtin:toy``: a small collection written by hand for genir, with queries and judgements.

24 one-sentence documents on distinct topics, one training query per document (qrels ``train``)
and 12 test queries (qrels ``test``); no external source. The cheap regression conditions
(``benchmarks/conditions/toy.yaml``) run every method on it end to end in seconds, and it is a
collection to try genir on without data: ``genir index -m bm25 -c builtin:toy -o idx``.

:func:`write_toy` writes it in BEIR layout; :func:`genir.indexer.builtin_corpus.builtin_folder`
keeps one copy per version of this text in genir's cache.
"""

from __future__ import annotations

import json
from pathlib import Path

DOCS = [
    {"_id": "cats", "title": "Cats",
     "text": "Domestic cats purr, sleep most of the day and hunt mice at night."},
    {"_id": "dogs", "title": "Dogs",
     "text": "Dogs are loyal companions that bark at strangers and love to fetch balls."},
    {"_id": "json", "title": "Parsing JSON",
     "text": "The json module turns JSON text into Python dictionaries and lists."},
    {"_id": "hashing", "title": "Hashing bytes",
     "text": "hashlib computes SHA-256 and MD5 digests of byte strings."},
    {"_id": "subprocess", "title": "Running commands",
     "text": "subprocess runs an external command and captures its standard output."},
    {"_id": "zebras", "title": "Zebras",
     "text": "Zebras are African horses with black and white stripes."},
    {"_id": "volcano", "title": "Volcanoes",
     "text": "A volcano erupts when magma, gas and ash escape from the earth's crust."},
    {"_id": "photosynthesis", "title": "Photosynthesis",
     "text": "Plants turn sunlight, water and carbon dioxide into sugar and oxygen."},
    {"_id": "bread", "title": "Baking bread",
     "text": "Flour, water, yeast and salt are kneaded, proofed and baked into bread."},
    {"_id": "chess", "title": "Chess openings",
     "text": "The Sicilian defence answers the king's pawn opening with c5."},
    {"_id": "tides", "title": "Ocean tides",
     "text": "The moon's gravity pulls the oceans and raises the tides twice a day."},
    {"_id": "vaccines", "title": "Vaccines",
     "text": "A vaccine trains the immune system to recognise a virus before infection."},
    {"_id": "bicycles", "title": "Bicycle gears",
     "text": "Derailleur gears move the chain between sprockets to change the ratio."},
    {"_id": "coffee", "title": "Brewing coffee",
     "text": "Espresso forces hot water through finely ground coffee under pressure."},
    {"_id": "glaciers", "title": "Glaciers",
     "text": "Glaciers are rivers of ice that carve valleys as they slowly flow downhill."},
    {"_id": "bees", "title": "Honey bees",
     "text": "Honey bees collect nectar, pollinate flowers and make honey in hives."},
    {"_id": "sorting", "title": "Sorting lists",
     "text": "sorted returns a new list; list.sort orders a list in place with a key function."},
    {"_id": "regex", "title": "Regular expressions",
     "text": "The re module matches patterns in strings with regular expressions."},
    {"_id": "rainbows", "title": "Rainbows",
     "text": "Sunlight refracted and reflected in raindrops splits into a rainbow of colours."},
    {"_id": "pyramids", "title": "Egyptian pyramids",
     "text": "The pyramids of Giza were built as tombs for the pharaohs."},
    {"_id": "sleep", "title": "Sleep cycles",
     "text": "During REM sleep the brain is active and most vivid dreams happen."},
    {"_id": "compost", "title": "Composting",
     "text": "Compost turns kitchen scraps and leaves into soil with the help of worms."},
    {"_id": "earthquake", "title": "Earthquakes",
     "text": "Earthquakes happen when tectonic plates slip along a fault."},
    {"_id": "threads", "title": "Threads in Python",
     "text": "threading runs functions concurrently; the GIL lets one thread run Python at a time."},
]
QUERIES = [
    {"_id": "q-cats", "text": "why do cats purr"},
    {"_id": "q-dogs", "text": "loyal pets that fetch"},
    {"_id": "q-json", "text": "load json into a dict"},
    {"_id": "q-hashing", "text": "sha256 digest of bytes"},
    {"_id": "q-subprocess", "text": "capture output of a shell command"},
    {"_id": "q-zebras", "text": "striped african horses"},
    {"_id": "q-volcano", "text": "magma and ash eruption"},
    {"_id": "q-photosynthesis", "text": "how plants make oxygen"},
    {"_id": "q-bread", "text": "knead dough with yeast"},
    {"_id": "q-chess", "text": "c5 against e4"},
    {"_id": "q-tides", "text": "moon pulls the sea"},
    {"_id": "q-vaccines", "text": "immune system training against viruses"},
    {"_id": "q-bicycles", "text": "changing gears on a bike"},
    {"_id": "q-coffee", "text": "make espresso"},
    {"_id": "q-glaciers", "text": "rivers of ice"},
    {"_id": "q-bees", "text": "insects that make honey"},
    {"_id": "q-sorting", "text": "order a list with a key"},
    {"_id": "q-regex", "text": "pattern matching in strings"},
    {"_id": "q-rainbows", "text": "colours after rain"},
    {"_id": "q-pyramids", "text": "tombs of the pharaohs"},
    {"_id": "q-sleep", "text": "dreams during rem"},
    {"_id": "q-compost", "text": "turn scraps into soil"},
    {"_id": "q-earthquake", "text": "plates slipping on a fault"},
    {"_id": "q-threads", "text": "concurrency and the gil"},
    {"_id": "q-t1", "text": "what makes a volcano erupt"},
    {"_id": "q-t2", "text": "python dictionary from json text"},
    {"_id": "q-t3", "text": "sicilian defence"},
    {"_id": "q-t4", "text": "why are there two tides a day"},
    {"_id": "q-t5", "text": "how is bread baked"},
    {"_id": "q-t6", "text": "pollinating insects in hives"},
    {"_id": "q-t7", "text": "regular expression module"},
    {"_id": "q-t8", "text": "what causes earthquakes"},
    {"_id": "q-t9", "text": "md5 hash of a byte string"},
    {"_id": "q-t10", "text": "run an external program"},
    {"_id": "q-t11", "text": "how glaciers carve valleys"},
    {"_id": "q-t12", "text": "light split by raindrops"},
]
QRELS = {  # split -> (query id, document id, grade)
    "train": [
        ("q-cats", "cats", 1),
        ("q-dogs", "dogs", 1),
        ("q-json", "json", 1),
        ("q-hashing", "hashing", 1),
        ("q-subprocess", "subprocess", 1),
        ("q-zebras", "zebras", 1),
        ("q-volcano", "volcano", 1),
        ("q-photosynthesis", "photosynthesis", 1),
        ("q-bread", "bread", 1),
        ("q-chess", "chess", 1),
        ("q-tides", "tides", 1),
        ("q-vaccines", "vaccines", 1),
        ("q-bicycles", "bicycles", 1),
        ("q-coffee", "coffee", 1),
        ("q-glaciers", "glaciers", 1),
        ("q-bees", "bees", 1),
        ("q-sorting", "sorting", 1),
        ("q-regex", "regex", 1),
        ("q-rainbows", "rainbows", 1),
        ("q-pyramids", "pyramids", 1),
        ("q-sleep", "sleep", 1),
        ("q-compost", "compost", 1),
        ("q-earthquake", "earthquake", 1),
        ("q-threads", "threads", 1),
    ],
    "test": [
        ("q-t1", "volcano", 1),
        ("q-t2", "json", 1),
        ("q-t3", "chess", 1),
        ("q-t4", "tides", 1),
        ("q-t5", "bread", 1),
        ("q-t6", "bees", 1),
        ("q-t7", "regex", 1),
        ("q-t8", "earthquake", 1),
        ("q-t9", "hashing", 1),
        ("q-t10", "subprocess", 1),
        ("q-t11", "glaciers", 1),
        ("q-t12", "rainbows", 1),
    ],
}


def write_toy(folder: Path) -> None:
    """Write the collection into ``folder`` (created, empty or new) as ``corpus.jsonl``,
    ``queries.jsonl`` and ``qrels/<split>.tsv``."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES), encoding="utf-8")
    for split, rows in QRELS.items():
        lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{g}" for q, d, g in rows)]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
