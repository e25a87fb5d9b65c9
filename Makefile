# Two commands matter: `make demo` and `make test`. Both install what they need first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
AIRFLOW3 ?= 3.3.2
AIRFLOW2 ?= 2.11.2
VENV3 := .venv
VENV2 := .venv-airflow2
VENVW := .venv-wheel
UV = $(VENV3)/bin/uv
# Two pytest workers: most tests wait on the emulator or on Airflow processes. A test module stays on one worker
# (its module-scoped Airflow stack starts once). `make test PYTEST_ARGS=` runs serially.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: install install-airflow2 demo test test-airflow3 test-airflow2 test-wheel lint bench clean

$(VENV3)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV3)
	$(VENV3)/bin/pip install -q --disable-pip-version-check uv
	$(UV) pip install -q --python $(VENV3)/bin/python "apache-airflow==$(AIRFLOW3)" -e ".[test]"
	rm -rf *.egg-info  # setuptools' leftover: with the repo on sys.path (python -m airflow) it registers the plugin twice
	touch $@

$(VENV2)/.installed: $(VENV3)/.installed
	$(PYTHON) -m venv $(VENV2)
	$(UV) pip install -q --python $(VENV2)/bin/python "apache-airflow==$(AIRFLOW2)" -e ".[test]"
	rm -rf *.egg-info
	touch $@

install: $(VENV3)/.installed
install-airflow2: $(VENV2)/.installed

demo: install
	$(VENV3)/bin/python -m airflow_dbt_cloud_dlt.demo

PY_SOURCES := airflow_dbt_cloud_dlt tests example_dags benchmarks

lint: install
	$(VENV3)/bin/ruff check $(PY_SOURCES)
	$(VENV3)/bin/ruff format --check $(PY_SOURCES)
	$(VENV3)/bin/mypy

test-airflow3: install
	$(VENV3)/bin/pytest $(PYTEST_ARGS)

test-airflow2: install-airflow2
	$(VENV2)/bin/pytest $(PYTEST_ARGS)

# Users install wheels: build the sdist and wheel, install the wheel alone into a clean venv and run the
# demo (the emulator and an example DAG) from it, so package data an editable install hides is caught.
test-wheel: install
	rm -rf dist $(VENVW)
	$(UV) build -q --out-dir dist
	rm -rf *.egg-info
	$(PYTHON) -m venv $(VENVW)
	$(UV) pip install -q --python $(VENVW)/bin/python "apache-airflow==$(AIRFLOW3)" "dlt[duckdb]>=1.0" "ijson>=3.2" dist/*.whl
	WHEEL_VENV=$(VENVW) $(VENV3)/bin/pytest -q -p no:randomly tests/test_packaging.py

test: lint test-airflow3 test-airflow2 test-wheel

bench: install
	$(VENV3)/bin/python benchmarks/run.py

clean:
	rm -rf $(VENV3) $(VENV2) $(VENVW) dist .demo
