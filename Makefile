# Two commands set everything up on a fresh machine:
#   make serve   create .venv, install the server and the embedded default model, serve on 127.0.0.1:8765
#   make test    create .venv, install everything the tests need (system packages too), run the whole suite
# Extra arguments: make serve ARGS="--port 9000 --hop 0.25"; make test PYTEST_ARGS="-k stitch"
#   make cluster N=3   N servers on loopback ports behind HAProxy on 127.0.0.1:8765 (deploy/cluster.py), Ctrl-C stops

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=
N ?= 3
# torch 2.13.0's CPU wheel is what the MT3 models and their tests run on (other pins pull a multi-GB CUDA build).
TORCH := torch==2.13.0
BASIC_PITCH := basic-pitch==0.4.0
NOTE_SEQ := note-seq==0.0.5
TRANSKUN := transkun==2.0.1

.PHONY: serve piano cluster test lint clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The server: the package and basic-pitch's ONNX weights. basic-pitch is installed without its dependencies,
# which would pull TensorFlow; we run its ONNX file with onnxruntime, a direct dependency.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(BASIC_PITCH)
	touch $@

# The piano model (`transkun`): torch, and Transkun's weights (pretrained/2.0.pt) from the transkun wheel, installed
# without its dependencies, which would pull torchaudio; our own code runs the weights. Then:
# make serve ARGS="--model transkun"
$(VENV)/.piano-installed: pyproject.toml $(VENV)/.serve-installed
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[piano]"
	$(BIN)/pip install --quiet --no-deps $(TRANSKUN)
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.piano-installed
	$(BIN)/pip install --quiet -e ".[mt3,test,bench,cluster]"
	# NoteSequence export: only note-seq's generated protobuf module is used (protobuf comes with onnx); its
	# dependencies (librosa, numba, scipy, ... about 750 MB) are not needed.
	$(BIN)/pip install --quiet --no-deps $(NOTE_SEQ)
	touch $@

serve: $(VENV)/.serve-installed
	$(BIN)/streamer serve $(ARGS)

piano: $(VENV)/.piano-installed

# Front ends behind a real load balancer on one machine, to try draining and resuming (needs haproxy: apt-get
# install haproxy, or `make test` once). ARGS go to deploy/cluster.py, e.g. ARGS="--config my.toml".
cluster: $(VENV)/.serve-installed
	$(BIN)/python -m deploy.cluster --servers $(N) $(ARGS)

test: $(VENV)/.test-installed
	bash scripts/install-test-system-packages.sh
	$(BIN)/ruff check streamer tests benchmarks tools clients deploy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check streamer tests benchmarks tools clients deploy
	$(BIN)/ruff format --check streamer tests benchmarks tools clients deploy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
