# hark: a thin front for CMake. Every target installs missing Debian packages first.
#   make run        build and start hark-httpd serving docs/ on 127.0.0.1:8080 (status page
#                   at /_hark/status, metrics at /metrics)
#   make test       build and run every test, again under ASan+UBSan, threaded ones under TSan,
#                   then the HTTP parser fuzzer for a bounded time
#   make bench      build and run every benchmark (peers side by side)
#   make science    re-measure the models of docs/science.md and redraw their plots
#   make fuzz       build the libFuzzer drivers with clang and run each for 60 s
#   make install    install libhark (shared, static), headers, hark.pc, the programs and their
#                   man pages (PREFIX, DESTDIR)
PREFIX ?= /usr/local
DESTDIR ?=
JOBS ?= $(shell nproc)
BUILD := build

.PHONY: all deps build run run-echo test test-release test-asan test-tsan test-fuzz bench bench-build bench-pipes bench-log bench-fs bench-herd bench-watch bench-co bench-tls bench-http bench-broadcast bench-drift bench-capacity science fuzz fuzz-build install clean format

all: build

deps:
	@scripts/deps

build: deps
	@cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD)/release -j $(JOBS)

run: build
	$(BUILD)/release/apps/hark-httpd/hark-httpd --root docs --listen 127.0.0.1:8080

run-echo: build
	$(BUILD)/release/apps/hark-echo/hark-echo

test: test-release test-asan test-tsan test-fuzz

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

bench: bench-pipes bench-log bench-fs bench-watch bench-herd bench-co bench-tls bench-broadcast bench-http bench-drift bench-capacity

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

bench-broadcast: bench-build
	scripts/bench-broadcast $(BUILD)/bench

bench-http: bench-build
	scripts/bench-http $(BUILD)/bench

bench-drift: bench-build
	scripts/bench-drift $(BUILD)/bench

bench-capacity: bench-build
	scripts/bench-capacity $(BUILD)/bench

# Re-measure the models of docs/science.md and redraw their plots in docs/img/: timer drift
# (M/G/1), O(N) vs O(K) fit, wake storms, capacity, broadcast.
science: bench-build
	scripts/bench-drift $(BUILD)/bench
	scripts/fit-pipes $(BUILD)/bench
	HERD_README=0 scripts/bench-herd $(BUILD)/bench
	scripts/bench-capacity $(BUILD)/bench
	scripts/bench-broadcast $(BUILD)/bench

# libFuzzer drivers (fuzz/): built with clang in $(BUILD)/fuzz, each run for FUZZ_SECONDS
# from the seed corpus in tests/apps/*/samples (copied, so the seeds stay untouched).
FUZZ_SECONDS ?= 60
fuzz-build: deps
	@CC=clang cmake -S . -B $(BUILD)/fuzz -DCMAKE_BUILD_TYPE=Debug -DHK_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
	@cmake --build $(BUILD)/fuzz -j $(JOBS) --target fuzzers

fuzz: fuzz-build
	@mkdir -p $(BUILD)/fuzz/corpus/fdinfo
	@cp tests/apps/hark-watch/samples/* $(BUILD)/fuzz/corpus/fdinfo/
	$(BUILD)/fuzz/fuzz/fuzz-fdinfo -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	  $(BUILD)/fuzz/corpus/fdinfo
	@mkdir -p $(BUILD)/fuzz/corpus/netinfo_unix
	$(BUILD)/fuzz/fuzz/fuzz-netinfo_unix -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  $(BUILD)/fuzz/corpus/netinfo_unix
	@for f in net_addr tls dns_answer; do mkdir -p $(BUILD)/fuzz/corpus/$$f; \
	  $(BUILD)/fuzz/fuzz/fuzz-$$f -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz/corpus/$$f || exit 1; done
	@mkdir -p $(BUILD)/fuzz/corpus/conf && cp tests/conf/corpus/* $(BUILD)/fuzz/corpus/conf/
	$(BUILD)/fuzz/fuzz/fuzz-conf -max_total_time=$(FUZZ_SECONDS) -max_len=8192 $(BUILD)/fuzz/corpus/conf
	$(MAKE) --no-print-directory test-fuzz TEST_FUZZ_SECONDS=$(FUZZ_SECONDS)

# The HTTP request parser faces every client: make test fuzzes it for a bounded time.
TEST_FUZZ_SECONDS ?= 30
test-fuzz: fuzz-build
	@mkdir -p $(BUILD)/fuzz/corpus/http_request && cp tests/http/corpus/* $(BUILD)/fuzz/corpus/http_request/
	$(BUILD)/fuzz/fuzz/fuzz-http_request -max_total_time=$(TEST_FUZZ_SECONDS) -max_len=4096 \
	  $(BUILD)/fuzz/corpus/http_request

install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD)/release --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
