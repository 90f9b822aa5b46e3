// Seals and opens per second for PHI-sized and attachment-sized values
// (Google Benchmark). Run: build/release/bench/carewire-seal-bench
#include <benchmark/benchmark.h>

#include "crypto/seal.hpp"

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

BENCHMARK(BM_Seal)->Arg(256)->Arg(1 << 20);
BENCHMARK(BM_Open)->Arg(256)->Arg(1 << 20);
BENCHMARK(BM_BlindIndex);

}  // namespace

BENCHMARK_MAIN();
