# Two commands for a fresh machine: `make demo` and `make test`.
# Python 3.11+ is needed. torch is installed first, on its own: TORCH_SPEC picks the build.
#   CPU machines (default):  make test
#   NVIDIA GPU machines:     make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3.11
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench motion-to-photon eval train-renderer train-audio talk-cv clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e '.[dev,demo]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pirender demo --out out/demo.mp4 --overwrite
	$(BIN)/pirender serve

# the browser test needs Debian's chromium and playwright-core (npm); it skips, saying why, without them
test: $(STAMP) browser-deps system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# mypy reads the packages as they import (pirender.engine, ...) from a tree of links in build/typecheck
TYPECHECK := build/typecheck
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p $(TYPECHECK)/pirender
	for pkg in engine kernels training; do ln -sfn $(CURDIR)/$$pkg $(TYPECHECK)/pirender/$$pkg; done
	cd $(TYPECHECK) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p pirender.engine

# reproduces engine/audioflow/default_flow.pt (engine/audioflow/MODEL_CARD.md): the real speakers of the
# talking corpus (the clips with a voice, prepared as for `make eval`: 30 clips of 25 training people);
# the flow validated on 4 of those people, the mouth readout chosen by folds of them all; the 6 held-out
# clips are not used (`pirender eval --talk` measures on them); ~30 s on 2 CPU cores after the dataset
# is prepared
train-audio: $(STAMP)
	$(BIN)/pirender prepare $(TALKING) --out data/talking
	$(BIN)/pirender prepare-audio data/talking --out data/talk_pairs
	$(BIN)/pirender train-audio data/talk_pairs/train --out engine/audioflow/default_flow.pt --steps 600 \
		--eval-every 25 --learning-rate 3e-4 --lstm-hidden 32 --seed 2 --overwrite

# the shipped recipe measured on every speaker of the corpus with a voice, each held out once (6 folds
# by speaker; each fold's model kept by the lip sync of other training speakers; ~10 min on 2 cores):
# the per-clip table in out/talk_cv/cross_validation.md (benchmarks/RESULTS.md, issue 15)
talk-cv: $(STAMP)
	$(BIN)/pirender prepare $(TALKING) --out data/talking
	$(BIN)/pirender prepare-audio data/talking --out data/talk_pairs
	$(BIN)/pirender train-audio data/talk_pairs/train data/talk_pairs/test --cross-validate 6 \
		--data data/talking --out out/talk_cv --steps 600 --eval-every 25 --learning-rate 3e-4 \
		--lstm-hidden 32 --seed 2

bench: $(STAMP)
	mkdir -p out
	$(BIN)/pirender bench --backend all --json out/bench.json --plot out/bench.png --overwrite
	$(BIN)/python benchmarks/bench_tracking.py

# Motion-to-photon of `pirender serve` in headless Chromium: a head tilt in a fake camera and a speech
# onset in a fake microphone, each timed from its capture to the avatar frame that shows it (~2 min;
# needs /usr/bin/chromium and node). Table printed; per-event figures and a plot in out/.
motion-to-photon: $(STAMP) browser-deps
	mkdir -p out
	$(BIN)/python benchmarks/motion_to_photon.py --seconds 30 --json out/motion_to_photon.json \
		--plot out/motion_to_photon.png

# The evaluation harness on the held-out people of the talking corpus (identity split: 20% of the
# 60 people, seed 0, the prepare defaults): prepares data/talking first (resumable; ~11 min on 2 CPU
# cores the first time), then measures EVAL_RENDERERS (default: the mesh renderer, the baseline) into
# out/eval (report.md is printed; metrics.json, per_clip.csv, contact_sheet.png beside it).
TALKING ?= ../shared/data/talking/MANIFEST.tsv
EVAL_RENDERERS ?= mesh
eval: $(STAMP)
	$(BIN)/pirender prepare $(TALKING) --out data/talking
	$(BIN)/pirender eval --data data/talking $(foreach r,$(EVAL_RENDERERS),--renderer $(r)) --out out/eval --overwrite

# Reproduces engine/renderer/refine/default_refiner.pt, the neural renderer's editing network: the
# talking corpus prepared as for `make eval` (its 48 training people only; the 12 held-out ones give
# the validation figures), pairs made by the mesh renderer; 10000 steps in three stages: pixel + SSIM,
# + adversarial from 6000, + the eyelids from 9000 (~44 min on 2 CPU cores).
train-renderer: $(STAMP)
	$(BIN)/pirender prepare $(TALKING) --out data/talking
	$(BIN)/pirender train-refiner --data data/talking --run runs/refiner --out engine/renderer/refine/default_refiner.pt --steps 10000 --eyes-from 9000 --overwrite

# A local voice agent with a speaking portrait (examples/pipecat_agent: pipecat's SmallWebRTC transport
# on 127.0.0.1, Silero VAD, espeak-ng, PirenderAvatar): open http://127.0.0.1:7870 and talk to it
.PHONY: pipecat-example
pipecat-example: $(STAMP) system-deps
	$(BIN)/python examples/pipecat_agent/bot.py --port 7870

# The real-browser test (tests/test_browser.py): Debian's chromium and playwright-core from the lock
# file (no browser download). Safe to repeat; without them the browser test skips.
# speech synthesis for the audio tests (espeak-ng) and PortAudio for the microphone; tests skip without
.PHONY: system-deps
system-deps:
	command -v espeak-ng >/dev/null || (apt-get update && apt-get install -y espeak-ng libportaudio2) \
		|| echo "espeak-ng not installed: speech tests fall back to a synthetic voice"

.PHONY: browser-deps
browser-deps:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| echo "chromium not installed: the browser test will skip"
	npm ci --prefix tests/browser --no-audit --no-fund || echo "playwright-core not installed: the browser test will skip"

# A Ray cluster of this machine for `pirender serve --render ray://127.0.0.1:10001` (README: Scale-out
# with Ray Serve): the head node, every Ray service bound to 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
# makes Ray take the loopback as the node address), token authentication on (the token in ~/.ray/auth_token),
# no dashboard; `make ray-down` stops it.
RAY_PORT ?= 6379
RAY_CLIENT_PORT ?= 10001
.PHONY: ray-up ray-down
ray-up: $(STAMP)
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=token $(BIN)/ray start --head --node-ip-address=127.0.0.1 \
		--port=$(RAY_PORT) --ray-client-server-port=$(RAY_CLIENT_PORT) --include-dashboard=false \
		--disable-usage-stats

ray-down: $(STAMP)
	$(BIN)/ray stop

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
