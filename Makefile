# Two set-up commands: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all bench clean test-cross

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,zoo,distributed,hwsim-ref]"
	# TrackEval without its declared opencv-python (a second cv2 beside the headless one; see pyproject.toml).
	$(BIN)/pip install --quiet --no-deps trackeval==1.3.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tridesign demo --out reports/demo

# The default suite (~15 min on 2 cores: 12:00 on a quiet Zen 3 VM, 525 tests); `slow` tests (training from scratch, SCALE-Sim calibration,
# whole-chain models whose parts are tested separately) run with `make test-all`.
test: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow" --durations=15

test-all: $(STAMP)
	$(BIN)/python -m pytest tests

# Opt-in: an aarch64 artifact, and an aarch64 bundle on its own runner, run under qemu-user in an
# arm64 Debian root (docs/targets.md, docs/deploy.md).
test-cross: $(STAMP)
	bash scripts/cross_root.sh .cross/arm64-root
	TRIDESIGN_CROSS=1 $(BIN)/python -m pytest tests/tvm/test_cross.py tests/deploy/test_cross_bundle.py -m cross -v

bench: $(STAMP)
	$(BIN)/python benchmarks/compile_latency.py
	$(BIN)/python benchmarks/hwsim_speed.py

clean:
	rm -rf $(VENV) reports .pytest_cache
