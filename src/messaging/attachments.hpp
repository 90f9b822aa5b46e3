#pragma once

// What an attachment may be: the type is sniffed from its bytes with
// libmagic, never taken from the client's Content-Type or file name, and must
// be on the allow-list (images, PDF, plain text). Anything else, including
// HTML, SVG, scripts and executables, is refused.

#include <string>
#include <string_view>

namespace cw::messaging {

// The MIME type libmagic finds in the first bytes, such as "application/pdf";
// "application/octet-stream" when it finds none. Thread-safe.
std::string SniffContentType(std::string_view bytes);

bool IsAllowedContentType(std::string_view type);

// A file-name extension for an allowed type ("pdf"), for download names.
std::string_view ExtensionFor(std::string_view type);

// A name as uploaded: at most 255 bytes of UTF-8 without control
// characters, slashes or backslashes; may be empty.
bool IsValidAttachmentName(std::string_view name);

}  // namespace cw::messaging
