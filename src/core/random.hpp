#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace cw::core {

// Fills `out` from the kernel's CSPRNG (getrandom(2)). A failure to draw
// random bytes stops the process: carrying on could produce guessable ids.
void RandomBytes(std::span<unsigned char> out);

// `bytes` random bytes as lowercase hex; request ids use 16.
std::string RandomHex(std::size_t bytes);

}  // namespace cw::core
