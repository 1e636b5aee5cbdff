// The GPT-2 byte <-> character map that byte-level BPE vocabularies are written in.
//
// Every byte gets a printable character: bytes that are printable Latin-1 keep their own code
// point; the other 68 (controls, space, 0x7F-0xA0, 0xAD) get 256, 257, ... in byte order. So " "
// is written "Ġ" (U+0120) and "\n" is "Ċ" (U+010A).
#ifndef CHAI_RUNTIME_TOKENIZER_BYTE_LEVEL_H_
#define CHAI_RUNTIME_TOKENIZER_BYTE_LEVEL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace chai {

// The character that stands for byte b.
uint32_t ByteToChar(uint8_t b);
// The byte that character cp stands for, or -1 when cp is not in the map.
int CharToByte(uint32_t cp);

// Maps raw bytes to their vocabulary spelling ("a b" -> "aĠb").
std::string BytesToVocabText(absl::string_view bytes);
// Maps a vocabulary spelling back to raw bytes; nullopt when a character is not in the map.
std::optional<std::string> VocabTextToBytes(absl::string_view text);

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_BYTE_LEVEL_H_
