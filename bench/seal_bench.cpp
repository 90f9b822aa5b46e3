// Seals and opens per second for PHI-sized and attachment-sized values
// (Google Benchmark). Run: build/release/bench/carewire-seal-bench
#include <benchmark/benchmark.h>

#include "crypto/seal.hpp"
#include "crypto/sealed_stream.hpp"

namespace {

using cw::crypto::Bytes;

const cw::crypto::SealContext kContext{"org-1", "messages", "body", "row-42"};

void BM_Seal(benchmark::State& state) {
  const auto key = cw::crypto::DataKey::Generate(1);
  const Bytes plain(static_cast<std::size_t>(state.range(0)), 0x61);
  for (auto _ : state) {
    Bytes sealed = cw::crypto::Seal(*key, kContext, plain);
    benchmark::DoNotOptimize(sealed.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_Open(benchmark::State& state) {
  cw::crypto::KeyRing ring;
  ring.Add(cw::crypto::DataKey::Generate(1));
  const Bytes plain(static_cast<std::size_t>(state.range(0)), 0x61);
  const Bytes sealed = cw::crypto::Seal(*ring.Current(), kContext, plain);
  for (auto _ : state) {
    auto opened = cw::crypto::Open(ring, kContext, sealed);
    benchmark::DoNotOptimize(opened);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_BlindIndex(benchmark::State& state) {
  std::array<std::uint8_t, 32> key{};
  for (auto _ : state) {
    auto h = cw::crypto::BlindIndex(key, "phone", "+15551234567");
    benchmark::DoNotOptimize(h);
  }
}

// Chunked sealing of an attachment-sized value, streamed from and to memory.
void BM_SealStream(benchmark::State& state) {
  const auto key = cw::crypto::DataKey::Generate(1);
  const Bytes plain(static_cast<std::size_t>(state.range(0)), 0x61);
  Bytes sealed;
  sealed.reserve(plain.size() + plain.size() / 1000 + 64);
  for (auto _ : state) {
    std::size_t pos = 0;
    sealed.clear();
    cw::crypto::SealStream(
        *key, kContext,
        [&](std::span<std::uint8_t> out) {
          const std::size_t n = std::min(out.size(), plain.size() - pos);
          std::copy_n(plain.begin() + static_cast<std::ptrdiff_t>(pos), n, out.begin());
          pos += n;
          return n;
        },
        [&](std::span<const std::uint8_t> in) {
          sealed.insert(sealed.end(), in.begin(), in.end());
        });
    benchmark::DoNotOptimize(sealed.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

BENCHMARK(BM_SealStream)->Arg(1 << 20)->Arg(25 << 20);
BENCHMARK(BM_Seal)->Arg(256)->Arg(1 << 20);
BENCHMARK(BM_Open)->Arg(256)->Arg(1 << 20);
BENCHMARK(BM_BlindIndex);

}  // namespace

BENCHMARK_MAIN();
