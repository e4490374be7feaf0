//===- tests/plan/PlanFileTest.cpp - plan.pb and its weights sidecar ------===//
//
// Round trip of every field, atomic writes (a failed write leaves no file
// behind), and every error readPlan reports for a damaged, truncated or
// foreign plan or sidecar, each naming the file at fault.
//
//===----------------------------------------------------------------------===//
#include "runtime/plan/PlanFile.h"
#include "runtime/text/Tokenizer.h"

#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/message_differencer.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <sys/resource.h>
#include <unistd.h>

using llamac::plan::Plan;
using llamac::plan::WeightsFile;
using namespace llamac::runtime;

namespace {

std::string errorText(llvm::Error error) { return llvm::toString(std::move(error)); }

template <typename T> std::string errorText(llvm::Expected<T> &value) {
  EXPECT_FALSE(bool(value)) << "expected an error";
  return value ? std::string() : llvm::toString(value.takeError());
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const std::string &path, llvm::StringRef contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), std::streamsize(contents.size()));
}

/// Writes `plan` as plan.pb without any of writePlan's checks: a hostile file.
void writeRawPlan(const Plan &plan, const std::string &path) { writeFile(path, plan.SerializeAsString()); }

std::vector<char> pattern(size_t size, unsigned seed) {
  std::vector<char> bytes(size);
  for (size_t i = 0; i < size; ++i)
    bytes[i] = char((i * 131 + seed * 7 + 3) & 0xff);
  return bytes;
}

/// A plan with every field of every message set to a non-default value (the
/// weights are filled by writeTestPlan).
Plan makePlan() {
  Plan plan;
  plan.set_format_version(kPlanFormatVersion);
  plan.set_producer("llamac test");
  auto &config = *plan.mutable_config();
  config.set_dim(64);
  config.set_hidden_dim(172);
  config.set_n_layers(5);
  config.set_n_heads(8);
  config.set_n_kv_heads(4);
  config.set_vocab_size(512);
  config.set_seq_len(256);
  config.set_head_size(8);
  config.set_rope_theta(10000.0f);
  config.set_rms_eps(1e-5f);
  config.set_shared_classifier(true);
  config.set_weight_dtype("f16");
  config.set_kv_dtype("bf16");
  config.set_source_file("stories260K.bin");
  config.set_model_name("stories260K");

  auto &tokenizer = *plan.mutable_tokenizer();
  tokenizer.set_format(llamac::plan::Tokenizer::SENTENCEPIECE);
  tokenizer.set_data(std::string("\x0a\x05hello\x00\xff", 9));
  tokenizer.set_source_file("tok512.model");

  plan.set_ir("func @decode(%token: tensor<i32>, %pos: tensor<i32>) -> tensor<512xf32> {\n  ...\n}\n");

  auto &memory = *plan.mutable_memory();
  memory.set_arena_bytes(4096);
  memory.set_arena_bytes_unplanned(16384);
  memory.set_kv_cache_bytes(81920);
  memory.set_weight_bytes(1);  // overwritten once the sidecar is known
  auto &buffer = *memory.add_buffers();
  buffer.set_value("%12");
  buffer.set_function("decode");
  buffer.set_offset(256);
  buffer.set_bytes(256);
  buffer.set_first_op(3);
  buffer.set_last_op(7);
  buffer.set_type("tensor<64xf32>");

  for (int k = 0; k < 2; ++k) {
    auto &kernel = *plan.add_kernels();
    kernel.set_name("rmsnorm_matmul_" + std::to_string(k));
    kernel.set_op("%7 = rmsnorm_matmul %5, %rms_att.0, %wq.0");
    kernel.set_source("extern \"C\" __global__ void rmsnorm_matmul() {}\n");
    auto &binary = *kernel.add_binaries();
    binary.set_arch("sm_90");
    binary.set_cubin(std::string("\x7f" "ELF\x00\x01\x02", 7));
    auto &older = *kernel.add_binaries();
    older.set_arch("sm_80");
    older.set_cubin(std::string("\x7f" "ELF\x00\x03", 6));
    kernel.set_ptx(".version 8.0\n.target sm_90\n");
    kernel.set_ptx_arch("compute_90");
  }

  const char *names[] = {"decode", "decode_greedy"};
  for (const char *name : names) {
    auto &function = *plan.add_functions();
    function.set_name(name);
    auto &launch = *function.add_launches();
    launch.set_kernel(1);
    launch.set_grid_x(2);
    launch.set_grid_y(3);
    launch.set_grid_z(4);
    launch.set_block_x(128);
    launch.set_block_y(2);
    launch.set_block_z(1);
    launch.set_shared_bytes(1024);
    launch.set_persistent(true);
    launch.set_grid_stride(true);
    using Arg = llamac::plan::Function::Launch::Arg;
    auto &arena = *launch.add_args();
    arena.set_kind(Arg::ARENA);
    arena.set_offset(512);
    auto &weight = *launch.add_args();
    weight.set_kind(Arg::WEIGHT);
    weight.set_offset(0);
    auto &kv = *launch.add_args();
    kv.set_kind(Arg::KV_CACHE);
    kv.set_offset(2048);
    launch.add_args()->set_kind(Arg::TOKEN);
    launch.add_args()->set_kind(Arg::POS);
    auto &integer = *launch.add_args();
    integer.set_kind(Arg::INT_SCALAR);
    integer.set_int_value(-42);
    auto &real = *launch.add_args();
    real.set_kind(Arg::FLOAT_SCALAR);
    real.set_float_value(0.125f);
    function.mutable_output()->set_offset(1024);
    function.mutable_output()->set_bytes(2048);
    function.mutable_output()->set_dtype("f32");
  }
  return plan;
}

/// Adds the full name of every field set in `message` (recursively; a
/// repeated field counts when it is not empty) to `seen`.
void collectSetFields(const google::protobuf::Message &message, std::set<std::string> &seen) {
  const google::protobuf::Reflection *reflection = message.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor *> fields;
  reflection->ListFields(message, &fields);  // only fields holding a non-default value
  for (const google::protobuf::FieldDescriptor *field : fields) {
    seen.insert(field->full_name());
    if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE)
      continue;
    if (field->is_repeated())
      for (int i = 0; i < reflection->FieldSize(message, field); ++i)
        collectSetFields(reflection->GetRepeatedMessage(message, field, i), seen);
    else
      collectSetFields(reflection->GetMessage(message, field), seen);
  }
}

/// The full name of every field reachable from `descriptor`.
void collectAllFields(const google::protobuf::Descriptor *descriptor, std::set<std::string> &all) {
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor *field = descriptor->field(i);
    if (all.insert(field->full_name()).second && field->message_type())
      collectAllFields(field->message_type(), all);
  }
}

/// The fields only tensor parallel plans set (TensorParallelRoundTripKeepsEveryField).
bool tensorParallelOnly(llvm::StringRef name) {
  return name == "llamac.plan.Plan.tensor_parallel" || name == "llamac.plan.Plan.rank_weights" ||
         name.startswith("llamac.plan.Function.Launch.collective") ||
         name.startswith("llamac.plan.Function.Launch.Collective.");
}

/// Fails the test when some field of the Plan schema holds its default value
/// everywhere in `plan`: the round trip must exercise every field (those of
/// tensor parallel plans only when `tensorParallel`).
void expectEveryFieldSet(const Plan &plan, bool tensorParallel = false) {
  std::set<std::string> seen, all;
  collectSetFields(plan, seen);
  collectAllFields(Plan::descriptor(), all);
  for (const std::string &name : all)
    if (tensorParallel || !tensorParallelOnly(name)) {
      EXPECT_TRUE(seen.count(name)) << name << " is never set";
    }
}

class PlanFileTest : public ::testing::Test {
protected:
  void SetUp() override {
    llvm::SmallString<128> dir;
    ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("llamac-plan-test", dir));
    dir_ = dir.str().str();
    planPath_ = dir_ + "/plan.pb";
    weightsPath_ = dir_ + "/plan.pb.weights";
  }
  void TearDown() override { llvm::sys::fs::remove_directories(dir_); }

  /// The names in the test folder, sorted.
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    std::error_code ec;
    for (llvm::sys::fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec))
      names.push_back(llvm::sys::path::filename(it->path()).str());
    std::sort(names.begin(), names.end());
    return names;
  }

  /// Writes `plan` with tensors_ as its weights; returns the plan as written.
  Plan writeTestPlan(Plan plan = makePlan()) {
    auto weights = WeightsWriter::create(weightsPath_);
    EXPECT_TRUE(bool(weights)) << (weights ? "" : llvm::toString(weights.takeError()));
    if (!weights)
      return plan;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const TestTensor &t = tensors_[i];
      auto offset = weights->append(t.name, t.dtype, t.shape, t.bytes);
      EXPECT_TRUE(bool(offset)) << (offset ? "" : llvm::toString(offset.takeError()));
      if (offset) {
        EXPECT_EQ(*offset, i * kWeightsAlignment) << t.name;
      }
    }
    EXPECT_FALSE(weights->finish(*plan.mutable_weights()));
    plan.mutable_memory()->set_weight_bytes(plan.weights().bytes());
    EXPECT_FALSE(writePlan(plan, planPath_, *weights));
    return plan;
  }

  struct TestTensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::vector<char> bytes;
  };
  std::vector<TestTensor> tensors_ = {
      {"tok_embeddings", "f32", {3, 5}, pattern(60, 1)},
      {"layers.0.wq", "f16", {7}, pattern(14, 2)},
      {"rms_final", "bf16", {2, 1, 2}, pattern(8, 3)},
  };
  std::string dir_, planPath_, weightsPath_;
};

//===----------------------------------------------------------------------===//
// Round trip
//===----------------------------------------------------------------------===//

TEST_F(PlanFileTest, TensorParallelRoundTripKeepsEveryField) {
  using Arg = llamac::plan::Function::Launch::Arg;
  using Collective = llamac::plan::Function::Launch::Collective;
  Plan plan = makePlan();
  plan.set_format_version(kPlanFormatVersionTensorParallel);
  plan.set_tensor_parallel(2);
  for (auto &function : *plan.mutable_functions()) {
    function.mutable_launches(0)->add_args()->set_kind(Arg::RANK);
    Collective &collective = *function.add_launches()->mutable_collective();
    collective.set_kind(Collective::ALL_GATHER);
    collective.set_send_offset(256);
    collective.set_recv_offset(1024);
    collective.set_bytes(512);
  }
  std::vector<WeightsWriter> rankWeights;
  auto weights = WeightsWriter::create(weightsPath_);
  auto rank1 = WeightsWriter::create(weightsPath_ + ".rank1");
  ASSERT_TRUE(weights && rank1);
  rankWeights.push_back(std::move(*rank1));
  for (const TestTensor &t : tensors_) {
    ASSERT_TRUE(bool(weights->append(t.name, t.dtype, t.shape, t.bytes)));
    std::vector<char> other(t.bytes.rbegin(), t.bytes.rend());
    ASSERT_TRUE(bool(rankWeights[0].append(t.name, t.dtype, t.shape, other)));
  }
  ASSERT_FALSE(weights->finish(*plan.mutable_weights()));
  ASSERT_FALSE(rankWeights[0].finish(*plan.add_rank_weights()));
  plan.mutable_memory()->set_weight_bytes(plan.weights().bytes());
  ASSERT_FALSE(writePlan(plan, planPath_, *weights, rankWeights));
  expectEveryFieldSet(plan, /*tensorParallel=*/true);
  EXPECT_EQ(files(), (std::vector<std::string>{"plan.pb", "plan.pb.weights", "plan.pb.weights.rank1"}));

  auto loaded = readPlan(planPath_);
  ASSERT_TRUE(bool(loaded)) << llvm::toString(loaded.takeError());
  google::protobuf::util::MessageDifferencer differencer;
  std::string differences;
  differencer.ReportDifferencesToString(&differences);
  EXPECT_TRUE(differencer.Compare(plan, loaded->plan)) << differences;
  EXPECT_EQ(loaded->ranks(), 2u);
  EXPECT_EQ(loaded->weightsFileOf(1).file_name(), "plan.pb.weights.rank1");
  const WeightsFile::Tensor &first = plan.weights().tensors(0);
  EXPECT_EQ(loaded->weightsOf(1).substr(first.offset(), first.bytes()),
            std::string(tensors_[0].bytes.rbegin(), tensors_[0].bytes.rend()));

  // A rank's sidecar is checked like rank 0's, and named.
  std::string damaged = readFile(weightsPath_ + ".rank1");
  damaged[3] ^= 1;
  writeFile(weightsPath_ + ".rank1", damaged);
  auto bad = readPlan(planPath_);
  EXPECT_NE(errorText(bad).find("plan.pb.weights.rank1: checksum mismatch"), std::string::npos) << errorText(bad);
}

TEST_F(PlanFileTest, RoundTripKeepsEveryField) {
  Plan written = writeTestPlan();
  expectEveryFieldSet(written);
  EXPECT_EQ(files(), (std::vector<std::string>{"plan.pb", "plan.pb.weights"}));

  auto loaded = readPlan(planPath_);
  ASSERT_TRUE(bool(loaded)) << llvm::toString(loaded.takeError());
  std::string differences;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&differences);
  EXPECT_TRUE(differencer.Compare(written, loaded->plan)) << differences;

  const WeightsFile &weights = loaded->plan.weights();
  EXPECT_EQ(weights.file_name(), "plan.pb.weights");
  EXPECT_EQ(weights.alignment(), kWeightsAlignment);
  EXPECT_EQ(weights.bytes(), 2 * kWeightsAlignment + 8);
  std::string sidecar = readFile(weightsPath_);
  ASSERT_EQ(sidecar.size(), weights.bytes());
  EXPECT_EQ(weights.xxh64(), weightsChecksum(llvm::ArrayRef<char>(sidecar.data(), sidecar.size())));
  ASSERT_EQ(weights.tensors_size(), 3);
  for (int i = 0; i < 3; ++i) {
    const WeightsFile::Tensor &tensor = weights.tensors(i);
    const TestTensor &expected = tensors_[i];
    EXPECT_EQ(tensor.name(), expected.name);
    EXPECT_EQ(tensor.dtype(), expected.dtype);
    EXPECT_EQ(std::vector<int64_t>(tensor.shape().begin(), tensor.shape().end()), expected.shape);
    EXPECT_EQ(tensor.offset(), uint64_t(i) * kWeightsAlignment);
    EXPECT_EQ(tensor.bytes(), expected.bytes.size());
    EXPECT_EQ(std::vector<char>(loaded->tensorData(tensor), loaded->tensorData(tensor) + tensor.bytes()),
              expected.bytes);
  }
  // The padding between tensors is zeros.
  EXPECT_EQ(sidecar.substr(60, kWeightsAlignment - 60), std::string(kWeightsAlignment - 60, '\0'));
}

TEST_F(PlanFileTest, EmptySidecarRoundTrips) {
  tensors_.clear();
  Plan plan = makePlan();
  for (auto &function : *plan.mutable_functions())  // no weights to point at
    function.mutable_launches(0)->mutable_args(1)->set_kind(llamac::plan::Function::Launch::Arg::POS);
  writeTestPlan(plan);
  auto loaded = readPlan(planPath_);
  ASSERT_TRUE(bool(loaded)) << llvm::toString(loaded.takeError());
  EXPECT_EQ(loaded->plan.weights().bytes(), 0u);
  EXPECT_EQ(loaded->weights->getBufferSize(), 0u);
}

TEST_F(PlanFileTest, RewritingReplacesThePlan) {
  writeTestPlan();
  tensors_.pop_back();
  tensors_[0].bytes = pattern(60, 9);
  writeTestPlan();
  EXPECT_EQ(files(), (std::vector<std::string>{"plan.pb", "plan.pb.weights"}));
  auto loaded = readPlan(planPath_);
  ASSERT_TRUE(bool(loaded)) << llvm::toString(loaded.takeError());
  ASSERT_EQ(loaded->plan.weights().tensors_size(), 2);
  const WeightsFile::Tensor &first = loaded->plan.weights().tensors(0);
  EXPECT_EQ(std::vector<char>(loaded->tensorData(first), loaded->tensorData(first) + 60), pattern(60, 9));
}

TEST_F(PlanFileTest, LargeSidecarIsMemoryMapped) {
  tensors_ = {{"big", "f32", {1 << 18}, pattern(1 << 20, 4)}};
  writeTestPlan();
  auto loaded = readPlan(planPath_);
  ASSERT_TRUE(bool(loaded)) << llvm::toString(loaded.takeError());
  EXPECT_EQ(loaded->weights->getBufferKind(), llvm::MemoryBuffer::MemoryBuffer_MMap);
}

// Many cubins push the plan past protobuf's old 64 MiB default limit.
TEST_F(PlanFileTest, PlanOverSixtyFourMegabytesReads) {
  Plan plan = makePlan();
  plan.mutable_kernels(0)->mutable_binaries(0)->set_cubin(std::string(70u << 20, 'c'));
  writeTestPlan(plan);
  auto loaded = readPlan(planPath_);
  ASSERT_TRUE(bool(loaded)) << llvm::toString(loaded.takeError());
  EXPECT_EQ(loaded->plan.kernels(0).binaries(0).cubin().size(), 70u << 20);
}

TEST_F(PlanFileTest, ChecksumOfEmptyInputIsXxh64) {
  EXPECT_EQ(weightsChecksum({}), 0xEF46DB3751D8E999ull);
  EXPECT_FALSE(verifyWeightsChecksum({}, 0xEF46DB3751D8E999ull, "w"));
  std::string message = errorText(verifyWeightsChecksum({}, 1, "w"));
  EXPECT_EQ(message.rfind("w: checksum mismatch: the weights file is damaged or belongs to another plan", 0), 0u)
      << message;
}

TEST_F(PlanFileTest, DescribePlanSummarizes) {
  Plan plan = writeTestPlan();
  std::string summary = describePlan(plan);
  for (const char *expected : {"llamac test", "stories260K", "dim 64", "hidden 172", "5 layers", "8 heads",
                               "4 kv heads", "vocab 512", "max seq len 256", "weights f16", "kv cache bf16",
                               "sentencepiece", "kernels: 2", "sm_80, sm_90", "compute_90", "decode (1 launch)",
                               "decode_greedy", "arena 4.0 KiB", "16.0 KiB without reuse", "kv cache 80.0 KiB",
                               "520 B in 3 tensors", "plan.pb.weights"})
    EXPECT_NE(summary.find(expected), std::string::npos) << "missing '" << expected << "' in:\n" << summary;
}

// llamarun holds a plan (our protobuf) and a sentencepiece tokenizer
// (libsentencepiece, with its own private protobuf-lite) in one process: the
// two protobuf copies must not see each other (see runtime/plan/CMakeLists.txt).
TEST_F(PlanFileTest, EmbeddedSentencePieceTokenizerWorksNextToThePlan) {
  const char *modelsDir = std::getenv("LLAMAC_MODELS");
  std::string tokenizerPath = std::string(modelsDir ? modelsDir : LLAMAC_MODELS_DIR) + "/tok512.model";
  auto file = readTokenizerFile(tokenizerPath);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  ASSERT_EQ(file->first, TokenizerFormat::SentencePiece);
  Plan plan = makePlan();
  plan.mutable_tokenizer()->set_data(file->second);
  writeTestPlan(plan);

  auto loaded = readPlan(planPath_);
  ASSERT_TRUE(bool(loaded)) << llvm::toString(loaded.takeError());
  EXPECT_EQ(loaded->plan.tokenizer().data(), file->second);
  auto tokenizer = Tokenizer::create(TokenizerFormat::SentencePiece, loaded->plan.tokenizer().data(), "plan.pb");
  ASSERT_TRUE(bool(tokenizer)) << llvm::toString(tokenizer.takeError());
  EXPECT_EQ((*tokenizer)->vocabSize(), 512);
  std::vector<int> tokens = (*tokenizer)->encode("Once upon a time", /*addBos=*/true);
  ASSERT_GT(tokens.size(), 2u);
  EXPECT_EQ(tokens.front(), 1);
  std::string text;
  for (size_t i = 1; i < tokens.size(); ++i)
    text += (*tokenizer)->piece(tokens[i]);
  EXPECT_EQ(text, " Once upon a time");
}

//===----------------------------------------------------------------------===//
// Writing is atomic
//===----------------------------------------------------------------------===//

TEST_F(PlanFileTest, DirectoryInPlaceOfThePlanLeavesNoFiles) {
  ASSERT_FALSE(llvm::sys::fs::create_directory(planPath_));
  Plan plan = makePlan();
  auto weights = WeightsWriter::create(weightsPath_);
  ASSERT_TRUE(bool(weights));
  ASSERT_TRUE(bool(weights->append("w", "f32", {2}, pattern(8, 0))));
  ASSERT_FALSE(weights->finish(*plan.mutable_weights()));
  std::string message = errorText(writePlan(plan, planPath_, *weights));
  EXPECT_EQ(message, planPath_ + ": is a directory, expected a path for the plan");
  EXPECT_EQ(files(), std::vector<std::string>{"plan.pb"});  // only the directory
}

TEST_F(PlanFileTest, DirectoryInPlaceOfTheSidecarIsRejected) {
  ASSERT_FALSE(llvm::sys::fs::create_directory(weightsPath_));
  auto weights = WeightsWriter::create(weightsPath_);
  EXPECT_EQ(errorText(weights), weightsPath_ + ": is a directory, expected a path for the weights sidecar");
  EXPECT_EQ(files(), std::vector<std::string>{"plan.pb.weights"});
}

TEST_F(PlanFileTest, MissingFolderIsReported) {
  auto weights = WeightsWriter::create(dir_ + "/missing/plan.pb.weights");
  std::string message = errorText(weights);
  EXPECT_EQ(message.rfind(dir_ + "/missing/plan.pb.weights: cannot create a temporary file in " + dir_ + "/missing",
                          0),
            0u)
      << message;
  EXPECT_TRUE(files().empty());
}

TEST_F(PlanFileTest, PlanInAnotherFolderThanTheSidecarLeavesNoFiles) {
  Plan plan = makePlan();
  auto weights = WeightsWriter::create(weightsPath_);
  ASSERT_TRUE(bool(weights));
  ASSERT_FALSE(weights->finish(*plan.mutable_weights()));
  ASSERT_FALSE(llvm::sys::fs::create_directory(dir_ + "/other"));
  std::string message = errorText(writePlan(plan, dir_ + "/other/plan.pb", *weights));
  EXPECT_EQ(message, dir_ + "/other/plan.pb: the weights sidecar " + weightsPath_ + " is not in the plan's folder");
  EXPECT_EQ(files(), std::vector<std::string>{"other"});
  std::error_code ec;
  EXPECT_EQ(llvm::sys::fs::directory_iterator(dir_ + "/other", ec), llvm::sys::fs::directory_iterator());
}

TEST_F(PlanFileTest, UnwritableFolderLeavesNoFiles) {
  // A file where the plan's folder should be: fails for every user, root included.
  writeFile(dir_ + "/file", "x");
  auto weights = WeightsWriter::create(dir_ + "/file/plan.pb.weights");
  std::string message = errorText(weights);
  EXPECT_NE(message.find("cannot create a temporary file in " + dir_ + "/file"), std::string::npos) << message;
  EXPECT_EQ(files(), std::vector<std::string>{"file"});
}

TEST_F(PlanFileTest, ReadOnlyFolderLeavesNoFiles) {
  if (::geteuid() == 0)
    GTEST_SKIP() << "root writes into read-only folders";
  ASSERT_EQ(::chmod(dir_.c_str(), 0500), 0);
  auto restore = llvm::make_scope_exit([&] { ::chmod(dir_.c_str(), 0700); });
  auto weights = WeightsWriter::create(weightsPath_);
  std::string message = errorText(weights);
  EXPECT_EQ(message, weightsPath_ + ": cannot create a temporary file in " + dir_ + ": Permission denied");
  EXPECT_TRUE(files().empty());
}

TEST_F(PlanFileTest, RejectedAppendWritesNothing) {
  auto weights = WeightsWriter::create(weightsPath_);
  ASSERT_TRUE(bool(weights));
  auto wrongSize = weights->append("w", "f32", {3, 5}, pattern(59, 0));
  EXPECT_EQ(errorText(wrongSize), weightsPath_ + ": tensor 'w' of shape 3x5 f32 needs 60 bytes, found 59");
  auto badDtype = weights->append("w", "q4", {2}, pattern(8, 0));
  EXPECT_EQ(errorText(badDtype), weightsPath_ + ": tensor 'w' has dtype 'q4', expected f32, f16, bf16, i8 or i32");
  auto negative = weights->append("w", "f32", {-2}, pattern(8, 0));
  EXPECT_NE(errorText(negative).find("expected non-negative dimensions"), std::string::npos);
  auto unnamed = weights->append("", "f32", {2}, pattern(8, 0));
  EXPECT_EQ(errorText(unnamed), weightsPath_ + ": cannot append a tensor without a name");

  auto first = weights->append("w", "f32", {2}, pattern(8, 0));
  ASSERT_TRUE(bool(first));
  EXPECT_EQ(*first, 0u);  // the rejected tensors wrote nothing
  auto twice = weights->append("w", "f32", {2}, pattern(8, 0));
  EXPECT_EQ(errorText(twice), weightsPath_ + ": tensor 'w' appended twice");
  auto second = weights->append("v", "i8", {3}, pattern(3, 0));
  ASSERT_TRUE(bool(second));
  EXPECT_EQ(*second, kWeightsAlignment);
}

TEST_F(PlanFileTest, AbandonedWriterLeavesNoFiles) {
  {
    auto weights = WeightsWriter::create(weightsPath_);
    ASSERT_TRUE(bool(weights));
    ASSERT_TRUE(bool(weights->append("w", "f32", {2}, pattern(8, 0))));
    EXPECT_EQ(files().size(), 1u);  // the temporary file
    EXPECT_FALSE(bool(weights->append("w", "f32", {3}, pattern(8, 0))));
  }
  EXPECT_TRUE(files().empty());
  {
    Plan plan = makePlan();
    auto weights = WeightsWriter::create(weightsPath_);
    ASSERT_TRUE(bool(weights));
    ASSERT_FALSE(weights->finish(*plan.mutable_weights()));
  }
  EXPECT_TRUE(files().empty());
}

// The drivers exit() on the first error, skipping destructors; a crash or
// Ctrl-C skips them too. The temporary sidecar must go all the same.
TEST_F(PlanFileTest, ExitOrSignalWhileWritingLeavesNoFiles) {
  GTEST_FLAG_SET(death_test_style, "fast");  // fork only: the child writes into this dir_
  auto writeThen = [&](auto end) {
    auto weights = WeightsWriter::create(weightsPath_);
    if (!weights || !weights->append("w", "f32", {2}, pattern(8, 0)))
      std::abort();
    end();
  };
  EXPECT_EXIT(writeThen([] { std::exit(3); }), ::testing::ExitedWithCode(3), "");
  EXPECT_TRUE(files().empty());
  EXPECT_EXIT(writeThen([] { std::raise(SIGINT); }), ::testing::KilledBySignal(SIGINT), "");
  EXPECT_TRUE(files().empty());
  // Control: without the cleanup, the temporary file would be left behind.
  EXPECT_EXIT(writeThen([] { ::_exit(4); }), ::testing::ExitedWithCode(4), "");
  EXPECT_EQ(files().size(), 1u);
}

TEST_F(PlanFileTest, MovedWriterKeepsItsFile) {
  Plan plan = makePlan();
  auto created = WeightsWriter::create(weightsPath_);
  ASSERT_TRUE(bool(created));
  WeightsWriter weights = std::move(*created);
  ASSERT_TRUE(bool(weights.append("w", "f32", {2}, pattern(8, 0))));
  ASSERT_FALSE(weights.finish(*plan.mutable_weights()));
  ASSERT_FALSE(writePlan(plan, planPath_, weights));
  EXPECT_TRUE(bool(readPlan(planPath_)));
}

TEST_F(PlanFileTest, AppendAfterFinishFails) {
  Plan plan = makePlan();
  auto weights = WeightsWriter::create(weightsPath_);
  ASSERT_TRUE(bool(weights));
  ASSERT_FALSE(weights->finish(*plan.mutable_weights()));
  auto late = weights->append("w", "f32", {2}, pattern(8, 0));
  EXPECT_EQ(errorText(late), weightsPath_ + ": cannot append tensor 'w': the sidecar is already finished");
}

TEST_F(PlanFileTest, UnfinishedSidecarLeavesNoFiles) {
  Plan plan = makePlan();
  auto weights = WeightsWriter::create(weightsPath_);
  ASSERT_TRUE(bool(weights));
  std::string message = errorText(writePlan(plan, planPath_, *weights));
  EXPECT_EQ(message, planPath_ + ": the weights sidecar " + weightsPath_ +
                         " is not finished (call WeightsWriter::finish first)");
  EXPECT_TRUE(files().empty());  // writePlan removed the temporary sidecar at once
}

TEST_F(PlanFileTest, WeightsEntryNotDescribingTheSidecarLeavesNoFiles) {
  Plan plan = makePlan();
  auto weights = WeightsWriter::create(weightsPath_);
  ASSERT_TRUE(bool(weights));
  ASSERT_TRUE(bool(weights->append("w", "f32", {2}, pattern(8, 0))));
  ASSERT_FALSE(weights->finish(*plan.mutable_weights()));
  plan.mutable_weights()->set_xxh64(plan.weights().xxh64() + 1);
  std::string message = errorText(writePlan(plan, planPath_, *weights));
  EXPECT_NE(message.find("does not describe the sidecar being written"), std::string::npos) << message;
  EXPECT_TRUE(files().empty());
}

TEST_F(PlanFileTest, SecondCommitOfTheSameSidecarFails) {
  Plan plan = makePlan();
  auto weights = WeightsWriter::create(weightsPath_);
  ASSERT_TRUE(bool(weights));
  ASSERT_TRUE(bool(weights->append("w", "f32", {2}, pattern(8, 0))));
  ASSERT_FALSE(weights->finish(*plan.mutable_weights()));
  ASSERT_FALSE(writePlan(plan, planPath_, *weights));
  std::string message = errorText(writePlan(plan, planPath_, *weights));
  EXPECT_EQ(message, planPath_ + ": the weights sidecar " + weightsPath_ + " already belongs to a written plan");
  // The plan written first keeps its sidecar.
  EXPECT_EQ(files(), (std::vector<std::string>{"plan.pb", "plan.pb.weights"}));
  EXPECT_TRUE(bool(readPlan(planPath_)));
}

/// Runs `body` with the process's file size limit set to `limit` bytes, so a
/// write past it fails with EFBIG (SIGXFSZ ignored) like a full disk would.
template <typename Body> void withFileSizeLimit(rlim_t limit, Body body) {
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto oldHandler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit lowered = old;
  lowered.rlim_cur = limit;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lowered), 0);
  body();
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, oldHandler);
}

TEST_F(PlanFileTest, FailedWeightsWriteLeavesNoFiles) {
  {
    auto weights = WeightsWriter::create(weightsPath_);
    ASSERT_TRUE(bool(weights));
    std::string message;
    withFileSizeLimit(4096, [&] {
      auto offset = weights->append("big", "f32", {4096}, pattern(16384, 0));
      message = errorText(offset);
    });
    EXPECT_EQ(message, weightsPath_ + ": cannot write the weights: File too large");
    auto later = weights->append("small", "f32", {1}, pattern(4, 0));
    EXPECT_EQ(errorText(later), weightsPath_ + ": cannot append tensor 'small': an earlier write failed");
    Plan plan = makePlan();
    EXPECT_NE(errorText(weights->finish(*plan.mutable_weights())), "");
    EXPECT_NE(errorText(writePlan(plan, planPath_, *weights)), "");
  }
  EXPECT_TRUE(files().empty());
}

TEST_F(PlanFileTest, FailedPlanWriteLeavesNoFiles) {
  Plan plan = makePlan();
  plan.set_ir(std::string(64 << 10, 'i'));  // the plan outgrows the limit, the sidecar does not
  auto weights = WeightsWriter::create(weightsPath_);
  ASSERT_TRUE(bool(weights));
  ASSERT_TRUE(bool(weights->append("w", "f32", {2}, pattern(8, 0))));
  ASSERT_FALSE(weights->finish(*plan.mutable_weights()));
  std::string message;
  withFileSizeLimit(16 << 10, [&] { message = errorText(writePlan(plan, planPath_, *weights)); });
  EXPECT_EQ(message, planPath_ + ": cannot write the plan: File too large");
  EXPECT_TRUE(files().empty());
}

//===----------------------------------------------------------------------===//
// readPlan errors, each naming the file at fault
//===----------------------------------------------------------------------===//

TEST_F(PlanFileTest, MissingPlan) {
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded), planPath_ + ": no such file");
}

TEST_F(PlanFileTest, DirectoryInsteadOfPlan) {
  ASSERT_FALSE(llvm::sys::fs::create_directory(planPath_));
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded), planPath_ + ": is a directory, expected a plan file");
}

TEST_F(PlanFileTest, EmptyPlan) {
  writeFile(planPath_, "");
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded), planPath_ + ": file is empty, expected a llamac plan");
}

TEST_F(PlanFileTest, GarbagePlan) {
  writeFile(planPath_, std::string(16, '\xff'));
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded),
            planPath_ + ": not a llamac plan (the file does not parse as a protobuf Plan message)");
}

TEST_F(PlanFileTest, TextFileIsNotAPlan) {
  // Parses as a protobuf message of unknown fields, but has no format version.
  writeFile(planPath_, std::string("\x68\x01\x70\x02", 4));
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded), planPath_ + ": not a llamac plan (no format version)");
  writeFile(planPath_, "hello, world\n");
  auto text = readPlan(planPath_);
  std::string message = errorText(text);
  EXPECT_EQ(message.rfind(planPath_ + ": not a llamac plan (", 0), 0u) << message;
}

TEST_F(PlanFileTest, InvalidUtf8IsNotAPlan) {
  Plan plan = makePlan();
  plan.set_producer("\xff\xfe");
  // Serializing invalid UTF-8 logs a protobuf error; the reader must reject it quietly.
  google::protobuf::LogSilencer silence;
  writeRawPlan(plan, planPath_);
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded),
            planPath_ + ": not a llamac plan (the file does not parse as a protobuf Plan message)");
}

TEST_F(PlanFileTest, TruncatedPlan) {
  writeTestPlan();
  std::string contents = readFile(planPath_);
  for (size_t size : {contents.size() - 1, contents.size() / 2, size_t(3)}) {
    writeFile(planPath_, llvm::StringRef(contents).take_front(size));
    auto loaded = readPlan(planPath_);
    std::string message = errorText(loaded);
    EXPECT_EQ(message.rfind(planPath_ + ": not a llamac plan (", 0), 0u) << size << ": " << message;
  }
}

TEST_F(PlanFileTest, VersionMismatch) {
  Plan plan = writeTestPlan();
  plan.set_format_version(7);
  writeRawPlan(plan, planPath_);
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded), planPath_ + ": plan format version 7, this llamarun reads versions 1 and 2");
}

TEST_F(PlanFileTest, MissingSidecar) {
  writeTestPlan();
  ASSERT_FALSE(llvm::sys::fs::remove(weightsPath_));
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded), weightsPath_ + ": no such file (the plan's weights sidecar)");
}

TEST_F(PlanFileTest, DirectoryInsteadOfSidecar) {
  writeTestPlan();
  ASSERT_FALSE(llvm::sys::fs::remove(weightsPath_));
  ASSERT_FALSE(llvm::sys::fs::create_directory(weightsPath_));
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded), weightsPath_ + ": is a directory, expected the plan's weights sidecar");
}

TEST_F(PlanFileTest, SidecarFoundNextToThePlanFromAnyWorkingDirectory) {
  writeTestPlan();
  llvm::SmallString<256> cwd;
  ASSERT_FALSE(llvm::sys::fs::current_path(cwd));
  ASSERT_EQ(::chdir(dir_.c_str()), 0);
  auto restore = llvm::make_scope_exit([&] { (void)::chdir(cwd.c_str()); });
  auto loaded = readPlan("plan.pb");
  EXPECT_TRUE(bool(loaded)) << llvm::toString(loaded.takeError());
  ASSERT_FALSE(llvm::sys::fs::remove("plan.pb.weights"));
  auto missing = readPlan("plan.pb");
  EXPECT_EQ(errorText(missing), "plan.pb.weights: no such file (the plan's weights sidecar)");
}

TEST_F(PlanFileTest, FlippedByteInSidecarIsAChecksumError) {
  writeTestPlan();
  std::string sidecar = readFile(weightsPath_);
  sidecar[260] ^= 0x10;  // inside layers.0.wq
  writeFile(weightsPath_, sidecar);
  auto loaded = readPlan(planPath_);
  std::string message = errorText(loaded);
  EXPECT_EQ(message.rfind(weightsPath_ +
                              ": checksum mismatch: the weights file is damaged or belongs to another plan (xxh64 0x",
                          0),
            0u)
      << message;

  // VerifyWeights::No skips the checksum.
  auto unverified = readPlan(planPath_, VerifyWeights::No);
  ASSERT_TRUE(bool(unverified)) << llvm::toString(unverified.takeError());
  EXPECT_EQ(unverified->weights->getBuffer(), sidecar);
}

TEST_F(PlanFileTest, TruncatedSidecarIsASizeError) {
  Plan plan = writeTestPlan();
  uint64_t bytes = plan.weights().bytes();
  std::string sidecar = readFile(weightsPath_);
  writeFile(weightsPath_, llvm::StringRef(sidecar).drop_back(1));
  std::string expected =
      weightsPath_ + ": file is " + std::to_string(bytes - 1) + " bytes, " + planPath_ + " says " + std::to_string(bytes);
  auto loaded = readPlan(planPath_);
  EXPECT_EQ(errorText(loaded), expected);
  // VerifyWeights::No still checks the size.
  auto unverified = readPlan(planPath_, VerifyWeights::No);
  EXPECT_EQ(errorText(unverified), expected);
}

TEST_F(PlanFileTest, GrownSidecarIsASizeError) {
  Plan plan = writeTestPlan();
  writeFile(weightsPath_, readFile(weightsPath_) + "x");
  auto loaded = readPlan(planPath_, VerifyWeights::No);
  EXPECT_EQ(errorText(loaded), weightsPath_ + ": file is " + std::to_string(plan.weights().bytes() + 1) + " bytes, " +
                                   planPath_ + " says " + std::to_string(plan.weights().bytes()));
}

TEST_F(PlanFileTest, SidecarOfAnotherPlanIsAChecksumError) {
  writeTestPlan();
  std::string first = readFile(planPath_);
  tensors_[1].bytes = pattern(14, 7);  // same size, other values
  writeTestPlan();
  writeFile(planPath_, first);
  auto loaded = readPlan(planPath_);
  EXPECT_NE(errorText(loaded).find(weightsPath_ + ": checksum mismatch"), std::string::npos);
}

/// Rewrites plan.pb after `edit`, keeping the real sidecar, and returns readPlan's error.
class HostilePlanTest : public PlanFileTest {
protected:
  template <typename Edit> std::string errorAfter(Edit edit) {
    Plan plan = writeTestPlan();
    edit(plan);
    writeRawPlan(plan, planPath_);
    auto loaded = readPlan(planPath_);
    return errorText(loaded);
  }
};

TEST_F(HostilePlanTest, TensorOutsideTheSidecar) {
  std::string message = errorAfter([](Plan &plan) { plan.mutable_weights()->mutable_tensors(2)->set_offset(768); });
  EXPECT_EQ(message, planPath_ + ": weights tensor 'rms_final' (offset 768, 8 bytes) lies outside the plan.pb.weights "
                                 "(520 bytes)");
  std::string overflow = errorAfter([](Plan &plan) {
    plan.mutable_weights()->mutable_tensors(2)->set_offset(UINT64_MAX - 255);
  });
  EXPECT_NE(overflow.find("lies outside the plan.pb.weights"), std::string::npos) << overflow;
}

TEST_F(HostilePlanTest, MisalignedTensor) {
  std::string message = errorAfter([](Plan &plan) { plan.mutable_weights()->mutable_tensors(1)->set_offset(100); });
  EXPECT_EQ(message, planPath_ + ": weights tensor 'layers.0.wq' starts at offset 100, expected a multiple of 256");
}

TEST_F(HostilePlanTest, ShapeNotMatchingBytes) {
  std::string message =
      errorAfter([](Plan &plan) { plan.mutable_weights()->mutable_tensors(0)->set_shape(1, 6); });
  EXPECT_EQ(message, planPath_ + ": weights tensor 'tok_embeddings' of shape 3x6 f32 needs 72 bytes, found 60");
  std::string negative =
      errorAfter([](Plan &plan) { plan.mutable_weights()->mutable_tensors(0)->set_shape(1, -5); });
  EXPECT_NE(negative.find("expected non-negative dimensions"), std::string::npos) << negative;
  std::string overflow = errorAfter([](Plan &plan) {
    auto &tensor = *plan.mutable_weights()->mutable_tensors(0);
    tensor.set_shape(0, INT64_MAX);
    tensor.set_shape(1, INT64_MAX);
  });
  EXPECT_NE(overflow.find("expected non-negative dimensions"), std::string::npos) << overflow;
  std::string dtype = errorAfter([](Plan &plan) { plan.mutable_weights()->mutable_tensors(0)->set_dtype("f64"); });
  EXPECT_EQ(dtype, planPath_ + ": weights tensor 'tok_embeddings' has dtype 'f64', expected f32, f16, bf16, i8 or i32");
}

TEST_F(HostilePlanTest, DuplicateTensor) {
  std::string message =
      errorAfter([](Plan &plan) { plan.mutable_weights()->mutable_tensors(1)->set_name("tok_embeddings"); });
  EXPECT_EQ(message, planPath_ + ": weights tensor 'tok_embeddings' is listed twice");
}

TEST_F(HostilePlanTest, BadWeightsEntry) {
  EXPECT_EQ(errorAfter([](Plan &plan) { plan.mutable_weights()->set_alignment(0); }),
            planPath_ + ": weights alignment 0 is not a power of two");
  EXPECT_EQ(errorAfter([](Plan &plan) { plan.mutable_weights()->clear_file_name(); }),
            planPath_ + ": the plan names no weights file");
  EXPECT_EQ(errorAfter([](Plan &plan) { plan.mutable_weights()->set_file_name("/etc/passwd"); }),
            planPath_ + ": weights file name '/etc/passwd' is absolute, expected a name relative to the plan's folder");
}

TEST_F(HostilePlanTest, LaunchOutOfRange) {
  EXPECT_EQ(errorAfter([](Plan &plan) { plan.mutable_functions(1)->mutable_launches(0)->set_kernel(2); }),
            planPath_ + ": function 'decode_greedy' launch 0 uses kernel 2, the plan has 2 kernels");
  EXPECT_EQ(errorAfter([](Plan &plan) {
              plan.mutable_functions(0)->mutable_launches(0)->mutable_args(0)->set_offset(4096);
            }),
            planPath_ + ": function 'decode' launch 0 argument 0 points at offset 4096, outside the arena (4096 bytes)");
  EXPECT_NE(errorAfter([](Plan &plan) {
              plan.mutable_functions(0)->mutable_launches(0)->mutable_args(1)->set_offset(520);
            }).find("outside the weights (520 bytes)"),
            std::string::npos);
  EXPECT_NE(errorAfter([](Plan &plan) {
              plan.mutable_functions(0)->mutable_launches(0)->mutable_args(2)->set_offset(81920);
            }).find("outside the KV cache (81920 bytes)"),
            std::string::npos);
  EXPECT_EQ(errorAfter([](Plan &plan) {
              plan.mutable_functions(0)->mutable_launches(0)->mutable_args(3)->set_kind(
                  static_cast<llamac::plan::Function::Launch::Arg::Kind>(42));
            }),
            planPath_ + ": function 'decode' launch 0 argument 3 has unknown kind 42");
  EXPECT_EQ(errorAfter([](Plan &plan) { plan.mutable_functions(0)->mutable_output()->set_bytes(4096); }),
            planPath_ + ": function 'decode' output (offset 1024, 4096 bytes) lies outside the arena (4096 bytes)");
  EXPECT_EQ(errorAfter([](Plan &plan) { plan.mutable_memory()->mutable_buffers(0)->set_offset(4000); }),
            planPath_ + ": buffer %12 of decode (offset 4000, 256 bytes) lies outside the arena (4096 bytes)");
  EXPECT_EQ(errorAfter([](Plan &plan) {
              plan.mutable_tokenizer()->set_format(static_cast<llamac::plan::Tokenizer::Format>(9));
            }),
            planPath_ + ": unknown tokenizer format 9");
}

// Random damage to a valid plan: readPlan must answer (an error or a plan),
// never crash. Run under ASan/UBSan to make this test bite harder.
TEST_F(PlanFileTest, RandomDamageNeverCrashes) {
  writeTestPlan();
  std::string original = readFile(planPath_);
  std::mt19937 random(1234);
  int errors = 0;
  for (int round = 0; round < 400; ++round) {
    std::string damaged = original;
    int flips = 1 + int(random() % 4);
    for (int i = 0; i < flips; ++i)
      damaged[random() % damaged.size()] = char(random());
    if (round % 4 == 0)
      damaged.resize(random() % damaged.size());
    writeFile(planPath_, damaged);
    auto loaded = readPlan(planPath_);
    if (!loaded) {
      ++errors;
      std::string message = llvm::toString(loaded.takeError());
      // The sidecar's name may be damaged too: the file named is in the folder.
      EXPECT_EQ(message.rfind(dir_ + "/", 0), 0u) << message;
    }
  }
  EXPECT_GT(errors, 100);
}

} // namespace
