"""Writes the test suite's text fixtures (play.txt, news.train.txt, news.valid.txt) from a seeded grammar.

The texts are generated, not copied from any corpus: a small grammar of English-like sentences, with
enough structure for a model to learn in a few steps and enough variety for held-out text to contain
unseen tokens. Run `python tests/data/make_fixtures.py` to rewrite them; the output is byte-identical on
every Python 3 (random.Random with a fixed seed).

- play.txt (char level, about 120 KB): a play's dialogue, SPEAKER: then two to five lines, a blank line
  between speeches, like Tiny Shakespeare's layout.
- news.train.txt, news.valid.txt (word level, about 40 and 8 KB): lower-cased newswire-like sentences,
  one per line, numbers as N and rare words as <unk>, like the Penn Treebank's layout. The valid file
  uses some words that the train file never does.
"""
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

SPEAKERS = ["ROMEO", "JULIET", "KING HENRY", "QUEEN MARGARET", "FIRST CITIZEN", "SECOND CITIZEN",
            "MENENIUS", "LADY ANNE", "GLOUCESTER", "NURSE", "FRIAR LAURENCE", "BENVOLIO", "PROSPERO"]
NOUNS = ["lord", "king", "heart", "night", "crown", "sword", "friend", "father", "mother", "son", "day",
         "love", "grace", "honour", "blood", "field", "house", "gate", "tongue", "eye", "hand", "soul",
         "city", "people", "war", "peace", "queen", "duke", "letter", "death", "life", "sun", "moon"]
ADJS = ["good", "noble", "sweet", "gentle", "cruel", "fair", "old", "young", "proud", "poor", "dear",
        "true", "false", "dark", "bright", "cold", "bold", "wretched", "royal", "holy"]
VERBS = ["love", "hate", "fear", "know", "see", "hear", "serve", "follow", "leave", "keep", "tell",
         "bear", "kill", "save", "find", "seek", "bless", "curse", "pardon", "remember"]
PRONOUNS = ["I", "you", "we", "they", "thou", "he", "she"]
DETS = ["the", "my", "thy", "his", "her", "our", "your", "this", "that", "a"]
PREPS = ["of", "in", "with", "to", "for", "from", "upon", "against", "by", "before"]
OPENERS = ["O", "Ay", "Nay", "Alas", "Come", "Good", "Peace", "Why", "Well", "Now"]


def play_line(r: random.Random) -> str:
    np1 = f"{r.choice(DETS)} {r.choice(ADJS)} {r.choice(NOUNS)}" if r.random() < 0.5 else \
        f"{r.choice(DETS)} {r.choice(NOUNS)}"
    np2 = f"{r.choice(DETS)} {r.choice(NOUNS)}"
    kind = r.random()
    if kind < 0.35:
        s = f"{r.choice(PRONOUNS)} {r.choice(VERBS)} {np1} {r.choice(PREPS)} {np2}"
    elif kind < 0.55:
        s = f"{r.choice(OPENERS)}, {np1}, {r.choice(PRONOUNS).lower()} {r.choice(VERBS)} {np2}"
    elif kind < 0.75:
        s = f"what {r.choice(NOUNS)} is {np1}, that {r.choice(PRONOUNS).lower()} should {r.choice(VERBS)} it"
    elif kind < 0.9:
        s = f"{np1} shall {r.choice(VERBS)} {np2} {r.choice(PREPS)} {r.choice(DETS)} {r.choice(NOUNS)}"
    else:
        s = f"'tis {r.choice(ADJS)}; {r.choice(PRONOUNS).lower()} {r.choice(VERBS)} {np2}"
    s = s[0].upper() + s[1:]
    return s + r.choice([",", ".", ".", ";", "!", "?", ":"])


def play(r: random.Random, size: int) -> str:
    out, n = [], 0
    while n < size:
        speech = f"{r.choice(SPEAKERS)}:\n" + "\n".join(play_line(r) for _ in range(r.randint(2, 5))) + "\n\n"
        out.append(speech)
        n += len(speech)
    return "".join(out)


COMPANIES = ["the company", "the bank", "the firm", "the maker", "the group", "the airline", "the unit",
             "the concern", "the utility", "the insurer"]
SUBJECTS = COMPANIES + ["analysts", "investors", "traders", "officials", "the government", "the board"]
NEWS_VERBS = ["said", "reported", "expects", "estimated", "announced", "noted", "added"]
MEASURES = ["net income", "revenue", "sales", "profit", "earnings", "shares", "prices", "costs", "debt",
            "volume", "orders", "spending"]
MOVES = ["rose", "fell", "climbed", "dropped", "increased", "declined", "jumped", "slipped"]
PERIODS = ["in the third quarter", "last year", "in october", "this month", "in the period",
           "a year earlier", "in the first half", "since june"]
TOPICS = ["the market", "the economy", "interest rates", "the dollar", "the stock", "the bond market",
          "the industry", "new york", "the proposal", "the agreement"]
RARE = ["<unk>"]
VALID_ONLY = ["shipbuilder", "brokerage", "conglomerate", "refinery", "newsprint", "semiconductor"]


def news_sentence(r: random.Random, valid: bool) -> str:
    subj = r.choice(SUBJECTS)
    if valid and r.random() < 0.3:
        subj = f"the {r.choice(VALID_ONLY)}"
    kind = r.random()
    if kind < 0.4:
        s = (f"{subj} {r.choice(NEWS_VERBS)} its {r.choice(MEASURES)} {r.choice(MOVES)} N % to $ N million "
             f"{r.choice(PERIODS)}")
    elif kind < 0.6:
        s = f"{r.choice(MEASURES)} {r.choice(MOVES)} {r.choice(PERIODS)} as {r.choice(TOPICS)} {r.choice(MOVES)}"
    elif kind < 0.7:
        s = f"{subj} {r.choice(NEWS_VERBS)} that {r.choice(TOPICS)} will remain <unk> {r.choice(PERIODS)}"
    elif kind < 0.8:
        s = f"{subj} said it expects {r.choice(['higher', 'lower'])} {r.choice(MEASURES)} {r.choice(PERIODS)}"
    else:
        s = f"mr. <unk> , a spokesman for {r.choice(COMPANIES)} , {r.choice(NEWS_VERBS)} {r.choice(TOPICS)} " \
            f"{r.choice(MOVES)} N points"
    return f" {s} \n"


def news(r: random.Random, size: int, valid: bool) -> str:
    out, n = [], 0
    while n < size:
        line = news_sentence(r, valid)
        out.append(line)
        n += len(line)
    return "".join(out)


def main():
    (HERE / "play.txt").write_text(play(random.Random(1601), 120_000), encoding="utf-8", newline="")
    (HERE / "news.train.txt").write_text(news(random.Random(1989), 40_000, False), encoding="utf-8", newline="")
    (HERE / "news.valid.txt").write_text(news(random.Random(1990), 8_000, True), encoding="utf-8", newline="")


if __name__ == "__main__":
    main()
