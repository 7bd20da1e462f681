# charlm: the two set-up commands (README) and the developer targets.
PYTHON ?= python3
SHARED ?= ../shared
DEMO_OUT ?= demo
DEMO_SECONDS ?= 180

.PHONY: install demo test bench shakespeare clean

install:
	$(PYTHON) -m pip install -q '.[test]'

# Train a small model on the built-in corpus (Python's own reference docs) for a few minutes, then
# print samples and the validation perplexity.
demo: install
	mkdir -p $(DEMO_OUT)
	charlm demo --out $(DEMO_OUT)/model.safetensors --time-budget $(DEMO_SECONDS)

# The test suite, with the optional PyTorch cross-checks (PyTorch 2.13.0 CPU).
test: install
	$(PYTHON) -m pip install -q 'torch==2.13.0'
	$(PYTHON) -m pytest -q

# PyTorch beside charlm on the issue's shapes, same machine, same run.
bench: install
	$(PYTHON) -m pip install -q 'torch==2.13.0'
	$(PYTHON) bench/compare_torch.py --torch-baseline $(SHARED)/bench/torch_baseline.py

# Tiny Shakespeare recipe: first 90 % train, last 10 % validation, 14 minutes of training plus the
# exact validation pass (within 15 minutes on a 2-core machine). DATA=path/to/input.txt OUT=dir
DATA ?= $(SHARED)/corpora/tinyshakespeare/input.txt
OUT ?= out/shakespeare
shakespeare:
	mkdir -p $(OUT)
	charlm train $(DATA) --valid-fraction 0.1 --hidden 256 --dropout 0.2 --time-budget 840 -o $(OUT)/model.safetensors

clean:
	rm -rf build dist *.egg-info .pytest_cache $(DEMO_OUT)
