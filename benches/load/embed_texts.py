#!/usr/bin/env python3
"""Write N distinct synthetic English sentences, one per line (stdlib only).

Every sentence is MIN..MAX words (default 12..18, so ~15 words and ~20
MiniLM tokens) drawn from a fixed vocabulary of common words, capitalized,
ending with a period. The same seed gives the same file, so the HTTP load
generator, the in-process baseline and the Python figure all embed the
same texts.

    benches/load/embed_texts.py N OUT [--seed 1] [--min-words 12] [--max-words 18]
"""

import argparse
import random

WORDS = """
the of and to in is was for that on with as by at from this it be are or
an have not which one has but were all they their had there been more
when can its who will also than other into some time only new after two
first would these may any most over such like where then many about
people year work way day man world life part place case week company
system program question government number night point home water room
mother area money story fact month lot right study book eye job word
business issue side kind head house service friend father power hour
game line end member law car city community name president team minute
idea kid body information back parent face others level office door
health person art war history party result change morning reason
research girl guy moment air teacher force education foot boy age policy
process music market sense nation plan college interest death experience
effect use class control care field development role effort rate heart
drug show leader light voice wife police mind price report decision son
view relationship town road arm difference value building action model
season society tax director position player record paper space ground
form event official matter center couple site project activity star
table need court oil situation cost industry figure street image phone
data picture practice piece land product doctor wall patient worker news
test movie north love support technology step baby computer type
attention film tree source organization hair window evidence population
site training chance bank garden river mountain ocean forest machine
learning cache server request answer memory disk network signal engine
quickly slowly carefully always never often sometimes usually rarely
good great small large long little young old big high different local
important early hard public bad real best better sure free strong whole
clear recent certain personal open red blue green dark simple full
runs makes takes gives finds keeps tells brings builds reads writes
opens closes moves shows plays holds turns starts leaves learns grows
""".split()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("n", type=int)
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--min-words", type=int, default=12)
    p.add_argument("--max-words", type=int, default=18)
    a = p.parse_args()
    rng = random.Random(a.seed)
    seen = set()
    with open(a.out, "w") as f:
        while len(seen) < a.n:
            k = rng.randint(a.min_words, a.max_words)
            s = " ".join(rng.choice(WORDS) for _ in range(k))
            s = s[0].upper() + s[1:] + "."
            if s in seen:
                continue
            seen.add(s)
            f.write(s + "\n")


if __name__ == "__main__":
    main()
