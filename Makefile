# The two commands: `make run` and `make test`. Both install what they need.
# CMake presets (CMakePresets.json) hold the build settings; this file only
# strings the steps together.

DATA_DIR ?= var/data
LISTEN ?= 127.0.0.1:8443
CAREWIRE := build/release/apps/carewire/carewire

.PHONY: all deps build run test test-release test-asan test-long bench format lint clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake --preset release >/dev/null
	cmake --build --preset release --target carewire

ORG ?= clinic
ORG_NAME ?= My Clinic
OWNER ?= owner

# Builds and runs the server on the embedded SQLite database in $(DATA_DIR).
# On a fresh data directory it first creates the keys, the database and a
# first organization, and prints its owner's one-time password.
run: build
	@if [ ! -e $(DATA_DIR)/master.key ] && [ -z "$$CAREWIRE_MASTER_KEY" ]; then \
	  $(CAREWIRE) init --data-dir $(DATA_DIR) --org $(ORG) --org-name "$(ORG_NAME)" --owner $(OWNER); \
	fi
	$(CAREWIRE) serve --data-dir $(DATA_DIR) --listen $(LISTEN)

# The whole suite in an optimized build, then again under ASan+UBSan.
test: test-release test-asan

test-release: deps
	cmake --preset release >/dev/null
	cmake --build --preset release
	ctest --preset release --label-exclude long

test-asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan
	ctest --preset asan --label-exclude long

# The long suite: the messaging crash test for 200 cycles instead of 50.
test-long: deps
	cmake --preset release >/dev/null
	cmake --build --preset release
	ctest --preset release --label-regex long

# Benchmarks print figures; see bench/README.md and docs/performance.md.
bench: deps
	cmake --preset release >/dev/null
	cmake --build --preset release --target bench carewire
	bench/run_http_bench.sh build/release

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

# The short clang-tidy list in .clang-tidy, over our sources (needs a debug
# configure for compile_commands.json).
lint: deps
	cmake --preset debug >/dev/null
	git ls-files 'src/*.cpp' 'apps/*.cpp' | xargs clang-tidy -p build/debug --quiet

clean:
	rm -rf build
