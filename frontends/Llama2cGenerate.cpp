#include "frontends/Llama2cGenerate.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Host.h"
#include "llvm/Support/raw_ostream.h"

#include <atomic>
#include <cerrno>
#include <cmath>
#include <fcntl.h>
#include <mutex>
#include <thread>
#include <unistd.h>
#include <vector>

namespace llamac::frontends {

namespace {

struct NamedShape {
  llvm::StringRef name;
  Llama2cConfig config;
};

// {dim, hidden, layers, heads, kv heads, vocab, seq_len, shared classifier}
const NamedShape kShapes[] = {
    {"stories110M", {768, 2048, 12, 12, 12, 32000, 1024, true}},
    // Llama 3.2 ties the classifier to the embedding.
    {"llama-3.2-1b", {2048, 8192, 16, 32, 8, 128256, 2048, true}},
    {"llama-3-8b", {4096, 14336, 32, 32, 8, 128256, 2048, false}},
    {"tiny", {128, 344, 2, 4, 2, 512, 256, true}},
};

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

uint64_t splitmix64(uint64_t state) {
  uint64_t z = state + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// A run of floats (indices counted from the first float after the header)
/// that share one recipe.
struct Segment {
  enum class Kind { Uniform, RopeCos, RopeSin };
  uint64_t begin = 0, end = 0;
  Kind kind = Kind::Uniform;
  float center = 0, halfWidth = 0; // Uniform: center + halfWidth * U(-1, 1)
  bool randomSign = false;          // Uniform: then times -1 or +1
};

/// Fills floats [begin, end) of the file. One 64-bit hash of (key, pair
/// index) yields 24 random bits for each float of an even/odd pair.
class WeightFiller {
public:
  WeightFiller(const Llama2cConfig &config, const Llama2cLayout &layout,
               uint64_t seed)
      : key(splitmix64(seed ^ 0x6c6c616d61636c32ULL)),
        ropeHalf(config.headSize() / 2), headSize(config.headSize()) {
    auto floatIndex = [](uint64_t offset) {
      return (offset - Llama2cLayout::kHeaderBytes) / sizeof(float);
    };
    auto uniform = [&](uint64_t offset, float center, float halfWidth,
                       bool randomSign = false) {
      Segment segment;
      segment.begin = floatIndex(offset);
      segment.center = center;
      segment.halfWidth = halfWidth;
      segment.randomSign = randomSign;
      segments.push_back(segment);
    };
    auto fanIn = [](int64_t n) { return float(std::sqrt(3.0 / double(n))); };
    const float gainSpread = 0.1f;
    uniform(layout.tokenEmbedding, 0, float(std::sqrt(3.0)));
    uniform(layout.rmsAtt, 1, gainSpread);
    uniform(layout.wq, 0, fanIn(config.dim));
    uniform(layout.wk, 0, fanIn(config.dim));
    uniform(layout.wv, 0, fanIn(config.dim));
    uniform(layout.wo, 0, fanIn(config.dim));
    uniform(layout.rmsFfn, 1, gainSpread);
    uniform(layout.w1, 0, fanIn(config.dim));
    uniform(layout.w2, 0, fanIn(config.hiddenDim));
    uniform(layout.w3, 0, fanIn(config.dim));
    // With a tied classifier the final state still carries the input token's
    // own embedding, so every step would predict the input token again
    // (greedy decoding from BOS would stop at once). Random signs on the
    // final gains cancel that self-similarity in expectation.
    uniform(layout.rmsFinal, 1, gainSpread, /*randomSign=*/true);
    const uint64_t ropeTableFloats = uint64_t(config.seqLen) * ropeHalf;
    Segment cosTable, sinTable;
    cosTable.kind = Segment::Kind::RopeCos;
    cosTable.begin = floatIndex(layout.ropeTables);
    sinTable.kind = Segment::Kind::RopeSin;
    sinTable.begin = cosTable.begin + ropeTableFloats;
    segments.push_back(cosTable);
    segments.push_back(sinTable);
    if (!config.sharedClassifier)
      uniform(layout.classifier, 0, fanIn(config.dim));
    for (size_t i = 0; i + 1 < segments.size(); ++i)
      segments[i].end = segments[i + 1].begin;
    segments.back().end = floatIndex(layout.fileSize);
  }

  uint64_t numFloats() const { return segments.back().end; }

  void fill(uint64_t begin, uint64_t end, float *out) const {
    for (const Segment &segment : segments) {
      uint64_t from = std::max(begin, segment.begin);
      uint64_t to = std::min(end, segment.end);
      if (from >= to)
        continue;
      float *dest = out + (from - begin);
      if (segment.kind == Segment::Kind::Uniform)
        fillUniform(segment, from, to, dest);
      else
        fillRope(segment, from, to, dest);
    }
  }

private:
  void fillUniform(const Segment &segment, uint64_t from, uint64_t to,
                   float *dest) const {
    const float center = segment.center, halfWidth = segment.halfWidth;
    const bool randomSign = segment.randomSign;
    // 24 random bits -> (u - 2^23 + 0.5) / 2^23: symmetric in (-1, 1), exact.
    // The sign, when random, takes the lowest bit (worth 2^-23 of the value).
    auto toFloat = [&](uint64_t bits24) {
      float unit = (float(int32_t(bits24) - 0x800000) + 0.5f) * 0x1p-23f;
      float value = center + halfWidth * unit;
      return randomSign && (bits24 & 1) ? -value : value;
    };
    uint64_t i = from;
    if (i % 2 == 1) {
      *dest++ = toFloat((hash(i / 2) >> 16) & 0xffffff);
      ++i;
    }
    for (; i + 1 < to; i += 2) {
      uint64_t h = hash(i / 2);
      *dest++ = toFloat(h >> 40);
      *dest++ = toFloat((h >> 16) & 0xffffff);
    }
    if (i < to)
      *dest = toFloat(hash(i / 2) >> 40);
  }

  /// The legacy tables hold cos/sin(pos * 10000^(-2i/head_size)), [pos][i].
  void fillRope(const Segment &segment, uint64_t from, uint64_t to,
                float *dest) const {
    for (uint64_t index = from; index < to; ++index) {
      uint64_t local = index - segment.begin;
      double pos = double(local / ropeHalf);
      double pair = double(local % ropeHalf);
      double angle = pos * std::pow(10000.0, -2.0 * pair / double(headSize));
      *dest++ = float(segment.kind == Segment::Kind::RopeCos ? std::cos(angle)
                                                             : std::sin(angle));
    }
  }

  uint64_t hash(uint64_t pairIndex) const {
    return splitmix64(key + pairIndex * 0x9e3779b97f4a7c15ULL);
  }

  uint64_t key;
  uint64_t ropeHalf, headSize;
  std::vector<Segment> segments;
};

std::error_code writeAt(int fd, const char *data, size_t size, uint64_t offset) {
  while (size > 0) {
    ssize_t written = ::pwrite(fd, data, size, off_t(offset));
    if (written < 0) {
      if (errno == EINTR)
        continue;
      return std::error_code(errno, std::generic_category());
    }
    data += written;
    size -= size_t(written);
    offset += uint64_t(written);
  }
  return {};
}

/// Fills and writes the floats with `numThreads` workers that take 16 MiB
/// chunks in turn. Returns the first error any of them met.
std::error_code writeWeights(int fd, const WeightFiller &filler,
                             unsigned numThreads) {
  constexpr uint64_t kChunkFloats = uint64_t(1) << 22;
  const uint64_t numFloats = filler.numFloats();
  const uint64_t numChunks = (numFloats + kChunkFloats - 1) / kChunkFloats;
  std::atomic<uint64_t> nextChunk{0};
  std::atomic<bool> failed{false};
  std::mutex errorMutex;
  std::error_code firstError;

  auto worker = [&] {
    std::vector<float> buffer(std::min(kChunkFloats, numFloats));
    for (uint64_t chunk = nextChunk++; chunk < numChunks && !failed;
         chunk = nextChunk++) {
      uint64_t begin = chunk * kChunkFloats;
      uint64_t end = std::min(numFloats, begin + kChunkFloats);
      filler.fill(begin, end, buffer.data());
      if constexpr (!llvm::sys::IsLittleEndianHost)
        for (float &value : buffer)
          value = llvm::support::endian::byte_swap<float, llvm::support::little>(value);
      std::error_code error =
          writeAt(fd, reinterpret_cast<const char *>(buffer.data()),
                  (end - begin) * sizeof(float),
                  Llama2cLayout::kHeaderBytes + begin * sizeof(float));
      if (error) {
        std::lock_guard<std::mutex> lock(errorMutex);
        if (!failed.exchange(true))
          firstError = error;
      }
    }
  };
  numThreads = unsigned(std::clamp<uint64_t>(numThreads, 1, std::max<uint64_t>(numChunks, 1)));
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < numThreads; ++i)
    threads.emplace_back(worker);
  worker();
  for (std::thread &thread : threads)
    thread.join();
  return firstError;
}

} // namespace

llvm::ArrayRef<llvm::StringRef> llama2cShapeNames() {
  static const llvm::SmallVector<llvm::StringRef, 4> names = [] {
    llvm::SmallVector<llvm::StringRef, 4> result;
    for (const NamedShape &shape : kShapes)
      result.push_back(shape.name);
    return result;
  }();
  return names;
}

llvm::Expected<Llama2cConfig> lookupLlama2cShape(llvm::StringRef name) {
  for (const NamedShape &shape : kShapes)
    if (shape.name.equals_insensitive(name))
      return shape.config;
  return makeError("unknown shape '" + name + "', expected one of: " +
                   llvm::join(llama2cShapeNames(), ", "));
}

llvm::Error generateLlama2cModel(const Llama2cConfig &config, uint64_t seed,
                                 llvm::StringRef path, unsigned numThreads) {
  llvm::Expected<Llama2cLayout> layout = computeLlama2cLayout(config, path);
  if (!layout)
    return layout.takeError();

  llvm::SmallString<32> header;
  llvm::raw_svector_ostream headerStream(header);
  if (llvm::Error error = writeLlama2cHeader(headerStream, config))
    return error;

  int fd = -1;
  llvm::SmallString<256> tempPath;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueFile(path + ".tmp-%%%%%%", fd, tempPath))
    return makeError(path + ": cannot create a temporary file next to it: " +
                     ec.message());
  auto fail = [&](const llvm::Twine &what, std::error_code ec) {
    if (fd >= 0)
      ::close(fd);
    llvm::sys::fs::remove(tempPath);
    return makeError(path + ": " + what + ": " + ec.message());
  };

  // Reserve the space first: a full disk should fail now, not after minutes.
  if (::fallocate(fd, 0, 0, off_t(layout->fileSize)) != 0 && errno != EOPNOTSUPP &&
      errno != ENOSYS)
    return fail("cannot reserve " + llvm::Twine(layout->fileSize) + " bytes",
                std::error_code(errno, std::generic_category()));
  if (std::error_code ec = writeAt(fd, header.data(), header.size(), 0))
    return fail("cannot write", ec);
  if (numThreads == 0)
    numThreads = std::max(1u, std::thread::hardware_concurrency());
  WeightFiller filler(config, *layout, seed);
  if (std::error_code ec = writeWeights(fd, filler, numThreads))
    return fail("cannot write", ec);
  if (::close(fd) != 0) {
    fd = -1;
    return fail("cannot write", std::error_code(errno, std::generic_category()));
  }
  fd = -1;
  if (std::error_code ec = llvm::sys::fs::rename(tempPath, path))
    return fail(llvm::Twine("cannot rename ") + tempPath + " to it", ec);
  return llvm::Error::success();
}

} // namespace llamac::frontends
