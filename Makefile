# quantmet: two commands for users (demo, test) and one for maintainers (bench).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	# compat editable mode: the checkout goes on sys.path, so a data/ folder in a user's working
	# directory cannot shadow the data package (the default import-hook mode lets it)
	$(PY) -m pip install -e ".[test,fast]" --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.run +exp=demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m experiments.run +exp=bench_regions
	$(PY) -m experiments.run +exp=bench_anomaly
	$(PY) -m experiments.run +exp=bench_area
	$(PY) -m experiments.run +exp=bench_process
	$(PY) -m experiments.run +exp=bench_archive
	$(PY) -m experiments.run +exp=bench_segmentation

clean:
	rm -rf outputs multirun .pytest_cache
