# The README's two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PLUGIN := infer_segment_anything_2
IKOMIA_PLUGINS := $(HOME)/Ikomia/Plugins/Python
IMAGE ?=
MODEL_NAME ?=
MODEL_WEIGHT_FILE ?=
PYTEST_ARGS ?=

.PHONY: demo test venv link clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt requirements-ray.txt requirements-test-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-test-nodeps.txt
	touch $@

# Ikomia finds plugins in ~/Ikomia/Plugins/Python/<name>: link this checkout there.
link:
	@mkdir -p "$(IKOMIA_PLUGINS)"
	@if [ "$$(readlink -f "$(IKOMIA_PLUGINS)/$(PLUGIN)")" != "$$(readlink -f "$(CURDIR)")" ]; then \
		ln -sfn "$(CURDIR)" "$(IKOMIA_PLUGINS)/$(PLUGIN)"; fi

demo: venv link
	IKOMIA_AUTO_COMPLETION=0 $(PY) scripts/demo.py --image "$(IMAGE)" \
		--model-name "$(MODEL_NAME)" --model-weight-file "$(MODEL_WEIGHT_FILE)" --out outputs

# The tests link the checkout into a temporary Ikomia root of their own (tests/conftest.py).
test: venv
	IKOMIA_AUTO_COMPLETION=0 QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf outputs .pytest_cache
