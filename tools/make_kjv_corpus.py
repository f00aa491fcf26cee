#!/usr/bin/env python3
"""Builds a CPU-scale language-modelling corpus from the King James Bible.

Reads the text of Debian's bible-kjv-text through its `bible` program (or a
file of "BookC:V text" lines given with --input) and writes
wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens, the WikiText-2
layout the worker's language-model task reads (ARCHITECTURE.md section 6):
one verse a line, words and punctuation separated by spaces, words outside
the vocabulary replaced by <unk>.

The split is fixed: chapters are numbered in Bible order, every 20th chapter
(0, 20, 40, ...) goes to test, the one ten after it to valid, the rest to
train (about 90/5/5); with --train-every K only every K-th of the train
chapters is kept (a smaller corpus that a CPU can sweep). Whole chapters
keep neighbouring verses out of different splits. The vocabulary is the --vocab most frequent train tokens
(ties broken alphabetically), <unk> included; valid and test are mapped with
it. Deterministic: the same input gives byte-identical files.

  make_kjv_corpus.py --out DIR [--vocab 10000] [--train-every 1] [--input FILE]
"""

import argparse
import collections
import os
import re
import subprocess
import sys

VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+)\s+(.*)$")
TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[0-9]+|[^\sA-Za-z0-9]")


def read_verses(path):
    if path:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        env = dict(os.environ, COLUMNS="100000")
        try:
            text = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, env=env,
                                  capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit(f"make_kjv_corpus: cannot run `bible` (Debian package bible-kjv): {e}")
    verses = []
    for line in text.splitlines():
        m = VERSE.match(line.strip())
        if m:
            verses.append((m.group(1), int(m.group(2)), m.group(4)))
    if len(verses) < 1000:
        sys.exit(f"make_kjv_corpus: read only {len(verses)} verses; expected the whole Bible")
    return verses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for wiki.{train,valid,test}.tokens")
    ap.add_argument("--vocab", type=int, default=10000, help="vocabulary size, <unk> included")
    ap.add_argument("--train-every", type=int, default=1,
                    help="keep every K-th train chapter (1: all of them)")
    ap.add_argument("--input", help="'BookC:V text' lines instead of running `bible`")
    args = ap.parse_args()
    if args.vocab < 2:
        sys.exit("make_kjv_corpus: --vocab must be at least 2")
    if args.train_every < 1:
        sys.exit("make_kjv_corpus: --train-every must be at least 1")

    splits = {"train": [], "valid": [], "test": []}
    chapter_index = -1
    train_chapter = -1
    last = None
    for book, chapter, text in read_verses(args.input):
        if (book, chapter) != last:
            chapter_index += 1
            last = (book, chapter)
            if chapter_index % 10 != 0:
                train_chapter += 1
        split = "test" if chapter_index % 20 == 0 else "valid" if chapter_index % 20 == 10 else "train"
        if split == "train" and train_chapter % args.train_every != 0:
            continue
        splits[split].append(TOKEN.findall(text))

    counts = collections.Counter(t for verse in splits["train"] for t in verse)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = {w for w, _ in ranked[: args.vocab - 1]}

    os.makedirs(args.out, exist_ok=True)
    for name, verses in splits.items():
        path = os.path.join(args.out, f"wiki.{name}.tokens")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for verse in verses:
                f.write(" ".join(t if t in vocab else "<unk>" for t in verse) + "\n")
        os.replace(tmp, path)
        tokens = sum(len(v) for v in verses)
        print(f"{path}: {len(verses)} verses, {tokens} tokens")
    unk = sum(1 for v in splits["train"] for t in v if t not in vocab)
    total = sum(len(v) for v in splits["train"])
    print(f"vocabulary {len(vocab) + 1} (with <unk>); train <unk> rate {100.0 * unk / total:.2f}%")


if __name__ == "__main__":
    main()
