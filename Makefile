# charlm: the two set-up commands of the README (make demo, make test) and the developer targets.
#
# Where it installs: inside an active virtual environment (or conda environment) into that one;
# otherwise into ./.venv, which the first target creates (system Pythons on Debian and Ubuntu refuse a
# plain `pip install`). PYTHON=/path/to/python uses that interpreter and installs into its environment.
ifeq ($(origin PYTHON),undefined)
  ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
    PYTHON := python
  else
    PYTHON := .venv/bin/python
    VENV := .venv/bin/python
  endif
endif
CHARLM = $(PYTHON) -m charlm
SHARED ?= ../shared
DEMO_OUT ?= demo
DEMO_SECONDS ?= 180

.PHONY: install demo test bench shakespeare ptb names names-gen g2p ewt clean distclean

.venv/bin/python:
	python3 -m venv .venv || { echo "make: python3 -m venv failed; on Debian/Ubuntu: apt install python3-venv" >&2; exit 1; }
	.venv/bin/python -m pip install -q --upgrade pip

# charlm and its run-time dependencies only (pip install .).
install: $(VENV)
	$(PYTHON) -m pip install -q .

# Train a small model on the built-in corpus (Python's own reference docs) for a few minutes, then
# print samples and the validation perplexity.
demo: install
	mkdir -p $(DEMO_OUT)
	$(CHARLM) demo --out $(DEMO_OUT)/model.safetensors --time-budget $(DEMO_SECONDS)

# The test suite with the test extra: pytest, hypothesis, matplotlib and PyTorch 2.13.0 (CPU) for the
# cross-checks. The real-corpus tests run when ../shared/corpora (or $$CHARLM_SHARED_CORPORA) is there.
test: $(VENV)
	$(PYTHON) -m pip install -q '.[test]'
	$(PYTHON) -m pytest -q

# PyTorch beside charlm on the same shapes, same machine, same run (needs the PyTorch baseline script
# from the shared folder: TORCH_BASELINE=path/to/torch_baseline.py).
TORCH_BASELINE ?= $(SHARED)/bench/torch_baseline.py
bench: $(VENV)
	$(PYTHON) -m pip install -q '.[torch]'
	$(PYTHON) bench/compare_torch.py --torch-baseline $(TORCH_BASELINE)

# Recipes: train, then print the figures. DATA and OUT may be given: make ptb DATA=dir OUT=dir

# Tiny Shakespeare: first 90 % train, last 10 % validation; 14 minutes of training plus the exact
# validation pass, within 15 minutes on a 2-core machine. DATA=path/to/input.txt
SHAKESPEARE_TRAIN = --hidden 384 --dropout 0.25 --lr 0.002 --lr-schedule cosine --valid-every 600 --time-budget 840
shakespeare: DATA ?= $(SHARED)/corpora/tinyshakespeare/input.txt
shakespeare: OUT ?= out/shakespeare
shakespeare: install
	mkdir -p $(OUT)
	$(CHARLM) train $(DATA) --valid-fraction 0.1 $(SHAKESPEARE_TRAIN) -o $(OUT)/model.safetensors

# Penn Treebank, word level: trains on ptb.train.txt, keeps the best model on ptb.valid.txt, then reports
# valid and test perplexity (test only when DATA holds ptb.test.txt); within 60 minutes on a 2-core
# machine. DATA=folder holding ptb.train.txt, ptb.valid.txt, ptb.test.txt
PTB_TRAIN = --level word --hidden 400 --layers 2 --tie-weights --dropout 0.4 --locked-dropout \
            --embed-dropout 0.1 --batch-size 32 --seq-len 35 --lr 0.002 --lr-schedule cosine --time-budget 3360
ptb: DATA ?= $(SHARED)/corpora/ptb
ptb: OUT ?= out/ptb
ptb: install
	mkdir -p $(OUT)
	$(CHARLM) train $(DATA)/ptb.train.txt --valid $(DATA)/ptb.valid.txt $(PTB_TRAIN) -o $(OUT)/model.safetensors
	$(CHARLM) perplexity -q -m $(OUT)/model.safetensors $(DATA)/ptb.valid.txt
	@if [ -f $(DATA)/ptb.test.txt ]; then $(CHARLM) perplexity -q -m $(OUT)/model.safetensors $(DATA)/ptb.test.txt; \
	else echo "no ptb.test.txt in $(DATA): test perplexity not measured"; fi

# Surnames -> language of origin (18 labels), char level: two classifiers trained side by side for 290 s,
# one thread each (the 2 cores), the same network with label smoothing 0.1 (the more accurate) and with
# each label's loss weighed by the root of its inverse frequency (the better on small labels), each kept
# at its best validation macro-F1; evaluates their ensemble (-m A -m B: the mean of the probabilities) on
# DATA/valid.tsv and, when present, DATA/test.tsv. DATA=folder holding train.tsv, valid.tsv (test.tsv)
NAMES_TRAIN = --cell gru --hidden 256 --embed 128 --bidirectional --pooling max --dropout 0.3 --embed-dropout 0.1 \
              --lr 0.003 --lr-schedule cosine --valid-every 300 --select macro_f1 --time-budget 290 --threads 1
NAMES_MODELS = -m $(OUT)/smoothed.safetensors -m $(OUT)/weighted.safetensors
names: DATA ?= $(SHARED)/corpora/names
names: OUT ?= out/names
names: install
	mkdir -p $(OUT)
	$(CHARLM) classify train $(DATA)/train.tsv --valid $(DATA)/valid.tsv $(NAMES_TRAIN) --label-smoothing 0.1 \
	-o $(OUT)/smoothed.safetensors -q & smoothed=$$!; \
	$(CHARLM) classify train $(DATA)/train.tsv --valid $(DATA)/valid.tsv $(NAMES_TRAIN) --class-weights sqrt \
	-o $(OUT)/weighted.safetensors; weighted=$$?; wait $$smoothed && [ $$weighted -eq 0 ]
	$(CHARLM) classify evaluate $(NAMES_MODELS) $(DATA)/valid.tsv
	@if [ -f $(DATA)/test.tsv ]; then $(CHARLM) classify evaluate $(NAMES_MODELS) $(DATA)/test.tsv; \
	else echo "no test.tsv in $(DATA): test figures not measured"; fi

# Names generated by language (one-to-many): a language model conditioned on the label, 10 epochs on one
# thread (bit for bit the same model on any machine; about 55 s on an idle 2-core one), the lines drawn so
# that label c gets a share ∝ count_c^0.6; prints its validation bits per character, ten names for three
# languages, Bayes'-rule classification of valid.tsv, and, when the names recipe's classifiers are in JUDGE,
# the judge accuracy and novelty of 50 samples per language at temperature 0.8.
# DATA=folder holding train.tsv, valid.tsv
NAMES_GEN_TRAIN = --labeled --label-embed 128 --cell lstm --layers 1 --hidden 256 --embed 64 --dropout 0.3 \
                  --class-sampling 0.6 --lr 0.003 --lr-schedule cosine --valid-every 300 --epochs 10 --threads 1
names-gen: DATA ?= $(SHARED)/corpora/names
names-gen: OUT ?= out/names-gen
names-gen: JUDGE ?= out/names/smoothed.safetensors out/names/weighted.safetensors
names-gen: install
	mkdir -p $(OUT)
	$(CHARLM) train $(DATA)/train.tsv --valid $(DATA)/valid.tsv $(NAMES_GEN_TRAIN) -o $(OUT)/model.safetensors
	@for lang in Irish Japanese Russian; do echo "$$lang:"; \
	$(CHARLM) sample -m $(OUT)/model.safetensors --label $$lang --num-samples 10 --stop-at-eos --length 40 --temp 0.8 --seed 1; done
	$(CHARLM) classify evaluate -m $(OUT)/model.safetensors $(DATA)/valid.tsv
	@if ls $(JUDGE) >/dev/null 2>&1; then $(CHARLM) classify judge -m $(OUT)/model.safetensors \
	$(foreach j,$(JUDGE),--judge $(j)) --train $(DATA)/train.tsv --threads 1; \
	else echo "no classifiers at $(JUDGE) (make names makes them): judge accuracy not measured"; fi

# Grapheme to phoneme (encoder-decoder with attention): trains on DATA/train.tsv with DATA/valid.tsv for
# 30 minutes, keeps the best model by validation word error rate, evaluates on DATA/valid.tsv (greedy and
# beam 5) and, when present, on DATA/test.tsv. DATA=folder holding train.tsv, valid.tsv (test.tsv), the
# layout of CMUdict's WORD<TAB>PH PH ... pairs; --lowercase so that capitalised words read as CMUdict's
G2P_TRAIN = --lowercase --hidden 128 --embed 64 --decoder-hidden 256 --attention general --dropout 0.2 \
            --lr 0.002 --lr-schedule cosine --batch-size 64 --time-budget 1800
g2p: DATA ?= $(SHARED)/corpora/cmudict
g2p: OUT ?= out/g2p
g2p: install
	mkdir -p $(OUT)
	$(CHARLM) seq2seq train $(DATA)/train.tsv --valid $(DATA)/valid.tsv $(G2P_TRAIN) -o $(OUT)/model.safetensors
	$(CHARLM) seq2seq evaluate -m $(OUT)/model.safetensors $(DATA)/valid.tsv
	$(CHARLM) seq2seq evaluate -m $(OUT)/model.safetensors $(DATA)/valid.tsv --beam 5 --show-errors 10
	@if [ -f $(DATA)/test.tsv ]; then $(CHARLM) seq2seq evaluate -m $(OUT)/model.safetensors $(DATA)/test.tsv --beam 5; \
	else echo "no test.tsv in $(DATA): test figures not measured"; fi

# Universal Dependencies English EWT, one part-of-speech tag per word: a 2x128 bi-LSTM over words (looked up
# lower-cased) whose input is the word embedding beside a char bi-LSTM (100 per direction) over the word's
# letters; trains on DATA/en_ewt-ud-train.conllu for 19.5 minutes, keeps the best model by accuracy on
# DATA/en_ewt-ud-dev.conllu, evaluates on the dev split and, when present, on DATA/en_ewt-ud-test.conllu.
# COLUMN=xpos for the Penn Treebank tags; ARGS adds options (ARGS="--no-char --threads 1"). On a 2-core
# machine other programs keep busy, --threads 1 trains several times faster than 2 (docs/tag.md).
# DATA=folder holding the UD EWT .conllu files
EWT_TRAIN = --lowercase --layers 2 --hidden 128 --embed 128 --char-embed 64 --char-hidden 100 --dropout 0.4 \
            --embed-dropout 0.2 --word-dropout-alpha 0.25 --lr 0.003 --lr-schedule cosine --batch-size 64 \
            --valid-every 98 --time-budget 1170
ewt: DATA ?= $(SHARED)/corpora/ud-ewt
ewt: OUT ?= out/ewt
ewt: COLUMN ?= upos
ewt: install
	mkdir -p $(OUT)
	$(CHARLM) tag train $(DATA)/en_ewt-ud-train.conllu --valid $(DATA)/en_ewt-ud-dev.conllu --column $(COLUMN) \
	  $(EWT_TRAIN) $(ARGS) -o $(OUT)/model.safetensors
	$(CHARLM) tag evaluate -m $(OUT)/model.safetensors $(DATA)/en_ewt-ud-dev.conllu
	@if [ -f $(DATA)/en_ewt-ud-test.conllu ]; then $(CHARLM) tag evaluate -m $(OUT)/model.safetensors $(DATA)/en_ewt-ud-test.conllu; \
	else echo "no en_ewt-ud-test.conllu in $(DATA): test figures not measured"; fi

clean:
	rm -rf build dist *.egg-info .pytest_cache $(DEMO_OUT)

# The virtual environment too.
distclean: clean
	rm -rf .venv
