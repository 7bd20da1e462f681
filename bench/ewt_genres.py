"""Write a genre-classification data set from Universal Dependencies English EWT: one LABEL<TAB>TEXT line per
sentence, the label the genre that prefixes its `# sent_id` (answers, email, newsgroup, reviews, weblog), the
text its `# text` comment. Usage:
    python bench/ewt_genres.py ../shared/corpora/ud-ewt/en_ewt-ud-train.conllu train.tsv
"""
import sys


def genres(path):
    sent_id = text = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# sent_id = "):
                sent_id = line[len("# sent_id = "):]
            elif line.startswith("# text = "):
                text = line[len("# text = "):]
            elif not line and sent_id and text:
                yield sent_id.split("-", 1)[0], " ".join(text.split())
                sent_id = text = None


if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    with open(dst, "w", encoding="utf-8") as out:
        for label, text in genres(src):
            out.write(f"{label}\t{text}\n")
