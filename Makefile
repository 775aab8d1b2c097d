# hark: a thin front for CMake. Every target installs missing Debian packages first.
#   make run        build and start the demo (echo server on 127.0.0.1:7000)
#   make test       build and run every test, again under ASan+UBSan, threaded ones under TSan
#   make bench      build and run every benchmark (peers side by side)
#   make fuzz       build the libFuzzer drivers with clang and run each for 60 s
#   make install    install libhark, headers and hark.pc (PREFIX, DESTDIR)
PREFIX ?= /usr/local
DESTDIR ?=
JOBS ?= $(shell nproc)
BUILD := build

.PHONY: all deps build run test test-release test-asan test-tsan bench bench-build bench-pipes bench-log bench-fs bench-herd bench-watch bench-co bench-tls fuzz install clean format

all: build

deps:
	@scripts/deps

build: deps
	@cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD)/release -j $(JOBS)

run: build
	$(BUILD)/release/apps/hark-echo/hark-echo

test: test-release test-asan test-tsan

test-release: build
	cd $(BUILD)/release && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	@cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DHK_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD)/asan -j $(JOBS)
	cd $(BUILD)/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

test-tsan: deps
	@cmake -S . -B $(BUILD)/tsan -DCMAKE_BUILD_TYPE=Debug -DHK_TSAN=ON >/dev/null
	@cmake --build $(BUILD)/tsan -j $(JOBS)
	cd $(BUILD)/tsan && ctest --output-on-failure -L threads

bench-build:
	@scripts/deps --bench
	@cmake -S . -B $(BUILD)/bench -DCMAKE_BUILD_TYPE=Release -DHK_BENCH=ON -DBUILD_TESTING=OFF >/dev/null
	@cmake --build $(BUILD)/bench -j $(JOBS)

bench: bench-pipes bench-log bench-fs bench-watch bench-herd bench-co bench-tls

bench-pipes: bench-build
	scripts/bench-pipes $(BUILD)/bench

bench-log: bench-build
	scripts/bench-log $(BUILD)/bench

bench-fs: bench-build
	scripts/bench-fs $(BUILD)/bench

bench-herd: bench-build
	scripts/bench-herd $(BUILD)/bench

bench-watch: bench-build
	scripts/bench-watch $(BUILD)/bench

bench-co: bench-build
	scripts/bench-co $(BUILD)/bench

bench-tls: bench-build
	scripts/bench-tls $(BUILD)/bench

# libFuzzer drivers (fuzz/): built with clang in $(BUILD)/fuzz, each run for FUZZ_SECONDS
# from the seed corpus in tests/apps/*/samples (copied, so the seeds stay untouched).
FUZZ_SECONDS ?= 60
fuzz: deps
	@CC=clang cmake -S . -B $(BUILD)/fuzz -DCMAKE_BUILD_TYPE=Debug -DHK_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
	@cmake --build $(BUILD)/fuzz -j $(JOBS) --target fuzzers
	@mkdir -p $(BUILD)/fuzz/corpus/fdinfo
	@cp tests/apps/hark-watch/samples/* $(BUILD)/fuzz/corpus/fdinfo/
	$(BUILD)/fuzz/fuzz/fuzz-fdinfo -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	  $(BUILD)/fuzz/corpus/fdinfo
	@for f in net_addr tls dns_answer; do mkdir -p $(BUILD)/fuzz/corpus/$$f; \
	  $(BUILD)/fuzz/fuzz/fuzz-$$f -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz/corpus/$$f || exit 1; done

install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD)/release --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
