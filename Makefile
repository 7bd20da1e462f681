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

.PHONY: install demo test bench shakespeare ptb names clean distclean

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

# Surnames -> language of origin (18 labels), char level: trains on DATA/train.tsv with DATA/valid.tsv for
# 290 s, keeps the best model by validation macro-F1, evaluates on DATA/valid.tsv and, when present,
# DATA/test.tsv. DATA=folder holding train.tsv, valid.tsv (test.tsv)
NAMES_TRAIN = --cell gru --hidden 256 --embed 128 --bidirectional --pooling max --dropout 0.5 --embed-dropout 0.1 \
              --lr 0.003 --lr-schedule cosine --valid-every 300 --select macro_f1 --time-budget 290
names: DATA ?= $(SHARED)/corpora/names
names: OUT ?= out/names
names: install
	mkdir -p $(OUT)
	$(CHARLM) classify train $(DATA)/train.tsv --valid $(DATA)/valid.tsv $(NAMES_TRAIN) -o $(OUT)/model.safetensors
	$(CHARLM) classify evaluate -m $(OUT)/model.safetensors $(DATA)/valid.tsv
	@if [ -f $(DATA)/test.tsv ]; then $(CHARLM) classify evaluate -m $(OUT)/model.safetensors $(DATA)/test.tsv; \
	else echo "no test.tsv in $(DATA): test figures not measured"; fi

clean:
	rm -rf build dist *.egg-info .pytest_cache $(DEMO_OUT)

# The virtual environment too.
distclean: clean
	rm -rf .venv
