#include "frontends/Llama2cFile.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/EndianStream.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <array>
#include <limits>

namespace llamac::frontends {

namespace {

constexpr uint32_t kVersionedExportMagic = 0x616b3432; // "ak42", llama2.c export.py
constexpr size_t kHeaderFields = 7;

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// The header's fields by their llama2.c names, each with the largest value a
/// real checkpoint could plausibly have. Anything beyond means the file is
/// something else whose first bytes happen to decode as integers.
struct HeaderField {
  const char *name;
  int64_t plausibleMax;
};
constexpr std::array<HeaderField, kHeaderFields> kHeaderFieldInfo = {{
    {"dim", int64_t(1) << 20},
    {"hidden_dim", int64_t(1) << 22},
    {"n_layers", 4096},
    {"n_heads", int64_t(1) << 20},
    {"n_kv_heads", int64_t(1) << 20},
    {"vocab_size", int64_t(1) << 24},
    {"seq_len", int64_t(1) << 24},
}};

std::array<int64_t, kHeaderFields> headerFields(const Llama2cConfig &config) {
  return {config.dim,      config.hiddenDim,
          config.nLayers,  config.nHeads,
          config.nKvHeads, config.sharedClassifier ? config.vocabSize : -config.vocabSize,
          config.seqLen};
}

std::string describeRawHeader(llvm::ArrayRef<int64_t> fields) {
  std::string text;
  llvm::raw_string_ostream os(text);
  for (size_t i = 0; i < kHeaderFields; ++i)
    os << (i ? ", " : "") << kHeaderFieldInfo[i].name << "=" << fields[i];
  return text;
}

/// Byte counts of the tensors, accumulated with overflow checks: a header
/// with absurd sizes must become an error, not a wrapped-around offset.
class LayoutBuilder {
public:
  /// Reserves a float32 tensor with the given dimensions and returns its offset.
  uint64_t place(std::initializer_list<int64_t> dims) {
    uint64_t start = next;
    uint64_t bytes = sizeof(float);
    for (int64_t dim : dims)
      overflowed |= __builtin_mul_overflow(bytes, uint64_t(dim), &bytes);
    overflowed |= __builtin_add_overflow(next, bytes, &next);
    return start;
  }
  uint64_t end() const { return next; }
  bool hasOverflowed() const { return overflowed; }

private:
  uint64_t next = Llama2cLayout::kHeaderBytes;
  bool overflowed = false;
};

/// Reads up to `buffer.size()` bytes from the start of `path`; returns how
/// many it got.
llvm::Expected<size_t> readPrefix(llvm::StringRef path,
                                  llvm::MutableArrayRef<char> buffer) {
  llvm::Expected<llvm::sys::fs::file_t> file =
      llvm::sys::fs::openNativeFileForRead(path);
  if (!file)
    return makeError(path + ": cannot open: " + llvm::toString(file.takeError()));
  size_t filled = 0;
  while (filled < buffer.size()) {
    llvm::Expected<size_t> got =
        llvm::sys::fs::readNativeFile(*file, buffer.drop_front(filled));
    if (!got) {
      llvm::sys::fs::closeFile(*file);
      return makeError(path + ": cannot read: " + llvm::toString(got.takeError()));
    }
    if (*got == 0)
      break;
    filled += *got;
  }
  llvm::sys::fs::closeFile(*file);
  return filled;
}

bool isTextByte(unsigned char byte) {
  return (byte >= 0x20 && byte < 0x7f) || byte == '\n' || byte == '\r' ||
         byte == '\t';
}

} // namespace

std::string describeLlama2cConfig(const Llama2cConfig &config) {
  return describeRawHeader(headerFields(config));
}

llvm::Error validateLlama2cConfig(const Llama2cConfig &config,
                                  llvm::StringRef name) {
  std::array<int64_t, kHeaderFields> fields = headerFields(config);
  for (size_t i = 0; i < kHeaderFields; ++i) {
    int64_t value = i == 5 ? config.vocabSize : fields[i];
    if (value <= 0)
      return makeError(name + ": " + kHeaderFieldInfo[i].name +
                       " must be positive, found " + llvm::Twine(value));
    if (value > std::numeric_limits<int32_t>::max())
      return makeError(name + ": " + kHeaderFieldInfo[i].name + "=" +
                       llvm::Twine(value) +
                       " does not fit the header's int32 field");
  }
  if (config.dim % config.nHeads != 0)
    return makeError(name + ": dim=" + llvm::Twine(config.dim) +
                     " is not a multiple of n_heads=" + llvm::Twine(config.nHeads));
  if (config.nKvHeads > config.nHeads)
    return makeError(name + ": n_kv_heads=" + llvm::Twine(config.nKvHeads) +
                     " is more than n_heads=" + llvm::Twine(config.nHeads));
  if (config.nHeads % config.nKvHeads != 0)
    return makeError(name + ": n_heads=" + llvm::Twine(config.nHeads) +
                     " is not a multiple of n_kv_heads=" +
                     llvm::Twine(config.nKvHeads));
  if (config.headSize() % 2 != 0)
    return makeError(name + ": head_size = dim / n_heads = " +
                     llvm::Twine(config.headSize()) +
                     " is odd, but RoPE rotates pairs of dimensions");
  return llvm::Error::success();
}

llvm::Expected<Llama2cLayout> computeLlama2cLayout(const Llama2cConfig &config,
                                                   llvm::StringRef name) {
  if (llvm::Error error = validateLlama2cConfig(config, name))
    return error;
  const int64_t dim = config.dim, hidden = config.hiddenDim;
  const int64_t layers = config.nLayers, kvDim = config.kvDim();

  LayoutBuilder builder;
  Llama2cLayout layout;
  layout.tokenEmbedding = builder.place({config.vocabSize, dim});
  layout.rmsAtt = builder.place({layers, dim});
  layout.wq = builder.place({layers, dim, dim});
  layout.wk = builder.place({layers, kvDim, dim});
  layout.wv = builder.place({layers, kvDim, dim});
  layout.wo = builder.place({layers, dim, dim});
  layout.rmsFfn = builder.place({layers, dim});
  layout.w1 = builder.place({layers, hidden, dim});
  layout.w2 = builder.place({layers, dim, hidden});
  layout.w3 = builder.place({layers, hidden, dim});
  layout.rmsFinal = builder.place({dim});
  layout.ropeTables = builder.place({2, config.seqLen, config.headSize() / 2});
  layout.classifier = config.sharedClassifier
                          ? layout.tokenEmbedding
                          : builder.place({config.vocabSize, dim});
  if (builder.hasOverflowed())
    return makeError(name + ": header says " + describeLlama2cConfig(config) +
                     ", which needs more than 2^64 bytes");
  layout.fileSize = builder.end();
  return layout;
}

llvm::Expected<Llama2cFile> readLlama2cFile(llvm::StringRef path) {
  namespace fs = llvm::sys::fs;
  fs::file_status status;
  if (std::error_code ec = fs::status(path, status))
    return makeError(path + ": cannot open: " + ec.message());
  if (status.type() == fs::file_type::directory_file)
    return makeError(path + ": is a directory, expected a llama2.c checkpoint file");
  if (status.type() != fs::file_type::regular_file)
    return makeError(path + ": is not a regular file, expected a llama2.c checkpoint");
  const uint64_t fileSize = status.getSize();
  if (fileSize == 0)
    return makeError(path + ": file is empty, expected a llama2.c checkpoint");

  std::array<char, Llama2cLayout::kHeaderBytes> header{};
  llvm::Expected<size_t> headerBytes = readPrefix(path, header);
  if (!headerBytes)
    return headerBytes.takeError();
  auto readInt32 = [&](size_t index) {
    return llvm::support::endian::read32le(header.data() + 4 * index);
  };

  // Formats that are not the legacy checkpoint but could be mistaken for one.
  if (*headerBytes >= 4 && uint32_t(readInt32(0)) == kVersionedExportMagic) {
    std::string version =
        *headerBytes >= 8 ? std::to_string(int32_t(readInt32(1))) : "(unknown)";
    return makeError(path + ": llama2.c version " + version +
                     " export (magic ak42) is not supported; export with "
                     "--version 0 (legacy float32)");
  }
  if (*headerBytes >= 4 && llvm::StringRef(header.data(), 4) == "GGUF")
    return makeError(path + ": is a GGUF file, not a llama2.c checkpoint "
                            "(GGUF is not supported)");
  if (*headerBytes < Llama2cLayout::kHeaderBytes)
    return makeError(path + ": file is " + llvm::Twine(fileSize) +
                     " bytes, shorter than the 28-byte llama2.c header");
  // A real header always has zero high bytes (every field is < 2^24), so
  // 28 bytes of text are never one.
  if (llvm::all_of(header, [](char c) { return isTextByte(c); })) {
    llvm::StringRef start = llvm::StringRef(header.data(), 16).take_until(
        [](char c) { return c == '\n' || c == '\r'; });
    return makeError(path + ": not a llama2.c checkpoint (it starts with text \"" +
                     start + "...\")");
  }

  std::array<int64_t, kHeaderFields> fields;
  for (size_t i = 0; i < kHeaderFields; ++i)
    fields[i] = int32_t(readInt32(i));
  std::string described = describeRawHeader(fields);

  // One field out of range is a damaged or hand-made header: say which.
  // Several, or an absurdly large one, mean another kind of file.
  llvm::SmallVector<size_t, kHeaderFields> nonPositive, tooLarge;
  for (size_t i = 0; i < kHeaderFields; ++i) {
    int64_t magnitude = i == 5 ? std::abs(fields[i]) : fields[i];
    if (magnitude <= 0)
      nonPositive.push_back(i);
    else if (magnitude > kHeaderFieldInfo[i].plausibleMax)
      tooLarge.push_back(i);
  }
  if (!tooLarge.empty() || nonPositive.size() > 1) {
    std::string reason =
        tooLarge.empty()
            ? std::to_string(nonPositive.size()) + " fields are not positive"
            : std::string(kHeaderFieldInfo[tooLarge[0]].name) + " is more than " +
                  std::to_string(kHeaderFieldInfo[tooLarge[0]].plausibleMax);
    return makeError(path + ": not a llama2.c checkpoint? header says " +
                     described + " (" + reason + ")");
  }
  if (nonPositive.size() == 1) {
    size_t i = nonPositive[0];
    return makeError(path + ": header says " + kHeaderFieldInfo[i].name + "=" +
                     llvm::Twine(fields[i]) + ", expected " +
                     (i == 5 ? "a nonzero value" : "a positive value") +
                     " (header: " + described + ")");
  }

  Llama2cFile file;
  file.path = path.str();
  Llama2cConfig &config = file.config;
  config.dim = fields[0];
  config.hiddenDim = fields[1];
  config.nLayers = fields[2];
  config.nHeads = fields[3];
  config.nKvHeads = fields[4];
  config.vocabSize = std::abs(fields[5]);
  config.sharedClassifier = fields[5] > 0;
  config.seqLen = fields[6];

  llvm::Expected<Llama2cLayout> layout = computeLlama2cLayout(config, path);
  if (!layout)
    return layout.takeError();
  if (layout->fileSize != fileSize)
    return makeError(path + ": file is " + llvm::Twine(fileSize) +
                     " bytes, header says " + llvm::Twine(layout->fileSize) +
                     " (" + described + ", legacy float32 layout)");
  file.layout = *layout;
  return file;
}

llvm::Error writeLlama2cHeader(llvm::raw_ostream &os, const Llama2cConfig &config) {
  if (llvm::Error error = validateLlama2cConfig(config, "llama2.c header"))
    return error;
  for (int64_t field : headerFields(config))
    llvm::support::endian::write<int32_t>(os, int32_t(field), llvm::support::little);
  return llvm::Error::success();
}

} // namespace llamac::frontends
