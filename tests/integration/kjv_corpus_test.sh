#!/usr/bin/env bash
# The kjv-transformer corpus that deploy/install-deps.sh installed is what
# tools/make_kjv_corpus.py makes from Debian's bible-kjv-text, byte for
# byte, and holds three non-empty splits in the WikiText-2 layout.
#   kjv_corpus_test.sh SOURCE_DIR
set -euo pipefail
src=$1
installed=/usr/local/share/madam/kjv-lm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[[ -s "$installed/wiki.train.tokens" ]] ||
  { echo "no corpus at $installed: run deploy/install-deps.sh" >&2; exit 1; }
python3 "$src/tools/make_kjv_corpus.py" --out "$work" --vocab 5000 --train-every 4 >/dev/null
for split in train valid test; do
  cmp "$installed/wiki.$split.tokens" "$work/wiki.$split.tokens" ||
    { echo "$split differs from a fresh conversion" >&2; exit 1; }
done
read -r train_lines train_words _ < <(wc -lw "$installed/wiki.train.tokens")
read -r valid_lines _ < <(wc -l "$installed/wiki.valid.tokens")
read -r test_lines _ < <(wc -l "$installed/wiki.test.tokens")
((train_lines > 5000 && train_words > 150000 && valid_lines > 1000 && test_lines > 1000)) ||
  { echo "implausible split sizes: $train_lines/$valid_lines/$test_lines verses" >&2; exit 1; }
vocab=$(cat "$installed"/wiki.train.tokens | tr ' ' '\n' | grep -v '^$' | sort -u | wc -l)
((vocab <= 5000)) || { echo "train vocabulary $vocab is over the cap of 5000" >&2; exit 1; }
echo "kjv corpus: $train_lines/$valid_lines/$test_lines verses, $train_words train tokens, vocabulary $vocab"
