#include "core/random.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace cw::core {

void RandomBytes(std::span<unsigned char> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fputs("fatal: getrandom failed\n", stderr);
      std::abort();
    }
    done += static_cast<std::size_t>(n);
  }
}

std::string RandomHex(std::size_t bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  unsigned char buf[64];
  std::string out;
  out.reserve(bytes * 2);
  while (bytes > 0) {
    const std::size_t n = bytes < sizeof buf ? bytes : sizeof buf;
    RandomBytes({buf, n});
    for (std::size_t i = 0; i < n; ++i) {
      out.push_back(kDigits[buf[i] >> 4]);
      out.push_back(kDigits[buf[i] & 15]);
    }
    bytes -= n;
  }
  return out;
}

}  // namespace cw::core
