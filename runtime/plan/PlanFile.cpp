//===- runtime/plan/PlanFile.cpp - Writing and reading plan.pb ------------===//
//
// Writing: the sidecar streams into a temporary file while its xxh64 is
// computed; writePlan writes the plan into a second temporary file, fsyncs
// both, then renames the sidecar and the plan into place (sidecar first, so a
// reader never sees a new plan next to a missing sidecar). Any failure removes
// whatever was already created.
//
// Reading trusts nothing: every size, offset and index the runtime will use to
// address memory is checked here, so the rest of the runtime can index freely.
//
//===----------------------------------------------------------------------===//
#include "runtime/plan/PlanFile.h"

#include "ir/Types.h"

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/stubs/logging.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/raw_ostream.h"

#include <xxhash.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <set>
#include <unistd.h>

using llamac::plan::Plan;
using llamac::plan::WeightsFile;

namespace llamac::runtime {

namespace {

llvm::Error fileError(llvm::StringRef file, const llvm::Twine &problem) {
  return llvm::make_error<llvm::StringError>(file + ": " + problem, llvm::inconvertibleErrorCode());
}

/// Writes all of `size` bytes, retrying after signals and partial writes.
std::error_code writeFully(int fd, const char *data, size_t size) {
  // Linux writes at most ~2 GiB per call; stay well below.
  constexpr size_t kMaxChunk = size_t(1) << 30;
  while (size > 0) {
    ssize_t written = ::write(fd, data, std::min(size, kMaxChunk));
    if (written < 0) {
      if (errno == EINTR)
        continue;
      return std::error_code(errno, std::generic_category());
    }
    data += written;
    size -= size_t(written);
  }
  return {};
}

std::error_code syncAndClose(int fd) {
  std::error_code ec;
  if (::fsync(fd) != 0)
    ec = std::error_code(errno, std::generic_category());
  if (::close(fd) != 0 && !ec)
    ec = std::error_code(errno, std::generic_category());
  return ec;
}

/// The folder holding `path` ("." for a bare file name).
std::string parentFolder(llvm::StringRef path) {
  llvm::StringRef parent = llvm::sys::path::parent_path(path);
  return parent.empty() ? std::string(".") : parent.str();
}

/// Makes the renames in `folder` durable. Best effort: some file systems
/// cannot fsync a directory, and the files themselves are already synced.
void syncFolder(llvm::StringRef folder) {
  int fd = ::open(folder.str().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  (void)::fsync(fd);
  ::close(fd);
}

bool isDirectory(llvm::StringRef path) { return llvm::sys::fs::is_directory(path); }

/// Elements of `shape`, or nothing when a dimension is negative or the product
/// overflows.
std::optional<uint64_t> elementCount(llvm::ArrayRef<int64_t> shape) {
  uint64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0)
      return std::nullopt;
    if (dim != 0 && count > UINT64_MAX / uint64_t(dim))
      return std::nullopt;
    count *= uint64_t(dim);
  }
  return count;
}

std::string shapeString(llvm::ArrayRef<int64_t> shape) {
  if (shape.empty())
    return "scalar";
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? "x" : "") + std::to_string(shape[i]);
  return text;
}

/// Checks a tensor's dtype and shape against its byte size; `what` names the
/// tensor in the message ("weights tensor 'wq'").
llvm::Error checkTensorSize(llvm::StringRef file, const llvm::Twine &what, llvm::StringRef dtypeName,
                            llvm::ArrayRef<int64_t> shape, uint64_t bytes) {
  std::optional<ir::DType> dtype = ir::parseDType(dtypeName);
  if (!dtype)
    return fileError(file, what + " has dtype '" + dtypeName + "', expected f32, f16, bf16, i8 or i32");
  std::optional<uint64_t> count = elementCount(shape);
  unsigned elementBytes = ir::byteSize(*dtype);
  if (!count || *count > UINT64_MAX / elementBytes)
    return fileError(file, what + " has shape " + shapeString(shape) + ", expected non-negative dimensions");
  if (*count * elementBytes != bytes)
    return fileError(file, what + " of shape " + shapeString(shape) + " " + dtypeName + " needs " +
                               llvm::Twine(*count * elementBytes) + " bytes, found " + llvm::Twine(bytes));
  return llvm::Error::success();
}

/// The temporary files this process is writing. They are removed on a crash or
/// Ctrl-C (LLVM's signal handlers) and at exit(), because the drivers exit() on
/// the first error, which skips the destructors that would remove them; an
/// interrupted compile must not leave gigabytes of half-written weights behind.
struct LiveTempFiles {
  std::mutex mutex;
  std::set<std::string> paths;

  static LiveTempFiles &get() {
    // Never destroyed, so the exit handler can still use it.
    static LiveTempFiles *files = [] {
      auto *created = new LiveTempFiles;
      std::atexit([] {
        LiveTempFiles &files = get();
        std::lock_guard<std::mutex> lock(files.mutex);
        for (const std::string &path : files.paths)
          ::unlink(path.c_str());
      });
      return created;
    }();
    return *files;
  }
};

void trackTempFile(llvm::StringRef path) {
  LiveTempFiles &files = LiveTempFiles::get();
  std::lock_guard<std::mutex> lock(files.mutex);
  files.paths.insert(path.str());
  llvm::sys::RemoveFileOnSignal(path);
}

/// Stops tracking `path`: it was renamed into place or removed.
void untrackTempFile(llvm::StringRef path) {
  LiveTempFiles &files = LiveTempFiles::get();
  std::lock_guard<std::mutex> lock(files.mutex);
  files.paths.erase(path.str());
  llvm::sys::DontRemoveFileOnSignal(path);
}

void removeTempFile(llvm::StringRef path) {
  llvm::sys::fs::remove(path);
  untrackTempFile(path);
}

std::string humanBytes(uint64_t bytes) {
  std::string text;
  llvm::raw_string_ostream os(text);
  if (bytes < 1024)
    os << bytes << " B";
  else if (bytes < (uint64_t(1) << 20))
    os << llvm::format("%.1f KiB", double(bytes) / 1024);
  else if (bytes < (uint64_t(1) << 30))
    os << llvm::format("%.1f MiB", double(bytes) / (1 << 20));
  else
    os << llvm::format("%.2f GiB", double(bytes) / (1 << 30));
  return os.str();
}

} // namespace

//===----------------------------------------------------------------------===//
// Checksums
//===----------------------------------------------------------------------===//

uint64_t weightsChecksum(llvm::ArrayRef<char> data) { return XXH64(data.data(), data.size(), /*seed=*/0); }

llvm::Error verifyWeightsChecksum(llvm::ArrayRef<char> data, uint64_t expected, llvm::StringRef fileName) {
  uint64_t actual = weightsChecksum(data);
  if (actual == expected)
    return llvm::Error::success();
  std::string detail;
  llvm::raw_string_ostream os(detail);
  os << " (xxh64 " << llvm::format_hex(actual, 18) << ", the plan records " << llvm::format_hex(expected, 18)
     << ")";
  return fileError(fileName, "checksum mismatch: the weights file is damaged or belongs to another plan" + os.str());
}

//===----------------------------------------------------------------------===//
// WeightsWriter
//===----------------------------------------------------------------------===//

struct WeightsWriter::HashState {
  XXH64_state_t *state = XXH64_createState();
  HashState() { XXH64_reset(state, /*seed=*/0); }
  ~HashState() { XXH64_freeState(state); }
};

WeightsWriter::WeightsWriter(std::string finalPath, std::string tempPath, int fd)
    : finalPath_(std::move(finalPath)), tempPath_(std::move(tempPath)), fd_(fd),
      hash_(std::make_unique<HashState>()) {}

WeightsWriter::WeightsWriter(WeightsWriter &&other) noexcept
    : finalPath_(std::move(other.finalPath_)), tempPath_(std::move(other.tempPath_)), fd_(other.fd_),
      state_(other.state_), hash_(std::move(other.hash_)), size_(other.size_), digest_(other.digest_),
      table_(std::move(other.table_)), names_(std::move(other.names_)) {
  other.tempPath_.clear();
  other.fd_ = -1;
  other.state_ = State::Failed;
}

WeightsWriter &WeightsWriter::operator=(WeightsWriter &&other) noexcept {
  if (this == &other)
    return *this;
  closeAndRemoveTemp();
  finalPath_ = std::move(other.finalPath_);
  tempPath_ = std::move(other.tempPath_);
  fd_ = other.fd_;
  state_ = other.state_;
  hash_ = std::move(other.hash_);
  size_ = other.size_;
  digest_ = other.digest_;
  table_ = std::move(other.table_);
  names_ = std::move(other.names_);
  other.tempPath_.clear();
  other.fd_ = -1;
  other.state_ = State::Failed;
  return *this;
}

WeightsWriter::~WeightsWriter() { closeAndRemoveTemp(); }

void WeightsWriter::closeAndRemoveTemp() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
  if (!tempPath_.empty())
    removeTempFile(tempPath_);
  tempPath_.clear();
}

llvm::Expected<WeightsWriter> WeightsWriter::create(llvm::StringRef finalPath) {
  if (finalPath.empty())
    return fileError("<empty path>", "expected a path for the weights sidecar");
  if (isDirectory(finalPath))
    return fileError(finalPath, "is a directory, expected a path for the weights sidecar");
  int fd = -1;
  llvm::SmallString<256> tempPath;
  if (std::error_code ec = llvm::sys::fs::createUniqueFile(finalPath + ".tmp-%%%%%%%%", fd, tempPath))
    return fileError(finalPath, "cannot create a temporary file in " + parentFolder(finalPath) + ": " + ec.message());
  trackTempFile(tempPath);
  return WeightsWriter(finalPath.str(), tempPath.str().str(), fd);
}

llvm::Error WeightsWriter::writeAll(const char *data, size_t size) {
  if (std::error_code ec = writeFully(fd_, data, size)) {
    state_ = State::Failed;
    return fileError(finalPath_, "cannot write the weights: " + ec.message());
  }
  XXH64_update(hash_->state, data, size);
  size_ += size;
  return llvm::Error::success();
}

llvm::Expected<uint64_t> WeightsWriter::append(llvm::StringRef name, llvm::StringRef dtype,
                                               llvm::ArrayRef<int64_t> shape, llvm::ArrayRef<char> bytes) {
  if (state_ != State::Writing)
    return fileError(finalPath_, "cannot append tensor '" + name + "': " +
                                     (state_ == State::Failed ? "an earlier write failed"
                                                              : "the sidecar is already finished"));
  if (name.empty())
    return fileError(finalPath_, "cannot append a tensor without a name");
  if (names_.contains(name))
    return fileError(finalPath_, "tensor '" + name + "' appended twice");
  if (llvm::Error error = checkTensorSize(finalPath_, "tensor '" + name + "'", dtype, shape, bytes.size()))
    return error;

  static const char kZeros[kWeightsAlignment] = {};
  uint64_t padding = llvm::alignTo(size_, kWeightsAlignment) - size_;
  if (llvm::Error error = writeAll(kZeros, padding))
    return error;
  uint64_t offset = size_;
  if (llvm::Error error = writeAll(bytes.data(), bytes.size()))
    return error;

  names_.insert(name);
  WeightsFile::Tensor &entry = *table_.add_tensors();
  entry.set_name(name.str());
  entry.set_dtype(dtype.str());
  for (int64_t dim : shape)
    entry.add_shape(dim);
  entry.set_offset(offset);
  entry.set_bytes(bytes.size());
  return offset;
}

llvm::Error WeightsWriter::finish(WeightsFile &out) {
  if (state_ != State::Writing)
    return fileError(finalPath_, state_ == State::Failed ? "cannot finish the sidecar: an earlier write failed"
                                                         : "the sidecar is already finished");
  std::error_code ec = syncAndClose(fd_);
  fd_ = -1;
  if (ec) {
    state_ = State::Failed;
    return fileError(finalPath_, "cannot write the weights: " + ec.message());
  }
  digest_ = XXH64_digest(hash_->state);
  state_ = State::Finished;

  out = table_;
  out.set_file_name(llvm::sys::path::filename(finalPath_).str());
  out.set_bytes(size_);
  out.set_xxh64(digest_);
  out.set_alignment(kWeightsAlignment);
  return llvm::Error::success();
}

llvm::Error WeightsWriter::commit() {
  assert(state_ == State::Finished && "commit() needs a finished sidecar");
  if (std::error_code ec = llvm::sys::fs::rename(tempPath_, finalPath_))
    return fileError(finalPath_, "cannot move the weights into place: " + ec.message());
  untrackTempFile(tempPath_);
  tempPath_.clear();
  state_ = State::Committed;
  return llvm::Error::success();
}

void WeightsWriter::discard() {
  assert(state_ != State::Committed && "a committed sidecar belongs to its plan");
  closeAndRemoveTemp();
  state_ = State::Failed;
}

//===----------------------------------------------------------------------===//
// writePlan
//===----------------------------------------------------------------------===//

namespace {

/// Checks that `entry` (plan.weights, or one of plan.rank_weights) describes
/// the sidecar being written.
llvm::Error checkWeightsEntry(const WeightsFile &entry, llvm::StringRef path, llvm::StringRef sidecarPath,
                              uint64_t sidecarBytes, uint64_t sidecarDigest) {
  llvm::StringRef sidecarName = llvm::sys::path::filename(sidecarPath);
  if (entry.file_name() != sidecarName || entry.bytes() != sidecarBytes || entry.xxh64() != sidecarDigest)
    return fileError(path, "the plan's weights entry ('" + entry.file_name() + "', " + llvm::Twine(entry.bytes()) +
                               " bytes) does not describe the sidecar being written ('" + sidecarName + "', " +
                               llvm::Twine(sidecarBytes) + " bytes); fill it with WeightsWriter::finish");
  return llvm::Error::success();
}

} // namespace

llvm::Error writePlan(const Plan &plan, llvm::StringRef path, WeightsWriter &weights,
                      llvm::MutableArrayRef<WeightsWriter> rankWeights) {
  // Every sidecar: rank 0's (or the only one), then those of ranks 1..N-1.
  std::vector<WeightsWriter *> sidecars = {&weights};
  std::vector<const WeightsFile *> entries = {&plan.weights()};
  for (WeightsWriter &w : rankWeights)
    sidecars.push_back(&w);
  for (const WeightsFile &entry : plan.rank_weights())
    entries.push_back(&entry);

  // Whatever fails below, the sidecars go too: a plan is all its files or none.
  auto fail = [&](llvm::Error error) {
    for (WeightsWriter *w : sidecars)
      if (w->state_ != WeightsWriter::State::Committed)
        w->discard();
    return error;
  };

  if (path.empty())
    return fail(fileError("<empty path>", "expected a path for the plan"));
  if (isDirectory(path))
    return fail(fileError(path, "is a directory, expected a path for the plan"));
  for (WeightsWriter *w : sidecars)
    switch (w->state_) {
    case WeightsWriter::State::Writing:
      return fail(fileError(path, "the weights sidecar " + w->finalPath_ +
                                      " is not finished (call WeightsWriter::finish first)"));
    case WeightsWriter::State::Failed:
      return fail(fileError(path, "the weights sidecar " + w->finalPath_ + " could not be written"));
    case WeightsWriter::State::Committed:
      // Not discarded: the sidecar is in place and belongs to the plan written before.
      return fail(fileError(path, "the weights sidecar " + w->finalPath_ + " already belongs to a written plan"));
    case WeightsWriter::State::Finished:
      break;
    }
  if (entries.size() != sidecars.size())
    return fail(fileError(path, "the plan lists " + llvm::Twine(entries.size()) + " weights sidecars, " +
                                    llvm::Twine(sidecars.size()) + " are being written"));
  for (size_t i = 0; i < sidecars.size(); ++i)
    if (llvm::Error error =
            checkWeightsEntry(*entries[i], path, sidecars[i]->finalPath_, sidecars[i]->size_, sidecars[i]->digest_))
      return fail(std::move(error));
  if (plan.format_version() == 0)
    return fail(fileError(path, "the plan has no format_version (set it to kPlanFormatVersion)"));

  size_t planBytes = plan.ByteSizeLong();
  if (planBytes > size_t(INT_MAX))
    return fail(fileError(path, "the plan is " + llvm::Twine(planBytes) +
                                    " bytes, more than the 2 GiB a protobuf message can hold"));
  std::string serialized;
  if (!plan.SerializeToString(&serialized))
    return fail(fileError(path, "cannot serialize the plan"));

  int fd = -1;
  llvm::SmallString<256> tempPath;
  if (std::error_code ec = llvm::sys::fs::createUniqueFile(path + ".tmp-%%%%%%%%", fd, tempPath))
    return fail(fileError(path, "cannot create a temporary file in " + parentFolder(path) + ": " + ec.message()));
  trackTempFile(tempPath);
  auto removeTemp = llvm::make_scope_exit([&] { removeTempFile(tempPath); });

  std::error_code writeError = writeFully(fd, serialized.data(), serialized.size());
  std::error_code closeError = syncAndClose(fd);
  if (writeError || closeError)
    return fail(fileError(path, "cannot write the plan: " + (writeError ? writeError : closeError).message()));

  // The sidecars' names in the plan are relative to the plan's folder.
  for (WeightsWriter *w : sidecars) {
    bool sameFolder = false;
    if (llvm::sys::fs::equivalent(parentFolder(path), parentFolder(w->finalPath_), sameFolder) || !sameFolder)
      return fail(fileError(path, "the weights sidecar " + w->finalPath_ + " is not in the plan's folder"));
  }

  // Sidecars first, so a reader never sees a new plan next to a missing sidecar.
  auto removeCommitted = [&] {
    for (WeightsWriter *w : sidecars)
      if (w->state_ == WeightsWriter::State::Committed) {
        llvm::sys::fs::remove(w->finalPath_);
        w->state_ = WeightsWriter::State::Failed;
      }
  };
  for (WeightsWriter *w : sidecars)
    if (llvm::Error error = w->commit()) {
      removeCommitted();
      return fail(std::move(error));
    }
  if (std::error_code ec = llvm::sys::fs::rename(tempPath, path)) {
    removeCommitted();
    return fileError(path, "cannot move the plan into place: " + ec.message());
  }
  removeTemp.release();
  untrackTempFile(tempPath);
  syncFolder(parentFolder(path));
  return llvm::Error::success();
}

//===----------------------------------------------------------------------===//
// readPlan
//===----------------------------------------------------------------------===//

namespace {

/// The size of `path`, which must be a regular file: `role` says what it is
/// for ("a plan file", "the plan's weights sidecar"); `missingNote` follows
/// "no such file" when it is not empty.
llvm::Expected<uint64_t> regularFileSize(llvm::StringRef path, llvm::StringRef role, llvm::StringRef missingNote) {
  llvm::sys::fs::file_status status;
  if (std::error_code ec = llvm::sys::fs::status(path, status)) {
    if (ec == std::errc::no_such_file_or_directory)
      return fileError(path, missingNote.empty() ? "no such file" : "no such file (" + missingNote + ")");
    return fileError(path, "cannot read: " + ec.message());
  }
  if (status.type() == llvm::sys::fs::file_type::directory_file)
    return fileError(path, "is a directory, expected " + role);
  if (status.type() != llvm::sys::fs::file_type::regular_file)
    return fileError(path, "is not a regular file, expected " + role);
  return status.getSize();
}

llvm::Error parsePlan(llvm::StringRef path, llvm::StringRef contents, Plan &plan) {
  google::protobuf::io::ArrayInputStream input(contents.data(), int(contents.size()));
  google::protobuf::io::CodedInputStream coded(&input);
  // A plan holds every kernel's cubins; keep protobuf's limit at its maximum
  // (2 GiB) rather than the 64 MiB older releases defaulted to.
  coded.SetTotalBytesLimit(INT_MAX);
  // Hostile input can make protobuf log (e.g. invalid UTF-8 in a string);
  // the error below says what matters.
  google::protobuf::LogSilencer silence;
  if (!plan.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage())
    return fileError(path, "not a llamac plan (the file does not parse as a protobuf Plan message)");
  if (plan.format_version() == 0)
    return fileError(path, "not a llamac plan (no format version)");
  if (plan.format_version() != kPlanFormatVersion && plan.format_version() != kPlanFormatVersionTensorParallel)
    return fileError(path, "plan format version " + llvm::Twine(plan.format_version()) +
                               ", this llamarun reads versions " + llvm::Twine(kPlanFormatVersion) + " and " +
                               llvm::Twine(kPlanFormatVersionTensorParallel));
  bool partitioned = plan.tensor_parallel() > 0;
  if (partitioned != (plan.format_version() == kPlanFormatVersionTensorParallel))
    return fileError(path, "plan format version " + llvm::Twine(plan.format_version()) + " with tensor_parallel " +
                               llvm::Twine(plan.tensor_parallel()) + ", expected version " +
                               llvm::Twine(kPlanFormatVersionTensorParallel) +
                               " exactly for tensor parallel plans (tensor_parallel > 0)");
  // A plan for thousands of GPUs is damage, not ambition.
  constexpr uint32_t kMaxRanks = 64;
  if (plan.tensor_parallel() > kMaxRanks)
    return fileError(path, "tensor_parallel " + llvm::Twine(plan.tensor_parallel()) + ", expected at most " +
                               llvm::Twine(kMaxRanks) + " ranks");
  uint32_t extraSidecars = plan.tensor_parallel() > 1 ? plan.tensor_parallel() - 1 : 0;
  if (uint32_t(plan.rank_weights_size()) != extraSidecars)
    return fileError(path, "tensor_parallel " + llvm::Twine(plan.tensor_parallel()) + " with " +
                               llvm::Twine(plan.rank_weights_size()) + " per-rank weights files, expected " +
                               llvm::Twine(extraSidecars));
  return llvm::Error::success();
}

/// Checks that [offset, offset + bytes) lies inside a region of regionBytes.
llvm::Error checkRegion(llvm::StringRef path, const llvm::Twine &what, uint64_t offset, uint64_t bytes,
                        llvm::StringRef region, uint64_t regionBytes) {
  if (offset > regionBytes || bytes > regionBytes - offset)
    return fileError(path, what + " (offset " + llvm::Twine(offset) + ", " + llvm::Twine(bytes) +
                               " bytes) lies outside the " + region + " (" + llvm::Twine(regionBytes) + " bytes)");
  return llvm::Error::success();
}

/// Checks that a pointer argument points inside its region.
llvm::Error checkPointer(llvm::StringRef path, const llvm::Twine &what, uint64_t offset, llvm::StringRef region,
                         uint64_t regionBytes) {
  if (offset >= regionBytes)
    return fileError(path, what + " points at offset " + llvm::Twine(offset) + ", outside the " + region + " (" +
                               llvm::Twine(regionBytes) + " bytes)");
  return llvm::Error::success();
}

/// Checks a collective launch's kind and buffers.
llvm::Error checkCollective(llvm::StringRef path, const Plan &plan, const llvm::Twine &what,
                            const llamac::plan::Function::Launch::Collective &collective) {
  using Collective = llamac::plan::Function::Launch::Collective;
  std::string name = what.str();
  if (plan.tensor_parallel() == 0)
    return fileError(path, name + " is a collective, in a plan that is not tensor parallel");
  uint64_t arena = plan.memory().arena_bytes();
  uint64_t received = collective.bytes();
  switch (collective.kind()) {
  case Collective::ALL_REDUCE_SUM:
    if (collective.bytes() % 4 != 0)
      return fileError(path, name + " sums " + llvm::Twine(collective.bytes()) + " bytes, not a whole number of f32");
    break;
  case Collective::ALL_GATHER:
    received = collective.bytes() * plan.tensor_parallel();
    break;
  default:
    return fileError(path, name + " has unknown collective kind " + llvm::Twine(int(collective.kind())));
  }
  if (collective.bytes() == 0)
    return fileError(path, name + " sends nothing");
  if (llvm::Error error = checkRegion(path, name + " send buffer", collective.send_offset(), collective.bytes(),
                                      "arena", arena))
    return error;
  return checkRegion(path, name + " receive buffer", collective.recv_offset(), received, "arena", arena);
}

/// Checks every index and offset the runtime will use to address memory.
llvm::Error checkLaunches(llvm::StringRef path, const Plan &plan) {
  using Arg = llamac::plan::Function::Launch::Arg;
  const llamac::plan::MemoryPlan &memory = plan.memory();
  if (!llamac::plan::Tokenizer::Format_IsValid(plan.tokenizer().format()))
    return fileError(path, "unknown tokenizer format " + llvm::Twine(plan.tokenizer().format()));
  for (const llamac::plan::MemoryPlan::Buffer &buffer : memory.buffers())
    if (llvm::Error error = checkRegion(path, "buffer " + buffer.value() + " of " + buffer.function(),
                                        buffer.offset(), buffer.bytes(), "arena", memory.arena_bytes()))
      return error;
  for (const llamac::plan::Function &function : plan.functions()) {
    std::string name = "function '" + function.name() + "'";
    if (llvm::Error error = checkRegion(path, name + " output", function.output().offset(),
                                        function.output().bytes(), "arena", memory.arena_bytes()))
      return error;
    for (int l = 0; l < function.launches_size(); ++l) {
      const llamac::plan::Function::Launch &launch = function.launches(l);
      if (launch.has_collective() && launch.collective().kind() != llamac::plan::Function::Launch::Collective::NONE) {
        if (llvm::Error error = checkCollective(path, plan, name + " launch " + llvm::Twine(l), launch.collective()))
          return error;
        continue;
      }
      if (launch.kernel() >= uint32_t(plan.kernels_size()))
        return fileError(path, name + " launch " + llvm::Twine(l) + " uses kernel " + llvm::Twine(launch.kernel()) +
                                   ", the plan has " + llvm::Twine(plan.kernels_size()) + " kernels");
      for (int a = 0; a < launch.args_size(); ++a) {
        const Arg &arg = launch.args(a);
        std::string what = (name + " launch " + llvm::Twine(l) + " argument " + llvm::Twine(a)).str();
        llvm::Error error = llvm::Error::success();
        switch (arg.kind()) {
        case Arg::ARENA:
          error = checkPointer(path, what, arg.offset(), "arena", memory.arena_bytes());
          break;
        case Arg::WEIGHT:
          error = checkPointer(path, what, arg.offset(), "weights", plan.weights().bytes());
          break;
        case Arg::KV_CACHE:
          error = checkPointer(path, what, arg.offset(), "KV cache", memory.kv_cache_bytes());
          break;
        case Arg::TOKEN:
        case Arg::POS:
        case Arg::HISTORY:
        case Arg::INT_SCALAR:
        case Arg::FLOAT_SCALAR:
          break;
        case Arg::RANK:
          if (plan.tensor_parallel() == 0)
            error = fileError(path, what + " is the rank, in a plan that is not tensor parallel");
          break;
        default:
          error = fileError(path, what + " has unknown kind " + llvm::Twine(int(arg.kind())));
        }
        if (error)
          return error;
      }
    }
  }
  return llvm::Error::success();
}

/// Checks the tensor table against the sidecar size the plan records.
llvm::Error checkWeightsTable(llvm::StringRef path, const WeightsFile &weights) {
  if (weights.file_name().empty())
    return fileError(path, "the plan names no weights file");
  if (llvm::sys::path::is_absolute(weights.file_name()))
    return fileError(path, "weights file name '" + weights.file_name() +
                               "' is absolute, expected a name relative to the plan's folder");
  uint32_t alignment = weights.alignment();
  if (!llvm::isPowerOf2_32(alignment))
    return fileError(path, "weights alignment " + llvm::Twine(alignment) + " is not a power of two");
  llvm::StringSet<> names;
  for (const WeightsFile::Tensor &tensor : weights.tensors()) {
    std::string what = "weights tensor '" + tensor.name() + "'";
    if (!names.insert(tensor.name()).second)
      return fileError(path, what + " is listed twice");
    if (llvm::Error error = checkTensorSize(path, what, tensor.dtype(),
                                            llvm::ArrayRef<int64_t>(tensor.shape().data(), tensor.shape_size()),
                                            tensor.bytes()))
      return error;
    if (tensor.offset() % alignment != 0)
      return fileError(path, what + " starts at offset " + llvm::Twine(tensor.offset()) +
                                 ", expected a multiple of " + llvm::Twine(alignment));
    if (llvm::Error error =
            checkRegion(path, what, tensor.offset(), tensor.bytes(), weights.file_name(), weights.bytes()))
      return error;
  }
  return llvm::Error::success();
}

/// Checks a tensor parallel plan's sidecar of rank 1..N-1 against rank 0's:
/// the same tensors at the same offsets, in a file of its own.
llvm::Error checkRankWeightsTable(llvm::StringRef path, const WeightsFile &rank0, const WeightsFile &rank) {
  if (llvm::Error error = checkWeightsTable(path, rank))
    return error;
  std::string what = "weights file '" + rank.file_name() + "'";
  if (rank.file_name() == rank0.file_name())
    return fileError(path, what + " is listed for two ranks");
  if (rank.bytes() != rank0.bytes())
    return fileError(path, what + " is " + llvm::Twine(rank.bytes()) + " bytes, rank 0's '" + rank0.file_name() +
                               "' " + llvm::Twine(rank0.bytes()) + "; every rank's sidecar has the same size");
  if (rank.tensors_size() != rank0.tensors_size() || rank.alignment() != rank0.alignment())
    return fileError(path, what + " has " + llvm::Twine(rank.tensors_size()) + " tensors, rank 0's '" +
                               rank0.file_name() + "' " + llvm::Twine(rank0.tensors_size()) +
                               "; every rank has the same tensor table");
  for (int i = 0; i < rank.tensors_size(); ++i) {
    const WeightsFile::Tensor &a = rank.tensors(i), &b = rank0.tensors(i);
    if (a.name() != b.name() || a.dtype() != b.dtype() || a.offset() != b.offset() || a.bytes() != b.bytes() ||
        !std::equal(a.shape().begin(), a.shape().end(), b.shape().begin(), b.shape().end()))
      return fileError(path, what + " tensor " + llvm::Twine(i) + " ('" + a.name() + "' at offset " +
                                 llvm::Twine(a.offset()) + ") differs from rank 0's ('" + b.name() + "' at offset " +
                                 llvm::Twine(b.offset()) + "); every rank has the same tensor table");
  }
  return llvm::Error::success();
}

/// Maps the sidecar `entry` names (next to the plan at `path`) and checks its
/// size and, unless `verify` is No, its checksum.
llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> mapSidecar(llvm::StringRef path, const WeightsFile &entry,
                                                               VerifyWeights verify) {
  llvm::SmallString<256> sidecarPath = llvm::sys::path::parent_path(path);
  llvm::sys::path::append(sidecarPath, entry.file_name());
  llvm::Expected<uint64_t> sidecarBytes =
      regularFileSize(sidecarPath, "the plan's weights sidecar", "the plan's weights sidecar");
  if (!sidecarBytes)
    return sidecarBytes.takeError();
  if (*sidecarBytes != entry.bytes())
    return fileError(sidecarPath, "file is " + llvm::Twine(*sidecarBytes) + " bytes, " + path + " says " +
                                      llvm::Twine(entry.bytes()));
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> mapped =
      llvm::MemoryBuffer::getFile(sidecarPath, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!mapped)
    return fileError(sidecarPath, "cannot read: " + mapped.getError().message());
  if ((*mapped)->getBufferSize() != entry.bytes())
    return fileError(sidecarPath, "file is " + llvm::Twine((*mapped)->getBufferSize()) + " bytes, " + path +
                                      " says " + llvm::Twine(entry.bytes()));
  if (verify == VerifyWeights::Yes)
    if (llvm::Error error = verifyWeightsChecksum(
            llvm::ArrayRef<char>((*mapped)->getBufferStart(), (*mapped)->getBufferSize()), entry.xxh64(),
            sidecarPath))
      return error;
  return std::move(*mapped);
}

} // namespace

const char *LoadedPlan::tensorData(const WeightsFile::Tensor &tensor) const {
  assert(weights && tensor.offset() + tensor.bytes() <= weights->getBufferSize() && "tensor outside the sidecar");
  return weights->getBufferStart() + tensor.offset();
}

llvm::Expected<LoadedPlan> readPlan(llvm::StringRef path, VerifyWeights verify) {
  llvm::Expected<uint64_t> planBytes = regularFileSize(path, "a plan file", "");
  if (!planBytes)
    return planBytes.takeError();
  if (*planBytes == 0)
    return fileError(path, "file is empty, expected a llamac plan");
  if (*planBytes > uint64_t(INT_MAX))
    return fileError(path, "file is " + llvm::Twine(*planBytes) +
                               " bytes, more than the 2 GiB a protobuf plan can hold; not a llamac plan");
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> contents =
      llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
  if (!contents)
    return fileError(path, "cannot read: " + contents.getError().message());

  LoadedPlan loaded;
  if (llvm::Error error = parsePlan(path, (*contents)->getBuffer(), loaded.plan))
    return error;
  contents->reset();
  const WeightsFile &weights = loaded.plan.weights();
  if (llvm::Error error = checkLaunches(path, loaded.plan))
    return error;
  if (llvm::Error error = checkWeightsTable(path, weights))
    return error;
  for (const WeightsFile &rankWeights : loaded.plan.rank_weights())
    if (llvm::Error error = checkRankWeightsTable(path, weights, rankWeights))
      return error;

  auto mapped = mapSidecar(path, weights, verify);
  if (!mapped)
    return mapped.takeError();
  loaded.weights = std::move(*mapped);
  for (const WeightsFile &rankWeights : loaded.plan.rank_weights()) {
    auto rankMapped = mapSidecar(path, rankWeights, verify);
    if (!rankMapped)
      return rankMapped.takeError();
    loaded.rankWeights.push_back(std::move(*rankMapped));
  }
  return loaded;
}

//===----------------------------------------------------------------------===//
// describePlan
//===----------------------------------------------------------------------===//

std::string describePlan(const Plan &plan) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << "llamac plan, format " << plan.format_version() << ", produced by "
     << (plan.producer().empty() ? "an unknown compiler" : plan.producer()) << "\n";

  const llamac::plan::ModelConfig &config = plan.config();
  os << "model: " << (config.model_name().empty() ? "(unnamed)" : config.model_name());
  if (!config.source_file().empty())
    os << " from " << config.source_file();
  os << "\n  dim " << config.dim() << ", hidden " << config.hidden_dim() << ", " << config.n_layers() << " layers, "
     << config.n_heads() << " heads, " << config.n_kv_heads() << " kv heads, head size " << config.head_size()
     << ", vocab " << config.vocab_size() << ", max seq len " << config.seq_len() << "\n";
  os << "  rope theta " << llvm::format("%g", config.rope_theta()) << ", rms eps "
     << llvm::format("%g", config.rms_eps()) << ", "
     << (config.shared_classifier() ? "shared classifier" : "separate classifier") << "\n";
  os << "  weights " << config.weight_dtype() << ", kv cache " << config.kv_dtype() << "\n";

  const llamac::plan::Tokenizer &tokenizer = plan.tokenizer();
  os << "tokenizer: ";
  switch (tokenizer.format()) {
  case llamac::plan::Tokenizer::SENTENCEPIECE:
    os << "sentencepiece";
    break;
  case llamac::plan::Tokenizer::LLAMA2C:
    os << "llama2.c";
    break;
  default:
    os << "none";
  }
  if (tokenizer.format() != llamac::plan::Tokenizer::NONE) {
    os << ", " << humanBytes(tokenizer.data().size());
    if (!tokenizer.source_file().empty())
      os << " from " << tokenizer.source_file();
  }
  os << "\n";

  std::set<std::string> cubinArchs, ptxArchs;
  for (const llamac::plan::Kernel &kernel : plan.kernels()) {
    for (const llamac::plan::Kernel::Binary &binary : kernel.binaries())
      cubinArchs.insert(binary.arch());
    if (!kernel.ptx().empty())
      ptxArchs.insert(kernel.ptx_arch().empty() ? "unknown arch" : kernel.ptx_arch());
  }
  auto join = [](const std::set<std::string> &items) {
    std::string joined;
    for (const std::string &item : items)
      joined += (joined.empty() ? "" : ", ") + item;
    return joined;
  };
  os << "kernels: " << plan.kernels_size();
  os << (cubinArchs.empty() ? ", no cubins" : ", cubins for " + join(cubinArchs));
  if (!ptxArchs.empty())
    os << ", ptx for " << join(ptxArchs);
  os << "\n";

  os << "functions:";
  if (plan.functions().empty())
    os << " none";
  for (int i = 0; i < plan.functions_size(); ++i) {
    const llamac::plan::Function &function = plan.functions(i);
    os << (i ? ", " : " ") << function.name() << " (" << function.launches_size()
       << (function.launches_size() == 1 ? " launch)" : " launches)");
  }
  os << "\n";

  const llamac::plan::MemoryPlan &memory = plan.memory();
  os << "memory: arena " << humanBytes(memory.arena_bytes()) << " (" << humanBytes(memory.arena_bytes_unplanned())
     << " without reuse, " << memory.buffers_size() << " buffers), kv cache " << humanBytes(memory.kv_cache_bytes())
     << "\n";
  const WeightsFile &weights = plan.weights();
  os << "weights: " << humanBytes(weights.bytes()) << " in " << weights.tensors_size() << " tensors ("
     << (weights.file_name().empty() ? "no file" : weights.file_name()) << ", xxh64 "
     << llvm::format_hex(weights.xxh64(), 18) << ")\n";
  if (plan.tensor_parallel() > 0) {
    os << "tensor parallel: " << plan.tensor_parallel() << (plan.tensor_parallel() == 1 ? " rank" : " ranks")
       << " (sizes are per rank); weights of rank 0 in " << weights.file_name();
    for (int r = 0; r < plan.rank_weights_size(); ++r)
      os << ", rank " << r + 1 << " in " << plan.rank_weights(r).file_name() << " (xxh64 "
         << llvm::format_hex(plan.rank_weights(r).xxh64(), 18) << ")";
    os << "\n";
  }
  return os.str();
}

} // namespace llamac::runtime
