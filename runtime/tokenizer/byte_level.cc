#include "runtime/tokenizer/byte_level.h"

#include <array>

#include "runtime/tokenizer/unicode.h"

namespace chai {
namespace {

bool KeepsOwnCodePoint(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct ByteMaps {
  std::array<uint32_t, 256> to_char;
  std::array<int16_t, 324> to_byte;  // every mapped character is below 256 + 68
  ByteMaps() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      to_char[b] = KeepsOwnCodePoint(b) ? static_cast<uint32_t>(b) : next++;
      to_byte[to_char[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteMaps& Maps() {
  static const ByteMaps* maps = new ByteMaps();
  return *maps;
}

}  // namespace

uint32_t ByteToChar(uint8_t b) { return Maps().to_char[b]; }

int CharToByte(uint32_t cp) { return cp < Maps().to_byte.size() ? Maps().to_byte[cp] : -1; }

std::string BytesToVocabText(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) AppendUtf8(ByteToChar(b), &out);
  return out;
}

std::optional<std::string> VocabTextToBytes(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0, len;
  while (pos < text.size()) {
    const int b = CharToByte(DecodeUtf8(text, pos, &len));
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
    pos += len;
  }
  return out;
}

}  // namespace chai
