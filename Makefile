# Two commands do all set-up on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch first, from the CPU wheel, so that the requirements' torch range adds nothing.
TORCH ?= torch==2.13.0
# open_clip_torch only ships the CLIP BPE vocabulary we build the offline tokenizer from;
# its own dependencies (torchvision ...) are not wanted.
OPEN_CLIP ?= open_clip_torch==3.3.0
PYTEST_ARGS ?= -q
# e.g. make demo DEMO_ARGS="--minutes 5"   (python -m src.demo --help)
DEMO_ARGS ?=

# e.g. make notebooks NOTEBOOK_ARGS="--no-browser --port 8890"
NOTEBOOK_ARGS ?=

.PHONY: install browser lint format test demo figures docs docs-serve notebooks bench clean-demo

$(STAMP): requirements.txt requirements-docs.txt requirements-dev.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-docs.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps $(OPEN_CLIP)
	touch $(STAMP)

install: $(STAMP)

# headless Chromium for the report's browser test (tests/inference/test_report.py): Debian's package, as root; without it
# that test is skipped with this reason in pytest's summary.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ) || \
		echo "warning: could not install chromium (apt-get install chromium needs root): tests/inference/test_report.py will be skipped"

test: install browser lint
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (pyproject.toml): the lint rules and the formatting; make format applies both fixes
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# synthetic data -> conversion -> CPU training (10 min budget) -> scoring -> figures; re-runs reuse each stage
demo: install
	$(PY) -m src.demo $(DEMO_ARGS)

# the README's figures in images/: the demo model's comparison grids (the demo runs first where its model is
# missing or out of date) and the synthetic examples of both scenes
figures: install
	$(PY) -m src.demo --readme-figures $(DEMO_ARGS)
	$(PY) -m src.synthetic.figure
	$(PY) -m src.synthetic.figure --scene clean --out images/synthetic_clean_examples.png

# the documentation site (docs/, mkdocs.yml) into site/; warnings are errors, as in the test suite
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# the same site served at http://127.0.0.1:8000 while you edit; Ctrl-C stops it
docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

# JupyterLab in the project venv, on the repository (data_conversion.ipynb, post_training.ipynb); Ctrl-C stops it
notebooks: install
	$(PY) -m jupyter lab --notebook-dir=. $(NOTEBOOK_ARGS)

# what the demo wrote (data/synthetic, safetensors/galaxy_demo and its run folder), so that the next make demo
# starts afresh
clean-demo:
	rm -rf data/synthetic safetensors/galaxy_demo safetensors/galaxy_demo.run \
		data/synthetic_clean safetensors/galaxy_demo_clean safetensors/galaxy_demo_clean.run \
		data/synthetic_sdss safetensors/galaxy_demo_sdss safetensors/galaxy_demo_sdss.run
